// ONNX model → PartitionGraph: validation (ops, providers, sample shapes), shapes (probe or static),
// per-node FLOPs/params/output bytes, a topological order with constants sunk to their first reader, cuts.
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { Dim, GraphNode, PartitionGraph, TensorInfo } from '../../protocols/graph.js';
import { nodeReads } from '../onnx/extract.js';
import { nodeIds, type onnx } from '../onnx/proto.js';
import { nodeFlops } from './flops.js';
import { DEFAULT_DOMAINS, STANDARD_ONNX_OPS } from './onnx-ops.js';
import { buildCuts, buildEdges, topoOrder, type DagNode } from './order.js';
import { profileNodes, probeShapes, type Feed } from './probe.js';
import { inferNode, smallTensorValues, tensorProtoMeta, valueInfoMeta, type ConstValue, type TensorMeta } from './shapes.js';
import { isKnown, tensorBytes } from './tensors.js';

export interface AnalyzeOptions {
  /** Sample input shapes by input name; they resolve dynamic dims. */
  inputs?: Record<string, number[]>;
  /** Time every node with onnxruntime's profiler (needs every input dim known). */
  profile?: boolean;
  /** Recorded as PartitionGraph.model. */
  modelPath?: string;
  /**
   * Measure intermediate shapes with one onnxruntime run on zero-filled inputs (needs every input dim
   * known): 'auto' (default) runs it only when static inference left a dim unknown and fills only those;
   * true runs it always and lets measurements win; false never runs it.
   */
  probe?: boolean | 'auto';
  /** onnxruntime intra-op threads for probe and profile (default 1). */
  threads?: number;
  /** Timed profiling runs after a warm-up (default 3). */
  profileRuns?: number;
}

const UNKNOWN_SHAPE: Dim[] = ['?'];

export async function analyzeOnnx(model: onnx.IModelProto, opts: AnalyzeOptions = {}): Promise<PartitionGraph> {
  const g = model.graph;
  if (!g) throw new CleaveError(ErrorCode.MODEL_INVALID, 'the model has no graph; pass a complete ONNX model');
  const nodes = g.node ?? [];
  const ids = nodeIds(g);
  const warnings: string[] = [];

  checkOps(model);

  const inits = new Map<string, onnx.ITensorProto>();
  for (const t of g.initializer ?? []) if (t.name) inits.set(t.name, t);
  for (const s of g.sparseInitializer ?? []) if (s.values?.name) inits.set(s.values.name, { ...s.values, dims: s.dims });
  const graphInputs = (g.input ?? []).filter((v) => v.name && !inits.has(v.name));
  const outputNames = (g.output ?? []).map((v) => v.name ?? '').filter((n) => n);

  // --- tensor metadata: declared, then sample shapes, then static inference
  const metas = new Map<string, TensorMeta>();
  const consts = new Map<string, ConstValue>();
  for (const v of [...(g.valueInfo ?? []), ...(g.output ?? [])]) {
    const m = v.name ? valueInfoMeta(v) : undefined;
    if (m) metas.set(v.name!, m);
  }
  for (const [name, t] of inits) {
    metas.set(name, tensorProtoMeta(t));
    const c = smallTensorValues(t);
    if (c) consts.set(name, c);
  }
  const feeds = resolveInputs(graphInputs, opts.inputs ?? {}, metas);

  // --- reads, providers, order
  const reads = nodes.map((n) => nodeReads(n));
  const provided = new Set<string>([...inits.keys(), ...graphInputs.map((v) => v.name!)]);
  for (const n of nodes) for (const o of n.output ?? []) if (o) provided.add(o);
  nodes.forEach((n, i) => {
    for (const t of reads[i]) {
      if (!provided.has(t)) {
        throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER,
          `node '${ids[i]}' (${n.opType}) reads tensor '${t}', which no node, initializer or graph input provides; re-export the model with its weights (or the missing input declared)`,
          { details: { node: ids[i], tensor: t } });
      }
    }
  });
  for (const o of outputNames) {
    if (!provided.has(o)) {
      throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `graph output '${o}' is produced by no node, initializer or input; re-export the model`, { details: { tensor: o } });
    }
  }
  const dag: DagNode[] = nodes.map((n, i) => ({ id: ids[i], inputs: reads[i].filter((t) => !inits.has(t)), outputs: (n.output ?? []).filter((o) => o) }));
  const topo = topoOrder(dag, (t) => bytesOfMeta(metas.get(t)));

  for (const i of topo) {
    const n = nodes[i];
    const ins = (n.input ?? []).map((t) => (t ? metas.get(t) : undefined));
    const cv = (n.input ?? []).map((t) => (t ? consts.get(t) : undefined));
    const r = inferNode(n, ins, cv);
    (n.output ?? []).forEach((o, k) => {
      if (!o) return;
      const inferred = r.metas[k];
      const declared = metas.get(o);
      if (inferred && (isKnown(inferred.shape) || !declared?.shape)) metas.set(o, inferred);
      else if (!declared && inferred) metas.set(o, inferred);
      const c = r.consts?.[k];
      if (c) consts.set(o, c);
    });
  }

  // --- measured shapes when every input is concrete
  const concrete = Object.keys(feeds).length === graphInputs.length;
  const staticComplete = nodes.every((n) => (n.output ?? []).every((o) => !o || isKnown(metas.get(o)?.shape)));
  const probe = opts.probe ?? 'auto';
  if (concrete && nodes.length > 0 && (probe === true || (probe === 'auto' && !staticComplete))) {
    try {
      const unknown = new Set(nodes.flatMap((n) => (n.output ?? []).filter((o) => o && !isKnown(metas.get(o)?.shape))));
      const measured = await probeShapes(model, ids, feeds, { threads: opts.threads, ...(probe === true ? {} : { only: unknown }) });
      // Zero-filled inputs mislead data-dependent ops (NonZero, NonMaxSuppression, Pad with input pads),
      // so under 'auto' measurements only fill what static inference left unknown.
      for (const [name, f] of measured) {
        if (probe === true || !isKnown(metas.get(name)?.shape)) metas.set(name, { dtype: f.dtype, shape: f.shape });
      }
    } catch (e) {
      if (!(e instanceof CleaveError) || e.code !== ErrorCode.MODEL_UNSUPPORTED) throw e;
      warnings.push(`shapes are statically inferred: ${e.message}`);
    }
  }

  // --- nodes
  const info = (name: string): TensorInfo => {
    const m = metas.get(name);
    const shape = m?.shape ?? UNKNOWN_SHAPE;
    return { name, dtype: m?.dtype ?? 'float32', shape, bytes: tensorBytes(m?.dtype ?? 'float32', shape) };
  };
  const graphNodes: GraphNode[] = nodes.map((n, i) => {
    const outs = dag[i].outputs.map(info);
    const ins = (n.input ?? []).map((t) => (t ? metas.get(t) : undefined));
    const outMetas = (n.output ?? []).map((t) => (t ? metas.get(t) : undefined));
    let flops = nodeFlops(n, ins, outMetas);
    let paramBytes = 0;
    for (const t of new Set(reads[i])) if (inits.has(t)) paramBytes += tensorBytes(metas.get(t)!.dtype, metas.get(t)!.shape);
    if (n.opType === 'Constant' && (n.domain ?? '') === '') paramBytes += outs.reduce((a, t) => a + t.bytes, 0);
    const sub = subgraphCost(n, metas, consts);
    flops += sub.flops;
    paramBytes += sub.paramBytes;
    const node: GraphNode = {
      id: ids[i], op: n.opType ?? '', inputs: dag[i].inputs.slice(), outputs: dag[i].outputs.slice(),
      flops: Math.round(flops), paramBytes, outputBytes: outs.reduce((a, t) => a + t.bytes, 0),
      outputShapes: Object.fromEntries(outs.map((t) => [t.name, t.shape])),
    };
    if (n.domain && !DEFAULT_DOMAINS.has(n.domain)) node.domain = n.domain;
    node.outputDtypes = Object.fromEntries(outs.map((t) => [t.name, t.dtype]));
    return node;
  });

  const order = sinkSources(topo, dag);
  const ordered = order.map((i) => graphNodes[i]);
  const bytesOf = (t: string): number => info(t).bytes;
  const inputNames = graphInputs.map((v) => v.name!);
  const pg: PartitionGraph = {
    format: 'onnx',
    ...(opts.modelPath ? { model: opts.modelPath } : {}),
    inputs: inputNames.map(info),
    outputs: outputNames.map(info),
    nodes: ordered,
    edges: buildEdges(ordered, bytesOf),
    cuts: buildCuts(ordered, inputNames, outputNames, bytesOf),
    totals: {
      flops: ordered.reduce((a, n) => a + n.flops, 0),
      paramBytes: ordered.reduce((a, n) => a + n.paramBytes, 0),
      nodes: ordered.length,
    },
  };

  if (opts.profile) {
    if (!concrete) {
      const missing = graphInputs.filter((v) => !feeds[v.name!]).map((v) => v.name);
      throw new CleaveError(ErrorCode.BAD_ARGUMENT,
        `profiling needs every input shape known; pass --input for ${missing.map((m) => `${m}=d,d,...`).join(' ')}`, { details: { inputs: missing } });
    }
    const threads = opts.threads ?? 1;
    const runs = opts.profileRuns ?? 3;
    const { perNode, runSeconds } = await profileNodes(model, ids, feeds, { threads, runs });
    for (const n of ordered) {
      const s = perNode.get(n.id);
      if (s !== undefined) n.measuredSeconds = s;
    }
    pg.profile = { runs, threads, runSeconds };
  }
  const symbolic = ordered.filter((n) => Object.values(n.outputShapes ?? {}).some((sh) => !isKnown(sh))).length;
  if (symbolic > 0) {
    warnings.push(`${symbolic} of ${ordered.length} nodes have outputs with symbolic or unknown dims, counted as 1 in FLOPs and bytes; pass --input NAME=d,d,... for every dynamic input to get real numbers`);
  }
  if (warnings.length) pg.warnings = warnings;
  return pg;
}

function bytesOfMeta(m: TensorMeta | undefined): number {
  return m ? tensorBytes(m.dtype, m.shape ?? UNKNOWN_SHAPE) : 0;
}

/** Every default-domain op must be a standard ONNX op; other domains (and model-local functions) pass. */
function checkOps(model: onnx.IModelProto): void {
  const local = new Set((model.functions ?? []).map((f) => `${f.domain ?? ''}:${f.name ?? ''}`));
  const visit = (g: onnx.IGraphProto): void => {
    const ids = nodeIds(g);
    (g.node ?? []).forEach((n, i) => {
      const domain = n.domain ?? '';
      const op = n.opType ?? '';
      if (DEFAULT_DOMAINS.has(domain) && !STANDARD_ONNX_OPS.has(op) && !local.has(`${domain}:${op}`)) {
        throw new CleaveError(ErrorCode.MODEL_UNKNOWN_OP,
          `node '${ids[i]}' uses op '${op}', which is not an operator of the default ONNX domain; fix the op name, or give a custom op its own domain and a runtime that implements it`,
          { details: { node: ids[i], op } });
      }
      for (const a of n.attribute ?? []) {
        if (a.g) visit(a.g);
        for (const sg of a.graphs ?? []) visit(sg);
      }
    });
  };
  visit(model.graph!);
}

/** Sample shapes checked against the declared inputs; returns feeds for inputs whose dims are all known. */
function resolveInputs(
  graphInputs: onnx.IValueInfoProto[], given: Record<string, number[]>, metas: Map<string, TensorMeta>,
): Record<string, Feed> {
  const names = graphInputs.map((v) => v.name!);
  for (const name of Object.keys(given)) {
    if (!names.includes(name)) {
      throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT,
        `the model has no input '${name}'; its inputs are ${names.map((n) => `'${n}'`).join(', ')} — fix the --input name`,
        { details: { input: name, inputs: names } });
    }
  }
  const feeds: Record<string, Feed> = {};
  for (const v of graphInputs) {
    const name = v.name!;
    const declared = valueInfoMeta(v) ?? { dtype: 'float32' as const };
    const sample = given[name];
    let shape = declared.shape;
    if (sample) {
      if (sample.some((d) => !Number.isInteger(d) || d < 0)) {
        throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT, `--input ${name}=${sample.join(',')} has a dim that is not a non-negative integer; give whole numbers`, { details: { input: name, given: sample } });
      }
      if (shape && shape.length !== sample.length) {
        throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT,
          `input '${name}' has rank ${shape.length} (${fmt(shape)}) but --input gives rank ${sample.length} (${sample.join(',')}); give ${shape.length} dims`,
          { details: { input: name, expected: shape, given: sample } });
      }
      if (shape) {
        shape.forEach((d, i) => {
          if (typeof d === 'number' && d !== sample[i]) {
            throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT,
              `input '${name}' dim ${i} is fixed at ${d} in the model but --input gives ${sample[i]}; use ${d} there`,
              { details: { input: name, dim: i, expected: d, given: sample[i] } });
          }
        });
      }
      shape = sample.slice();
    }
    metas.set(name, { dtype: declared.dtype, shape });
    if (isKnown(shape)) feeds[name] = { dtype: declared.dtype, shape };
  }
  return feeds;
}

function fmt(s: readonly Dim[]): string {
  return s.join(',');
}

/**
 * FLOPs and params of If/Loop/Scan bodies, kept whole inside their node: If costs its dearer branch,
 * Loop its body times a constant trip count (1 when dynamic), Scan its body times the scan length.
 */
function subgraphCost(n: onnx.INodeProto, outer: Map<string, TensorMeta>, outerConsts: Map<string, ConstValue>): { flops: number; paramBytes: number } {
  const graphs = (n.attribute ?? []).flatMap((a) => (a.g ? [a.g] : a.graphs ?? []));
  if (graphs.length === 0) return { flops: 0, paramBytes: 0 };
  const costs = graphs.map((sg) => graphCost(sg, outer, outerConsts));
  let flops: number;
  if (n.opType === 'If') flops = Math.max(...costs.map((c) => c.flops));
  else if (n.opType === 'Loop') {
    const trips = n.input?.[0] ? outerConsts.get(n.input[0])?.[0] : undefined;
    flops = costs[0].flops * (trips !== undefined && trips > 0 && trips < 1e7 ? trips : 1);
  } else if (n.opType === 'Scan') {
    const first = n.input?.[n.input.length - 1];
    const len = first ? outer.get(first)?.shape?.[0] : undefined;
    flops = costs[0].flops * (typeof len === 'number' ? len : 1);
  } else flops = costs.reduce((a, c) => a + c.flops, 0);
  // Weights used from the outer scope are counted by the caller (they are in nodeReads).
  return { flops, paramBytes: costs.reduce((a, c) => a + c.paramBytes, 0) };
}

function graphCost(g: onnx.IGraphProto, outer: Map<string, TensorMeta>, outerConsts: Map<string, ConstValue>): { flops: number; paramBytes: number } {
  const metas = new Map(outer);
  const consts = new Map(outerConsts);
  let paramBytes = 0;
  for (const v of [...(g.input ?? []), ...(g.valueInfo ?? []), ...(g.output ?? [])]) {
    const m = v.name ? valueInfoMeta(v) : undefined;
    if (m) metas.set(v.name!, m);
  }
  for (const t of g.initializer ?? []) {
    const m = tensorProtoMeta(t);
    if (t.name) metas.set(t.name, m);
    paramBytes += tensorBytes(m.dtype, m.shape);
  }
  let flops = 0;
  for (const n of g.node ?? []) {
    const ins = (n.input ?? []).map((t) => (t ? metas.get(t) : undefined));
    const r = inferNode(n, ins, (n.input ?? []).map((t) => (t ? consts.get(t) : undefined)));
    (n.output ?? []).forEach((o, k) => {
      const m = r.metas[k];
      if (o && m && (!metas.has(o) || isKnown(m.shape))) metas.set(o, m);
      const c = r.consts?.[k];
      if (o && c) consts.set(o, c);
    });
    const outs = (n.output ?? []).map((t) => (t ? metas.get(t) : undefined));
    flops += nodeFlops(n, ins, outs);
    if (n.opType === 'Constant') paramBytes += outs.reduce((a, m) => a + (m ? tensorBytes(m.dtype, m.shape ?? []) : 0), 0);
    const sub = subgraphCost(n, metas, consts);
    flops += sub.flops;
    paramBytes += sub.paramBytes;
  }
  return { flops, paramBytes };
}

/**
 * Moves every node that reads no other node's output (Constant, weight-only Identity, …) to just
 * before its first reader, so weights do not cross every cut between the top of the graph and their use.
 */
function sinkSources(order: readonly number[], dag: readonly DagNode[]): number[] {
  const producer = new Map<string, number>();
  dag.forEach((n, i) => n.outputs.forEach((t) => producer.set(t, i)));
  const isSource = dag.map((n) => n.inputs.length === 0 && n.outputs.length > 0);
  const before = new Map<number, number[]>(); // reader → sources to emit right before it
  const placed = new Set<number>();
  for (const i of order) {
    for (const t of dag[i].inputs) {
      const p = producer.get(t);
      if (p !== undefined && isSource[p] && !placed.has(p)) {
        placed.add(p);
        const list = before.get(i) ?? [];
        list.push(p);
        before.set(i, list);
      }
    }
  }
  const out: number[] = [];
  for (const i of order) {
    if (isSource[i] && placed.has(i)) continue;
    for (const p of before.get(i) ?? []) out.push(p);
    out.push(i);
  }
  return out;
}
