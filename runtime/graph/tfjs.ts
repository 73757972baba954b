// TF.js layers model (model.json: modelTopology + weightsManifest) → PartitionGraph: one node per layer
// call, shapes from batch_input_shape and layer configs (channels_last), FLOPs, params from the manifest.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { DType, Dim, GraphNode, PartitionGraph, TensorInfo } from '../../protocols/graph.js';
import type { AnalyzeOptions } from './onnx.js';
import { TRANSCENDENTAL_FLOPS } from './onnx-ops.js';
import { buildCuts, buildEdges, topoOrder, type DagNode } from './order.js';
import { DTYPE_BYTES, broadcast, dim, numel, tensorBytes } from './tensors.js';

export interface TfjsWeightSpec { name: string; shape: number[]; dtype?: string; quantization?: { dtype?: string } }
export interface TfjsModelJson {
  format?: string;
  modelTopology?: unknown;
  weightsManifest?: { paths: string[]; weights: TfjsWeightSpec[] }[];
}
type LayerConfig = Record<string, unknown>;
interface LayerJson { class_name: string; name?: string; config: LayerConfig; inbound_nodes?: unknown[] }
type InboundRef = [string, number, number, ...unknown[]];

const BATCH: Dim = 'batch';

/** Read model.json, check its weight files exist with the sizes the manifest implies, and analyze it. */
export async function analyzeTfjsFile(path: string, opts: AnalyzeOptions = {}): Promise<PartitionGraph> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CleaveError(ErrorCode.MODEL_NOT_FOUND, `cannot read '${path}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path`, { cause: e, details: { path } });
  }
  let json: TfjsModelJson;
  try {
    json = JSON.parse(text) as TfjsModelJson;
  } catch (e) {
    throw new CleaveError(ErrorCode.MODEL_INVALID, `'${path}' is not JSON (${(e as Error).message}); pass a TF.js model.json or an .onnx file`, { cause: e, details: { path } });
  }
  const dir = dirname(path);
  for (const group of json.weightsManifest ?? []) {
    const expected = group.weights.reduce((a, w) => a + weightBytes(w), 0);
    let actual = 0;
    for (const p of group.paths) {
      try {
        actual += (await stat(join(dir, p))).size;
      } catch (e) {
        throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `weight file '${p}' listed in ${path} is missing; copy it next to model.json`, { cause: e, details: { path: p } });
      }
    }
    if (actual < expected) {
      throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `weight files ${group.paths.join(', ')} hold ${actual} bytes but the manifest needs ${expected}; re-save the model`, { details: { paths: group.paths, expected, actual } });
    }
  }
  return analyzeTfjs(json, opts);
}

function weightBytes(w: TfjsWeightSpec): number {
  const dt = (w.quantization?.dtype ?? w.dtype ?? 'float32') as DType;
  return w.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[dt] ?? 4);
}

/** Analyze a parsed model.json (layers format; Sequential or functional Model). */
export async function analyzeTfjs(json: TfjsModelJson, opts: AnalyzeOptions = {}): Promise<PartitionGraph> {
  try {
    return analyzeLayers(json, opts);
  } catch (e) {
    if (e instanceof CleaveError) throw e;
    // A malformed topology (missing configs, wrong types) surfaces as a TypeError somewhere below.
    throw new CleaveError(ErrorCode.MODEL_INVALID, `model.json has a malformed layers topology (${(e as Error).message}); re-save the model with model.save`, { cause: e });
  }
}

function analyzeLayers(json: TfjsModelJson, opts: AnalyzeOptions): PartitionGraph {
  const topo = (json.modelTopology !== null && typeof json.modelTopology === 'object' ? json.modelTopology : undefined) as
    { class_name?: string; config?: unknown; model_config?: unknown } | undefined;
  if (json.format === 'graph-model') {
    throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, 'TF.js graph models are not supported; export a layers model (model.save) or convert the model to ONNX');
  }
  const root = (topo && 'model_config' in topo ? topo.model_config : topo) as { class_name?: string; config?: unknown } | undefined;
  if (!root || typeof root.class_name !== 'string' || !root.config) {
    throw new CleaveError(ErrorCode.MODEL_INVALID, 'model.json has no layers modelTopology; pass a TF.js layers model.json (saved by model.save) or an .onnx file');
  }
  const { layers, inputs: inputRefs, outputs: outputRefs } = normalize(root.class_name, root.config);

  // params per layer from the manifest: a weight belongs to the longest layer name prefixing it
  const layerNames = new Set(layers.map((l) => l.name!));
  const params = new Map<string, number>();
  for (const w of (json.weightsManifest ?? []).flatMap((g) => g.weights)) {
    const parts = w.name.split('/');
    let owner: string | undefined;
    for (let k = parts.length - 1; k >= 1 && !owner; k--) {
      const p = parts.slice(0, k).join('/');
      if (layerNames.has(p)) owner = p;
    }
    owner ??= parts.find((p) => layerNames.has(p));
    if (owner) params.set(owner, (params.get(owner) ?? 0) + weightBytes(w));
  }

  const shapes = new Map<string, Dim[]>();
  const dtypes = new Map<string, DType>();
  const inputInfos: TensorInfo[] = [];
  const given = opts.inputs ?? {};
  const inputNames = inputRefs.map((r) => tensorName(r));
  for (const name of Object.keys(given)) {
    if (!inputNames.includes(name)) {
      throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT, `the model has no input '${name}'; its inputs are ${inputNames.map((n) => `'${n}'`).join(', ')} — fix the --input name`, { details: { input: name, inputs: inputNames } });
    }
  }
  for (const ref of inputRefs) {
    const layer = layers.find((l) => l.name === ref[0])!;
    const cfg = layer.config;
    const declared = ((cfg.batch_input_shape as (number | null)[] | undefined) ?? [null, ...((cfg.input_shape as number[] | undefined) ?? [])])
      .map((d, i): Dim => (d === null || d === undefined ? (i === 0 ? BATCH : `${ref[0]}:${i}`) : d));
    const name = tensorName(ref);
    const shape = checkSample(name, declared, given[name]);
    shapes.set(name, shape);
    dtypes.set(name, ((cfg.dtype as DType | undefined) ?? 'float32'));
    inputInfos.push({ name, dtype: dtypes.get(name)!, shape, bytes: tensorBytes(dtypes.get(name)!, shape) });
  }

  const nodes: GraphNode[] = [];
  const called = new Set<string>();
  for (const layer of layers) {
    if (layer.class_name === 'InputLayer') continue;
    const calls = (layer.inbound_nodes ?? []) as InboundRef[][];
    calls.forEach((refs, callIndex) => {
      const ins = refs.map((r) => tensorName(r));
      const inShapes = ins.map((t) => shapes.get(t));
      const missing = ins.find((t, k) => !inShapes[k]);
      if (missing) {
        throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `layer '${layer.name}' reads '${missing}', which no earlier layer or input provides; re-save the model`, { details: { node: layer.name, tensor: missing } });
      }
      const out = `${layer.name}${callIndex === 0 ? '' : `:${callIndex}`}`;
      const { shape, flops } = layerCost(layer, inShapes as Dim[][]);
      shapes.set(out, shape);
      const dtype = dtypes.get(ins[0]) ?? 'float32';
      dtypes.set(out, dtype);
      const first = !called.has(layer.name!);
      called.add(layer.name!);
      nodes.push({
        id: out, op: layer.class_name, inputs: [...new Set(ins)], outputs: [out], flops: Math.round(flops),
        paramBytes: first ? params.get(layer.name!) ?? 0 : 0, outputBytes: tensorBytes(dtype, shape),
        outputShapes: { [out]: shape }, outputDtypes: { [out]: dtype },
      });
    });
  }
  for (const layer of layers) {
    if (PARAM_LAYERS.has(layer.class_name) && !params.has(layer.name!) && (json.weightsManifest ?? []).length > 0) {
      throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `layer '${layer.name}' (${layer.class_name}) has no weights in the manifest; re-save the model with its weights`, { details: { node: layer.name } });
    }
  }

  const bytesOf = (t: string): number => tensorBytes(dtypes.get(t) ?? 'float32', shapes.get(t) ?? []);
  const order = topoOrder(nodes as DagNode[], bytesOf).map((i) => nodes[i]);
  const outputNames = outputRefs.map((r) => tensorName(r));
  const infos = (names: string[]): TensorInfo[] => names.map((name) => ({ name, dtype: dtypes.get(name) ?? 'float32', shape: shapes.get(name) ?? ['?'], bytes: bytesOf(name) }));
  return {
    format: 'tfjs',
    ...(opts.modelPath ? { model: opts.modelPath } : {}),
    inputs: inputInfos,
    outputs: infos(outputNames),
    nodes: order,
    edges: buildEdges(order, bytesOf),
    cuts: buildCuts(order, inputNames, outputNames, bytesOf),
    totals: { flops: order.reduce((a, n) => a + n.flops, 0), paramBytes: [...params.values()].reduce((a, b) => a + b, 0), nodes: order.length },
  };
}

const PARAM_LAYERS = new Set(['Dense', 'Conv1D', 'Conv2D', 'Conv3D', 'Conv2DTranspose', 'DepthwiseConv2D', 'SeparableConv2D', 'Embedding']);

function tensorName(ref: InboundRef | [string, number, number]): string {
  const [layer, node, index] = ref;
  return node === 0 && index === 0 ? layer : `${layer}:${node}${index ? `:${index}` : ''}`;
}

/** Sequential → functional form: an InputLayer and one call per layer chained in order. */
function normalize(className: string, config: unknown): { layers: LayerJson[]; inputs: InboundRef[]; outputs: InboundRef[] } {
  if (className === 'Sequential') {
    const list = (Array.isArray(config) ? config : (config as { layers?: LayerJson[] }).layers ?? []) as LayerJson[];
    if (list.length === 0) throw new CleaveError(ErrorCode.MODEL_INVALID, 'the Sequential model has no layers; re-save the model');
    const first = list[0].config;
    const named = list.map((l) => ({ ...l, name: (l.config.name as string) ?? l.name }));
    const inputName = `${named[0].name}_input`;
    const layers: LayerJson[] = [{ class_name: 'InputLayer', name: inputName, config: { batch_input_shape: first.batch_input_shape, input_shape: first.input_shape, dtype: first.dtype } }];
    let prev = inputName;
    for (const l of named) {
      if (l.class_name === 'InputLayer') { layers[0] = { ...l, name: inputName }; continue; }
      layers.push({ ...l, inbound_nodes: [[[prev, 0, 0, {}]]] });
      prev = l.name!;
    }
    if (!layers[0].config.batch_input_shape && !layers[0].config.input_shape) {
      throw new CleaveError(ErrorCode.MODEL_INVALID, 'the Sequential model declares no input shape; build it with inputShape on its first layer and re-save');
    }
    return { layers, inputs: [[inputName, 0, 0]], outputs: [[prev, 0, 0]] };
  }
  if (className === 'Model' || className === 'Functional') {
    const c = config as { layers: LayerJson[]; input_layers: InboundRef[]; output_layers: InboundRef[] };
    return { layers: c.layers.map((l) => ({ ...l, name: l.name ?? (l.config.name as string) })), inputs: c.input_layers, outputs: c.output_layers };
  }
  throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `model class '${className}' is not supported; save a Sequential or functional layers model`);
}

function checkSample(name: string, declared: Dim[], sample: number[] | undefined): Dim[] {
  if (!sample) return declared;
  if (sample.length !== declared.length) {
    throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT, `input '${name}' has rank ${declared.length} (${declared.join(',')}) but --input gives rank ${sample.length} (${sample.join(',')}); give ${declared.length} dims`, { details: { input: name, expected: declared, given: sample } });
  }
  declared.forEach((d, i) => {
    if (typeof d === 'number' && d !== sample[i]) {
      throw new CleaveError(ErrorCode.MODEL_SHAPE_CONFLICT, `input '${name}' dim ${i} is fixed at ${d} in the model but --input gives ${sample[i]}; use ${d} there`, { details: { input: name, dim: i, expected: d, given: sample[i] } });
    }
  });
  return sample.slice();
}

const ACT_FLOPS: Record<string, number> = {
  linear: 0, relu: 1, relu6: 1, elu: TRANSCENDENTAL_FLOPS, selu: TRANSCENDENTAL_FLOPS, sigmoid: TRANSCENDENTAL_FLOPS,
  hardSigmoid: 3, tanh: TRANSCENDENTAL_FLOPS, softmax: 3 + TRANSCENDENTAL_FLOPS, softplus: TRANSCENDENTAL_FLOPS,
  softsign: 2, swish: TRANSCENDENTAL_FLOPS + 1, mish: TRANSCENDENTAL_FLOPS + 1, gelu: TRANSCENDENTAL_FLOPS + 2, logSoftmax: 3 + TRANSCENDENTAL_FLOPS,
};

const pairs = (v: unknown, n: number, dflt: number): number[] =>
  Array.isArray(v) ? (v as number[]) : typeof v === 'number' ? Array(n).fill(v) : Array(n).fill(dflt);

/** Output shape and FLOPs of one layer call (channels_last); unknown layers keep their input shape. */
function layerCost(layer: LayerJson, ins: Dim[][]): { shape: Dim[]; flops: number } {
  const c = layer.config;
  const x = ins[0];
  const n = (s: readonly Dim[]): number => numel(s);
  const act = (shape: Dim[]): number => n(shape) * (ACT_FLOPS[(c.activation as string) ?? 'linear'] ?? 1);
  const cls = layer.class_name;
  const spatialOut = (sp: number, k: number[], strides: number[], dil: number[], padding: string): Dim[] =>
    Array.from({ length: sp }, (_, i) => {
      const d = x[1 + i];
      if (padding === 'same') return dim.div(d, strides[i], true);
      return dim.window(d, -((k[i] - 1) * dil[i] + 1), strides[i]);
    });
  switch (cls) {
    case 'Dense': {
      const units = c.units as number;
      const shape = [...x.slice(0, -1), units];
      return { shape, flops: 2 * n(x.slice(0, -1)) * n([x[x.length - 1]]) * units + (c.use_bias === false ? 0 : n(shape)) + act(shape) };
    }
    case 'Conv1D': case 'Conv2D': case 'Conv3D': case 'DepthwiseConv2D': case 'SeparableConv2D': {
      const sp = x.length - 2;
      const k = pairs(c.kernel_size, sp, 1);
      const strides = pairs(c.strides, sp, 1);
      const dil = pairs(c.dilation_rate, sp, 1);
      const cin = n([x[x.length - 1]]);
      const spatial = spatialOut(sp, k, strides, dil, (c.padding as string) ?? 'valid');
      const kk = k.reduce((a, b) => a * b, 1);
      const mult = (c.depth_multiplier as number | undefined) ?? 1;
      if (cls === 'DepthwiseConv2D') {
        const shape = [x[0], ...spatial, dim.mul(x[x.length - 1], mult)];
        return { shape, flops: 2 * n(shape) * kk + (c.use_bias === false ? 0 : n(shape)) + act(shape) };
      }
      const filters = c.filters as number;
      const shape = [x[0], ...spatial, filters];
      if (cls === 'SeparableConv2D') {
        const mid = n([x[0], ...spatial]) * cin * mult;
        return { shape, flops: 2 * mid * kk + 2 * n(shape) * cin * mult + (c.use_bias === false ? 0 : n(shape)) + act(shape) };
      }
      return { shape, flops: 2 * n(shape) * cin * kk + (c.use_bias === false ? 0 : n(shape)) + act(shape) };
    }
    case 'Conv2DTranspose': {
      const k = pairs(c.kernel_size, 2, 1);
      const s = pairs(c.strides, 2, 1);
      const same = c.padding === 'same';
      const spatial = [0, 1].map((i) => (same ? dim.mul(x[1 + i], s[i]) : dim.add(dim.mul(x[1 + i], s[i]), Math.max(k[i] - s[i], 0))));
      const shape = [x[0], ...spatial, c.filters as number];
      return { shape, flops: 2 * n(x) * (c.filters as number) * k[0] * k[1] + (c.use_bias === false ? 0 : n(shape)) + act(shape) };
    }
    case 'MaxPooling1D': case 'MaxPooling2D': case 'MaxPooling3D':
    case 'AveragePooling1D': case 'AveragePooling2D': case 'AveragePooling3D': {
      const sp = x.length - 2;
      const k = pairs(c.pool_size, sp, 2);
      const strides = c.strides === null || c.strides === undefined ? k : pairs(c.strides, sp, 1);
      const shape = [x[0], ...spatialOut(sp, k, strides, Array(sp).fill(1), (c.padding as string) ?? 'valid'), x[x.length - 1]];
      return { shape, flops: n(shape) * k.reduce((a, b) => a * b, 1) };
    }
    case 'GlobalAveragePooling1D': case 'GlobalAveragePooling2D': case 'GlobalMaxPooling1D': case 'GlobalMaxPooling2D':
      return { shape: [x[0], x[x.length - 1]], flops: n(x) };
    case 'BatchNormalization': return { shape: x, flops: 2 * n(x) };
    case 'LayerNormalization': return { shape: x, flops: 5 * n(x) };
    case 'Flatten': return { shape: [x[0], x.slice(1).reduce<Dim>((a, d) => dim.mul(a, d), 1)], flops: 0 };
    case 'Reshape': return { shape: [x[0], ...((c.target_shape as number[]) ?? [])], flops: 0 };
    case 'Permute': return { shape: [x[0], ...((c.dims as number[]) ?? []).map((d) => x[d])], flops: 0 };
    case 'RepeatVector': return { shape: [x[0], c.n as number, x[x.length - 1]], flops: 0 };
    case 'Dropout': case 'SpatialDropout1D': case 'SpatialDropout2D': case 'GaussianNoise': case 'GaussianDropout':
    case 'AlphaDropout': case 'ActivityRegularization': case 'Masking':
      return { shape: x, flops: 0 };
    case 'Activation': return { shape: x, flops: act(x) };
    case 'ReLU': case 'LeakyReLU': case 'PReLU': case 'ThresholdedReLU': return { shape: x, flops: n(x) };
    case 'ELU': return { shape: x, flops: TRANSCENDENTAL_FLOPS * n(x) };
    case 'Softmax': return { shape: x, flops: (3 + TRANSCENDENTAL_FLOPS) * n(x) };
    case 'Add': case 'Subtract': case 'Multiply': case 'Average': case 'Maximum': case 'Minimum': {
      const shape = broadcast(ins);
      return { shape, flops: (ins.length - 1) * n(shape) + (cls === 'Average' ? n(shape) : 0) };
    }
    case 'Concatenate': {
      let ax = (c.axis as number | undefined) ?? -1;
      if (ax < 0) ax += x.length;
      const shape = [...x];
      shape[ax] = ins.slice(1).reduce<Dim>((a, s) => dim.add(a, s[ax]), x[ax]);
      return { shape, flops: 0 };
    }
    case 'ZeroPadding2D': {
      const p = c.padding as number | number[] | number[][];
      const pp = typeof p === 'number' ? [[p, p], [p, p]] : Array.isArray(p[0]) ? (p as number[][]) : (p as number[]).map((v) => [v, v]);
      return { shape: [x[0], dim.add(x[1], pp[0][0] + pp[0][1]), dim.add(x[2], pp[1][0] + pp[1][1]), x[3]], flops: 0 };
    }
    case 'Cropping2D': {
      const p = c.cropping as number | number[][];
      const pp = typeof p === 'number' ? [[p, p], [p, p]] : p;
      return { shape: [x[0], dim.add(x[1], -(pp[0][0] + pp[0][1])), dim.add(x[2], -(pp[1][0] + pp[1][1])), x[3]], flops: 0 };
    }
    case 'UpSampling2D': {
      const s = pairs(c.size, 2, 2);
      const shape = [x[0], dim.mul(x[1], s[0]), dim.mul(x[2], s[1]), x[3]];
      return { shape, flops: c.interpolation === 'bilinear' ? 8 * n(shape) : n(shape) };
    }
    case 'Embedding': return { shape: [...x, c.output_dim as number], flops: 0 };
    case 'LSTM': case 'GRU': case 'SimpleRNN': {
      const units = c.units as number;
      const gates = cls === 'LSTM' ? 4 : cls === 'GRU' ? 3 : 1;
      const steps = n([x[1]]), batch = n([x[0]]), inDim = n([x[2]]);
      const shape = c.return_sequences ? [x[0], x[1], units] : [x[0], units];
      return { shape, flops: 2 * batch * steps * gates * units * (inDim + units) + 4 * batch * steps * gates * units };
    }
    default:
      return { shape: x, flops: n(x) };
  }
}
