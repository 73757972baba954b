// Sub-model extraction: cuts a model into stages (contiguous ranges of a topological node order) and
// emits one standalone ONNX model per stage plus the manifest naming the tensors that cross each cut.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from '../ort.js';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { encodeModel, nodeIds, onnx } from './proto.js';

/** One stage in a manifest: its file (relative to the manifest) and the tensors it reads and writes. */
export interface StageManifestEntry {
  file: string;
  inputs: string[];
  outputs: string[];
}

export interface SplitManifest {
  stages: StageManifestEntry[];
}

/** What crosses into and out of one stage, before types are attached. */
export interface StageInterface {
  /** Node ids in stage order. */
  nodes: string[];
  /** Tensors read that earlier stages or the model's inputs provide (first-read order). */
  inputs: string[];
  /** Tensors produced that later stages read, plus model outputs this stage provides (production order). */
  outputs: string[];
  /** Initializer names this stage needs (also those read from If/Loop/Scan bodies). */
  initializers: string[];
  /**
   * Ids of Constant nodes of other stages copied into this one: a Constant's output never crosses a
   * cut (weights stored as Constant nodes would otherwise travel with every request).
   */
  constants: string[];
  /** Node ids in the stage's graph: copied Constants, then its own nodes minus Constants it does not use. */
  graphNodes: string[];
}

export interface ExtractedStage extends StageInterface {
  index: number;
  /** Shares node and initializer objects with the source model: read-only (encode it for a copy). */
  model: onnx.ModelProto;
}

export interface ExtractResult {
  stages: ExtractedStage[];
  manifest: SplitManifest;
}

export interface ExtractOptions {
  /**
   * Types of intermediate tensors when the model's value_info lacks them. Default: probe with an
   * onnxruntime session on a copy of the model that exposes the intermediates as outputs.
   */
  types?: ReadonlyMap<string, onnx.ITypeProto>;
  /** Set false to skip the probe (stage I/O without value_info then fails with MODEL_UNSUPPORTED). */
  probe?: boolean;
}

/** Stages from cut positions over an order: cuts [2,5] over 7 ids → [ids 0..1], [2..4], [5..6]. */
export function stagesFromCuts(order: readonly string[], cuts: readonly number[]): string[][] {
  const points = [0, ...cuts, order.length];
  for (let i = 1; i < points.length; i++) {
    if (!(points[i] > points[i - 1]) || !Number.isInteger(points[i])) {
      throw new CleaveError(ErrorCode.PLAN_INVALID, `cut positions ${JSON.stringify(cuts)} must be increasing integers strictly between 0 and ${order.length}; fix the plan`);
    }
  }
  return points.slice(1).map((end, i) => order.slice(points[i], end));
}

/** Tensor names a graph reads from its enclosing scope (subgraph bodies of If/Loop/Scan). */
export function outerScopeRefs(g: onnx.IGraphProto): Set<string> {
  const defined = new Set<string>();
  for (const v of g.input ?? []) if (v.name) defined.add(v.name);
  for (const t of g.initializer ?? []) if (t.name) defined.add(t.name);
  for (const s of g.sparseInitializer ?? []) if (s.values?.name) defined.add(s.values.name);
  for (const n of g.node ?? []) for (const o of n.output ?? []) if (o) defined.add(o);
  const refs = new Set<string>();
  for (const n of g.node ?? []) {
    for (const r of nodeReads(n)) if (!defined.has(r)) refs.add(r);
  }
  return refs;
}

/** Every tensor a node reads: its non-empty inputs and the outer-scope names of its subgraphs. */
export function nodeReads(n: onnx.INodeProto): string[] {
  const reads = (n.input ?? []).filter((x) => x !== '');
  for (const a of n.attribute ?? []) {
    const subs = a.g ? [a.g, ...(a.graphs ?? [])] : a.graphs ?? [];
    for (const sg of subs) for (const r of outerScopeRefs(sg)) reads.push(r);
  }
  return [...new Set(reads)];
}

/**
 * The interface of every stage: validates that stages partition the graph's nodes in a topological
 * order (PLAN_INVALID otherwise) and lists what crosses each cut. Pure; no types, no I/O.
 */
export function stageInterfaces(model: onnx.IModelProto, stages: readonly (readonly string[])[]): StageInterface[] {
  const g = model.graph;
  if (!g) throw new CleaveError(ErrorCode.MODEL_INVALID, 'the model has no graph; pass a complete ONNX model');
  const nodes = g.node ?? [];
  const ids = nodeIds(g);
  const indexById = new Map(ids.map((id, i) => [id, i]));
  const stageOf = new Map<number, number>();
  stages.forEach((st, s) => {
    if (st.length === 0) throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${s} has no nodes; remove empty stages from the plan`);
    for (const id of st) {
      const i = indexById.get(id);
      if (i === undefined) throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${s} names node '${id}', which is not in the model; use the node ids from 'cleave analyze'`, { details: { stage: s, node: id } });
      if (stageOf.has(i)) throw new CleaveError(ErrorCode.PLAN_INVALID, `node '${id}' is in stage ${stageOf.get(i)} and stage ${s}; put every node in exactly one stage`, { details: { node: id } });
      stageOf.set(i, s);
    }
  });
  if (stageOf.size !== nodes.length) {
    const missing = ids.filter((_, i) => !stageOf.has(i));
    throw new CleaveError(ErrorCode.PLAN_INVALID, `the plan leaves out ${missing.length} node(s) (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}); put every node in exactly one stage`, { details: { missing: missing.slice(0, 50) } });
  }

  const initNames = new Set<string>();
  for (const t of g.initializer ?? []) if (t.name) initNames.add(t.name);
  for (const s of g.sparseInitializer ?? []) if (s.values?.name) initNames.add(s.values.name);
  // A graph input with an initializer of the same name (IR < 4 style) is a weight, not a feed.
  const modelInputs = new Set((g.input ?? []).map((v) => v.name ?? '').filter((n) => n && !initNames.has(n)));
  const modelOutputs = (g.output ?? []).map((v) => v.name ?? '');

  // Producer of every node output: [stage, position in the flattened order].
  const producer = new Map<string, { stage: number; pos: number; constant?: string }>();
  const reads: string[][] = nodes.map((n) => nodeReads(n));
  let pos = 0;
  stages.forEach((st, s) => {
    for (const id of st) {
      const n = nodes[indexById.get(id)!];
      const constant = isConstantNode(n) ? id : undefined;
      for (const o of n.output ?? []) if (o) producer.set(o, { stage: s, pos, constant });
      pos++;
    }
  });
  // Topological check and who reads what.
  const readersAfter = new Map<string, number>(); // tensor → last stage reading it
  pos = 0;
  stages.forEach((st, s) => {
    for (const id of st) {
      const i = indexById.get(id)!;
      for (const r of reads[i]) {
        const p = producer.get(r);
        // Constants have no inputs: they are copied to (or placed first in) the stage that reads them.
        if (p?.constant !== undefined) {
          if (p.stage === s) readersAfter.set(r, Math.max(readersAfter.get(r) ?? -1, s));
          continue;
        }
        if (p) {
          if (p.pos >= pos) {
            throw new CleaveError(ErrorCode.PLAN_INVALID, `node '${id}' (stage ${s}) reads '${r}' before the node that produces it; order the stages' nodes topologically (use the order from 'cleave analyze')`, { details: { node: id, tensor: r } });
          }
        } else if (!modelInputs.has(r) && !initNames.has(r)) {
          throw new CleaveError(ErrorCode.MODEL_INVALID, `node '${id}' reads '${r}', which no node, input or initializer provides; fix or re-export the model`, { details: { node: id, tensor: r } });
        }
        readersAfter.set(r, Math.max(readersAfter.get(r) ?? -1, s));
      }
      pos++;
    }
  });

  const last = stages.length - 1;
  const modelOutputSet = new Set(modelOutputs);
  return stages.map((st, s) => {
    const inputs: string[] = [];
    const inits: string[] = [];
    const seen = new Set<string>();
    const producedHere = new Set<string>();
    const outputs: string[] = [];
    const dead: string[] = [];
    const constants: string[] = [];
    for (const id of st) {
      const i = indexById.get(id)!;
      for (const r of reads[i]) {
        if (seen.has(r) || producedHere.has(r)) continue;
        seen.add(r);
        const p = producer.get(r);
        if (p?.constant !== undefined && p.stage !== s) {
          if (!constants.includes(p.constant)) constants.push(p.constant);
        } else if (p ? p.stage < s : modelInputs.has(r)) inputs.push(r);
        else if (!p && initNames.has(r)) inits.push(r);
      }
      for (const o of nodes[i].output ?? []) {
        if (!o || producedHere.has(o)) continue;
        producedHere.add(o);
        if (modelOutputSet.has(o) || (readersAfter.get(o) ?? -1) > s) outputs.push(o);
        else if (!readersAfter.has(o)) dead.push(o);
      }
    }
    // Model outputs nobody produces (they are model inputs or initializers) come out of the last stage.
    if (s === last) {
      for (const o of modelOutputs) {
        if (!o || producer.has(o) || outputs.includes(o)) continue;
        if (modelInputs.has(o) && !seen.has(o)) { seen.add(o); inputs.push(o); }
        if (initNames.has(o) && !inits.includes(o)) inits.push(o);
        outputs.push(o);
      }
    }
    // ONNX needs at least one output; a stage whose results nobody reads (or only Constants, which
    // are copied to their readers) exposes what it computes.
    if (outputs.length === 0) outputs.push(...dead);
    if (outputs.length === 0) outputs.push(...producedHere);
    if (outputs.length === 0) {
      throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${s} produces nothing any later stage or the model's outputs use; merge it into a neighbouring stage`, { details: { stage: s } });
    }
    const used = new Set([...outputs, ...st.flatMap((id) => reads[indexById.get(id)!])]);
    const ownConstants = st.filter((id) => {
      const n = nodes[indexById.get(id)!];
      return isConstantNode(n) && (n.output ?? []).some((o) => used.has(o));
    });
    const rest = st.filter((id) => !isConstantNode(nodes[indexById.get(id)!]));
    return { nodes: [...st], inputs, outputs, initializers: inits, constants, graphNodes: [...constants, ...ownConstants, ...rest] };
  });
}

/** A `Constant` node of the default domain: no inputs, its value in an attribute. */
export function isConstantNode(n: onnx.INodeProto): boolean {
  return n.opType === 'Constant' && !n.domain && (n.input ?? []).length === 0;
}

/** Types of the tensors named, from the model's inputs, outputs and value_info (tensor types with an elem_type only). */
function declaredTypes(g: onnx.IGraphProto): Map<string, onnx.ITypeProto> {
  const m = new Map<string, onnx.ITypeProto>();
  for (const list of [g.valueInfo ?? [], g.output ?? [], g.input ?? []]) {
    for (const v of list) if (v.name && v.type && hasElemType(v.type)) m.set(v.name, v.type);
  }
  for (const t of g.initializer ?? []) {
    if (t.name && !m.has(t.name)) m.set(t.name, { tensorType: { elemType: t.dataType ?? 0, shape: { dim: (t.dims ?? []).map((d) => ({ dimValue: d })) } } });
  }
  return m;
}

function hasElemType(t: onnx.ITypeProto): boolean {
  if (t.tensorType) return !!t.tensorType.elemType;
  return !!(t.sequenceType || t.mapType || t.optionalType || t.sparseTensorType);
}

/**
 * Types of every node output, read from an onnxruntime session on a copy of the model that lists
 * them as (untyped) graph outputs; ORT infers their types. Non-tensor values are left out.
 */
export async function probeTypes(model: onnx.IModelProto, names?: readonly string[]): Promise<Map<string, onnx.ITypeProto>> {
  const g = model.graph!;
  const existing = new Set((g.output ?? []).map((v) => v.name ?? ''));
  const want = (names ?? (g.node ?? []).flatMap((n) => (n.output ?? []).filter((o) => o))).filter((n) => !existing.has(n));
  const out = new Map<string, onnx.ITypeProto>();
  if (want.length === 0) return out;
  const probe = onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({ ...g, output: [...(g.output ?? []), ...[...new Set(want)].map((name) => onnx.ValueInfoProto.create({ name }))] }),
  });
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(encodeModel(probe), { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'disabled', logSeverityLevel: 4 });
  } catch (e) {
    throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `onnxruntime cannot load the model to infer the types of the tensors at the cuts (${(e as Error).message.split('\n')[0]}); add value_info for them (onnx.shape_inference) or run the model through onnxruntime first`, { cause: e });
  }
  try {
    for (const meta of session.outputMetadata) {
      if (!meta.isTensor) {
        out.set(meta.name, { sequenceType: {} }); // any non-tensor: extraction refuses to cut across it
        continue;
      }
      const elemType = ORT_ELEM[meta.type];
      if (!elemType) continue;
      // ORT reports an unknown shape as [], indistinguishable from a scalar: keep the rank unknown then.
      const tensorType: onnx.TypeProto.ITensor = { elemType };
      if (meta.shape.length > 0) tensorType.shape = { dim: meta.shape.map((d) => (typeof d === 'number' && d >= 0 ? { dimValue: d } : typeof d === 'string' && d ? { dimParam: d } : {})) };
      out.set(meta.name, { tensorType });
    }
  } finally {
    await session.release();
  }
  return out;
}

const ORT_ELEM: Record<string, number> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9,
  float16: 10, float64: 11, uint32: 12, uint64: 13,
};

/**
 * One standalone ONNX model per stage: its nodes (If/Loop/Scan bodies whole), the initializers it
 * uses, typed inputs/outputs, and the original opset_import, ir_version and functions.
 */
export async function extractStages(model: onnx.IModelProto, stages: readonly (readonly string[])[], opts: ExtractOptions = {}): Promise<ExtractResult> {
  const ifaces = stageInterfaces(model, stages);
  const g = model.graph!;
  const types = declaredTypes(g);
  const needed = [...new Set(ifaces.flatMap((s) => [...s.inputs, ...s.outputs]))].filter((n) => !types.has(n) && !opts.types?.has(n));
  let probed = new Map<string, onnx.ITypeProto>();
  if (needed.length > 0 && opts.probe !== false) probed = await probeTypes(model, needed);
  const typeOf = (name: string): onnx.ITypeProto => {
    const t = types.get(name) ?? opts.types?.get(name) ?? probed.get(name);
    if (!t) {
      throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `cannot tell the type of '${name}', which crosses a cut; move the cut, or add value_info for it to the model (onnx.shape_inference)`, { details: { tensor: name } });
    }
    if (!t.tensorType) {
      throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `'${name}' crosses a cut but is not a tensor (sequence, map or optional); move the cut so that only tensors cross it`, { details: { tensor: name } });
    }
    return t;
  };

  const ids = nodeIds(g);
  const nodeById = new Map(ids.map((id, i) => [id, (g.node ?? [])[i]]));
  const initByName = new Map((g.initializer ?? []).map((t) => [t.name ?? '', t]));
  const sparseByName = new Map((g.sparseInitializer ?? []).map((t) => [t.values?.name ?? '', t]));
  const inputInfo = new Map((g.input ?? []).map((v) => [v.name ?? '', v]));
  const valueInfo = new Map((g.valueInfo ?? []).map((v) => [v.name ?? '', v]));

  const result: ExtractedStage[] = ifaces.map((iface, index) => {
    const stageNodes = iface.graphNodes.map((id) => nodeById.get(id)!);
    const produced = new Set(stageNodes.flatMap((n) => n.output ?? []));
    const ioNames = new Set([...iface.inputs, ...iface.outputs]);
    const graph = onnx.GraphProto.create({
      name: `${g.name || 'graph'}_stage${index}`,
      node: stageNodes,
      input: [
        ...iface.inputs.map((name) => onnx.ValueInfoProto.create({ name, type: typeOf(name) })),
        // Keep IR<4 style weight inputs next to their initializers, as the original did.
        ...iface.initializers.filter((n) => inputInfo.has(n)).map((n) => inputInfo.get(n)!),
      ],
      output: iface.outputs.map((name) => onnx.ValueInfoProto.create({ name, type: typeOf(name) })),
      initializer: iface.initializers.filter((n) => initByName.has(n)).map((n) => initByName.get(n)!),
      sparseInitializer: iface.initializers.filter((n) => sparseByName.has(n)).map((n) => sparseByName.get(n)!),
      valueInfo: [...valueInfo.values()].filter((v) => produced.has(v.name ?? '') && !ioNames.has(v.name ?? '')),
    });
    const m = onnx.ModelProto.create({
      irVersion: model.irVersion,
      opsetImport: model.opsetImport,
      producerName: 'cleave',
      producerVersion: model.producerVersion ?? '',
      domain: model.domain ?? '',
      modelVersion: model.modelVersion ?? 0,
      docString: `stage ${index} of ${ifaces.length}${model.producerName ? ` (model by ${model.producerName})` : ''}`,
      graph,
      functions: model.functions ?? [],
      metadataProps: model.metadataProps ?? [],
    });
    return { ...iface, index, model: m };
  });
  return {
    stages: result,
    manifest: { stages: result.map((s) => ({ file: stageFileName(s.index), inputs: s.inputs, outputs: s.outputs })) },
  };
}

export function stageFileName(index: number): string {
  return `stage_${index}.onnx`;
}

/** Write `stage_<i>.onnx` for every stage and `manifest.json` into dir (created if missing). */
export async function writeStages(dir: string, result: ExtractResult): Promise<SplitManifest> {
  await mkdir(dir, { recursive: true });
  for (const s of result.stages) await writeFile(join(dir, stageFileName(s.index)), encodeModel(s.model));
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(result.manifest, null, 2) + '\n');
  return result.manifest;
}
