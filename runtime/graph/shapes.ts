// Static shape/dtype inference for ONNX nodes with symbolic dims, plus folding of the small integer
// tensors that shape arithmetic needs (Shape → Gather → Concat → Reshape). Exact shapes come from probe.ts.
import type { onnx } from 'onnx-proto';
import type { DType, Dim } from '../../protocols/graph.js';
import { ONNX_DTYPES, broadcast, dim, num } from './tensors.js';

export interface TensorMeta {
  dtype: DType;
  /** Undefined when even the rank is unknown. */
  shape?: Dim[];
}

/** A small constant tensor's values (shape arithmetic only; big tensors are never folded). */
export type ConstValue = number[];
export const MAX_FOLD_ELEMENTS = 64;

export function attr(node: onnx.INodeProto, name: string): onnx.IAttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}
export function attrInt(node: onnx.INodeProto, name: string, dflt: number): number {
  const a = attr(node, name);
  return a ? num(a.i) : dflt;
}
export function attrInts(node: onnx.INodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a?.ints && a.ints.length > 0 ? a.ints.map(num) : undefined;
}
export function attrFloats(node: onnx.INodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a?.floats && a.floats.length > 0 ? [...a.floats] : undefined;
}
export function attrString(node: onnx.INodeProto, name: string, dflt: string): string {
  const a = attr(node, name);
  return a?.s ? Buffer.from(a.s).toString('utf8') : dflt;
}

/** Values of a small numeric TensorProto, or undefined when it is large, external or not numeric. */
export function smallTensorValues(t: onnx.ITensorProto): ConstValue | undefined {
  const n = (t.dims ?? []).map(num).reduce((a, b) => a * b, 1);
  if (n > MAX_FOLD_ELEMENTS) return undefined;
  const dt = t.dataType ?? 0;
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData;
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      switch (dt) {
        case 1: out.push(dv.getFloat32(i * 4, true)); break;
        case 11: out.push(dv.getFloat64(i * 8, true)); break;
        case 6: out.push(dv.getInt32(i * 4, true)); break;
        case 7: out.push(Number(dv.getBigInt64(i * 8, true))); break;
        case 9: case 2: out.push(dv.getUint8(i)); break;
        case 3: out.push(dv.getInt8(i)); break;
        default: return undefined;
      }
    }
    return out;
  }
  if (t.int64Data && t.int64Data.length) return t.int64Data.map(num);
  if (t.int32Data && t.int32Data.length) return [...t.int32Data];
  if (t.floatData && t.floatData.length) return [...t.floatData];
  if (t.doubleData && t.doubleData.length) return [...t.doubleData];
  return n === 0 ? [] : undefined;
}

export function tensorProtoMeta(t: onnx.ITensorProto): TensorMeta {
  return { dtype: ONNX_DTYPES[t.dataType ?? 1] ?? 'float32', shape: (t.dims ?? []).map(num) };
}

/** dtype/shape of a ValueInfoProto; dims without a value keep their dim_param (or a generated name). */
export function valueInfoMeta(v: onnx.IValueInfoProto): TensorMeta | undefined {
  const tt = v.type?.tensorType;
  if (!tt) return undefined;
  const dtype = ONNX_DTYPES[tt.elemType ?? 0] ?? 'float32';
  if (!tt.shape) return { dtype };
  const shape = (tt.shape.dim ?? []).map((d, i): Dim =>
    d.dimValue !== null && d.dimValue !== undefined && num(d.dimValue) > 0 ? num(d.dimValue)
      : d.dimParam ? d.dimParam : `${v.name}:${i}`);
  return { dtype, shape };
}

const SAME_AS_INPUT0 = new Set([
  'Abs', 'Acos', 'Acosh', 'Asin', 'Asinh', 'Atan', 'Atanh', 'BatchNormalization', 'Ceil', 'Celu', 'Clip', 'Cos',
  'Cosh', 'CumSum', 'Dropout', 'Elu', 'Erf', 'Exp', 'Floor', 'Gelu', 'HardSigmoid', 'HardSwish', 'Hardmax',
  'Identity', 'InstanceNormalization', 'LayerNormalization', 'GroupNormalization', 'RMSNormalization',
  'LeakyRelu', 'Log', 'LogSoftmax', 'LpNormalization', 'LRN', 'MeanVarianceNormalization', 'Mish', 'Neg',
  'Reciprocal', 'Relu', 'Round', 'Selu', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh', 'Softmax', 'Softplus',
  'Softsign', 'Sqrt', 'Swish', 'Tan', 'Tanh', 'ThresholdedRelu', 'Not', 'IsInf', 'IsNaN', 'ReverseSequence',
  'RotaryEmbedding', 'ScatterElements', 'ScatterND', 'Scatter', 'Trilu', 'ImageScaler', 'Scale', 'ScaledTanh',
  'ParametricSoftplus', 'Affine',
]);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'Mod', 'PRelu',
  'BitShift', 'BitwiseAnd', 'BitwiseOr', 'BitwiseXor']);
const COMPARE = new Set(['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Xor']);
const BOOL_OUT = new Set(['IsInf', 'IsNaN', 'Not']);

export interface Inferred {
  metas: (TensorMeta | undefined)[];
  consts?: (ConstValue | undefined)[];
}

/** Infer one node's outputs from its inputs' metas and folded constant values. Unknown → undefined. */
export function inferNode(
  node: onnx.INodeProto,
  ins: (TensorMeta | undefined)[],
  cv: (ConstValue | undefined)[],
): Inferred {
  const op = node.opType ?? '';
  const x = ins[0];
  const s = x?.shape;
  const one = (m: TensorMeta | undefined, c?: ConstValue): Inferred => ({ metas: [m], consts: [c] });

  if (SAME_AS_INPUT0.has(op)) {
    if (!x) return { metas: [] };
    const m = { dtype: BOOL_OUT.has(op) ? 'bool' as const : x.dtype, shape: s };
    return op === 'Dropout' ? { metas: [m, { dtype: 'bool', shape: s }] } : { metas: [m] };
  }
  if (BROADCAST.has(op) || COMPARE.has(op) || op === 'Where') {
    const shapes = ins.filter((m): m is TensorMeta => !!m);
    const dtype: DType = COMPARE.has(op) ? 'bool' : (op === 'Where' ? ins[1]?.dtype : x?.dtype) ?? 'float32';
    if (shapes.length !== ins.length || shapes.some((m) => !m.shape)) return one({ dtype });
    const shape = broadcast(shapes.map((m) => m.shape!));
    let c: ConstValue | undefined;
    const [a, b] = cv;
    if (a && b && ins.length === 2 && ['Add', 'Sub', 'Mul', 'Div'].includes(op) && (a.length === b.length || a.length === 1 || b.length === 1)) {
      const len = Math.max(a.length, b.length);
      c = Array.from({ length: len }, (_, i) => {
        const p = a[a.length === 1 ? 0 : i], q = b[b.length === 1 ? 0 : i];
        return op === 'Add' ? p + q : op === 'Sub' ? p - q : op === 'Mul' ? p * q : dtype.startsWith('int') ? Math.trunc(p / q) : p / q;
      });
    }
    return one({ dtype, shape }, c);
  }
  switch (op) {
    case 'Constant': {
      const t = attr(node, 'value')?.t;
      if (t) return one(tensorProtoMeta(t), smallTensorValues(t));
      const ints = attrInts(node, 'value_ints'); const fl = attrFloats(node, 'value_floats');
      const a = attr(node, 'value_int'); const f = attr(node, 'value_float');
      if (ints) return one({ dtype: 'int64', shape: [ints.length] }, ints);
      if (fl) return one({ dtype: 'float32', shape: [fl.length] }, fl);
      if (a) return one({ dtype: 'int64', shape: [] }, [num(a.i)]);
      if (f) return one({ dtype: 'float32', shape: [] }, [f.f ?? 0]);
      return { metas: [] };
    }
    case 'Cast': case 'CastLike': {
      const to = op === 'Cast' ? ONNX_DTYPES[attrInt(node, 'to', 1)] ?? 'float32' : ins[1]?.dtype ?? 'float32';
      return one({ dtype: to, shape: s }, cv[0]);
    }
    case 'Shape': {
      if (!s) return one({ dtype: 'int64' });
      let start = attrInt(node, 'start', 0), end = attrInt(node, 'end', s.length);
      if (start < 0) start += s.length; if (end < 0) end += s.length;
      const sub = s.slice(start, Math.min(end, s.length));
      return one({ dtype: 'int64', shape: [sub.length] }, sub.every((d) => typeof d === 'number') ? sub as number[] : undefined);
    }
    case 'Size': return one({ dtype: 'int64', shape: [] }, s && s.every((d) => typeof d === 'number') ? [(s as number[]).reduce((p, q) => p * q, 1)] : undefined);
    case 'Conv': case 'ConvInteger': case 'QLinearConv': case 'DeformConv': return one(conv(node, ins, op === 'QLinearConv' ? 3 : 1));
    case 'ConvTranspose': return one(convTranspose(node, ins));
    case 'MaxPool': case 'AveragePool': case 'LpPool': {
      if (!x || !s) return { metas: [x && { dtype: x.dtype }] };
      const k = attrInts(node, 'kernel_shape') ?? [];
      const m = poolLike(node, s, k, s[1]);
      return { metas: [{ dtype: x.dtype, shape: m }, { dtype: 'int64', shape: m }] };
    }
    case 'GlobalAveragePool': case 'GlobalMaxPool': case 'GlobalLpPool':
      return one(x && { dtype: x.dtype, shape: s && [s[0], s[1], ...s.slice(2).map(() => 1)] });
    case 'Gemm': {
      const a = ins[0]?.shape, b = ins[1]?.shape;
      if (!a || !b || a.length !== 2 || b.length !== 2) return one(x && { dtype: x.dtype });
      const M = attrInt(node, 'transA', 0) ? a[1] : a[0];
      const N = attrInt(node, 'transB', 0) ? b[0] : b[1];
      return one({ dtype: x!.dtype, shape: [M, N] });
    }
    case 'MatMul': case 'MatMulInteger': case 'QLinearMatMul': {
      const ia = 0, ib = op === 'QLinearMatMul' ? 3 : 1;
      const a = ins[ia]?.shape, b = ins[ib]?.shape;
      const dtype: DType = op === 'MatMulInteger' ? 'int32' : op === 'QLinearMatMul' ? ins[7]?.dtype ?? 'uint8' : x?.dtype ?? 'float32';
      if (!a || !b) return one({ dtype });
      return one({ dtype, shape: matmulShape(a, b) });
    }
    case 'Flatten': {
      if (!s || !x) return one(x && { dtype: x.dtype });
      let ax = attrInt(node, 'axis', 1); if (ax < 0) ax += s.length;
      const p = (xs: Dim[]) => xs.reduce<Dim>((acc, d) => dim.mul(acc, d), 1);
      return one({ dtype: x.dtype, shape: [p(s.slice(0, ax)), p(s.slice(ax))] });
    }
    case 'Reshape': {
      const target = cv[1];
      if (!x) return { metas: [] };
      if (!target) return one({ dtype: x.dtype, shape: ins[1]?.shape && isNum(ins[1].shape[0]) ? Array.from({ length: ins[1].shape[0] as number }, (_, i) => `${node.output?.[0]}:${i}`) : undefined });
      return one({ dtype: x.dtype, shape: reshape(s, target, attrInt(node, 'allowzero', 0) === 1) }, cv[0]);
    }
    case 'Transpose': {
      if (!x || !s) return one(x && { dtype: x.dtype });
      const perm = attrInts(node, 'perm') ?? s.map((_, i) => s.length - 1 - i);
      return one({ dtype: x.dtype, shape: perm.map((p) => s[p]) });
    }
    case 'Squeeze': case 'Unsqueeze': {
      if (!x) return { metas: [] };
      const axes = attrInts(node, 'axes') ?? cv[1];
      if (!s) return one({ dtype: x.dtype }, cv[0]);
      if (!axes && node.input?.[1]) return one({ dtype: x.dtype }); // axes computed at run time
      if (op === 'Squeeze') {
        const r = s.length;
        const ax = axes ? new Set(axes.map((a) => (a < 0 ? a + r : a))) : new Set(s.flatMap((d, i) => (d === 1 ? [i] : [])));
        return one({ dtype: x.dtype, shape: s.filter((_, i) => !ax.has(i)) }, cv[0]);
      }
      if (!axes) return one({ dtype: x.dtype }, cv[0]);
      const r = s.length + axes.length;
      const ax = new Set(axes.map((a) => (a < 0 ? a + r : a)));
      const out: Dim[] = []; let j = 0;
      for (let i = 0; i < r; i++) out.push(ax.has(i) ? 1 : s[j++]);
      return one({ dtype: x.dtype, shape: out }, cv[0]);
    }
    case 'Concat': {
      if (!x) return { metas: [] };
      const shapes = ins.map((m) => m?.shape);
      if (shapes.some((q) => !q)) return one({ dtype: x.dtype });
      const r = shapes[0]!.length; let ax = attrInt(node, 'axis', 0); if (ax < 0) ax += r;
      const out = [...shapes[0]!];
      out[ax] = shapes.slice(1).reduce<Dim>((acc, q) => dim.add(acc, q![ax]), shapes[0]![ax]);
      const c = cv.every((v) => v) && r === 1 ? cv.flatMap((v) => v!) : undefined;
      return one({ dtype: x.dtype, shape: out }, c);
    }
    case 'Gather': {
      if (!x || !s || !ins[1]?.shape) return one(x && { dtype: x.dtype });
      let ax = attrInt(node, 'axis', 0); if (ax < 0) ax += s.length;
      const shape = [...s.slice(0, ax), ...ins[1].shape, ...s.slice(ax + 1)];
      let c: ConstValue | undefined;
      if (cv[0] && cv[1] && s.length === 1) c = cv[1].map((i) => cv[0]![i < 0 ? i + cv[0]!.length : i]);
      return one({ dtype: x.dtype, shape }, c);
    }
    case 'Slice': {
      if (!x || !s) return one(x && { dtype: x.dtype });
      const starts = attrInts(node, 'starts') ?? cv[1], ends = attrInts(node, 'ends') ?? cv[2];
      const axes = attrInts(node, 'axes') ?? (ins.length > 3 ? cv[3] : undefined) ?? starts?.map((_, i) => i);
      const steps = (ins.length > 4 ? cv[4] : undefined) ?? starts?.map(() => 1);
      if (!starts || !ends || !axes || !steps) return one({ dtype: x.dtype, shape: s.map((d, i) => `${node.output?.[0]}:${i}`) });
      const out = [...s];
      let c = cv[0];
      axes.forEach((a0, i) => {
        const a = a0 < 0 ? a0 + s.length : a0;
        const d = s[a];
        if (typeof d !== 'number') { out[a] = `${node.output?.[0]}:${a}`; c = undefined; return; }
        const [b, e, st] = sliceRange(starts[i], ends[i], steps[i], d);
        out[a] = Math.max(0, Math.ceil((e - b) / st));
        if (c && s.length === 1) c = Array.from({ length: out[a] as number }, (_, k) => c![b + k * st]);
      });
      return one({ dtype: x.dtype, shape: out }, c);
    }
    case 'Resize': case 'Upsample': {
      if (!x || !s) return one(x && { dtype: x.dtype });
      const sizes = op === 'Resize' ? cv[3] : undefined;
      const scales = op === 'Upsample' ? attrFloats(node, 'scales') ?? cv[1] : (cv[2] && cv[2].length ? cv[2] : node.input?.length === 2 ? cv[1] : undefined);
      if (sizes && sizes.length === s.length) return one({ dtype: x.dtype, shape: sizes });
      if (scales && scales.length === s.length) return one({ dtype: x.dtype, shape: s.map((d, i) => (typeof d === 'number' ? Math.floor(d * scales[i]) : scales[i] === 1 ? d : `${d}*${scales[i]}`)) });
      return one({ dtype: x.dtype, shape: s.map((d, i) => (i < 2 ? d : `${node.output?.[0]}:${i}`)) });
    }
    case 'Split': {
      if (!x || !s) return { metas: (node.output ?? []).map(() => x && { dtype: x.dtype }) };
      let ax = attrInt(node, 'axis', 0); if (ax < 0) ax += s.length;
      const k = node.output?.length ?? 1;
      const split = attrInts(node, 'split') ?? cv[1];
      return {
        metas: Array.from({ length: k }, (_, i) => {
          const out = [...s];
          out[ax] = split ? split[i] : dim.div(s[ax], k, true);
          return { dtype: x.dtype, shape: out };
        }),
      };
    }
    case 'Pad': {
      if (!x || !s) return one(x && { dtype: x.dtype });
      const pads = attrInts(node, 'pads') ?? cv[1];
      if (!pads || pads.length !== 2 * s.length) return one({ dtype: x.dtype, shape: s.map((_, i) => `${node.output?.[0]}:${i}`) });
      return one({ dtype: x.dtype, shape: s.map((d, i) => dim.add(d, pads[i] + pads[i + s.length])) });
    }
    case 'Expand': {
      if (!x) return { metas: [] };
      const target = cv[1];
      if (!target || !s) return one({ dtype: x.dtype });
      return one({ dtype: x.dtype, shape: broadcast([s, target]) });
    }
    case 'Tile': {
      if (!x || !s || !cv[1]) return one(x && { dtype: x.dtype });
      return one({ dtype: x.dtype, shape: s.map((d, i) => dim.mul(d, cv[1]![i])) });
    }
    case 'ConstantOfShape': {
      const v = attr(node, 'value')?.t;
      const dtype = v ? ONNX_DTYPES[v.dataType ?? 1] ?? 'float32' : 'float32';
      return one({ dtype, shape: cv[0] });
    }
    case 'Range': {
      const [a, b, d] = cv;
      const dtype = x?.dtype ?? 'int64';
      if (a && b && d) {
        const n = Math.max(0, Math.ceil((b[0] - a[0]) / d[0]));
        return one({ dtype, shape: [n] }, n <= MAX_FOLD_ELEMENTS ? Array.from({ length: n }, (_, i) => a[0] + i * d[0]) : undefined);
      }
      return one({ dtype, shape: [`${node.output?.[0]}:0`] });
    }
    case 'ArgMax': case 'ArgMin': case 'ReduceL1': case 'ReduceL2': case 'ReduceLogSum': case 'ReduceLogSumExp':
    case 'ReduceMax': case 'ReduceMean': case 'ReduceMin': case 'ReduceProd': case 'ReduceSum': case 'ReduceSumSquare': {
      if (!x || !s) return one(x && { dtype: op.startsWith('Arg') ? 'int64' : x.dtype });
      const dtype: DType = op.startsWith('Arg') ? 'int64' : x.dtype;
      const keep = attrInt(node, 'keepdims', 1) === 1;
      let axes = op.startsWith('Arg') ? [attrInt(node, 'axis', 0)] : attrInts(node, 'axes') ?? cv[1];
      if (!axes && node.input?.[1]) { // axes computed at run time: rank known only with keepdims
        return one({ dtype, shape: keep ? s.map((_, i) => `${node.output?.[0]}:${i}`) : undefined });
      }
      if (!axes) {
        if (attrInt(node, 'noop_with_empty_axes', 0) === 1) return one({ dtype, shape: s });
        axes = s.map((_, i) => i);
      }
      const ax = new Set(axes.map((a) => (a < 0 ? a + s.length : a)));
      return one({ dtype, shape: keep ? s.map((d, i) => (ax.has(i) ? 1 : d)) : s.filter((_, i) => !ax.has(i)) });
    }
    case 'TopK': {
      if (!x || !s) return { metas: [x && { dtype: x.dtype }, { dtype: 'int64' }] };
      let ax = attrInt(node, 'axis', -1); if (ax < 0) ax += s.length;
      const out = [...s]; out[ax] = cv[1]?.[0] ?? attrInt(node, 'k', 0) ?? `${node.output?.[0]}:${ax}`;
      return { metas: [{ dtype: x.dtype, shape: out }, { dtype: 'int64', shape: out }] };
    }
    case 'DepthToSpace': case 'SpaceToDepth': {
      if (!x || !s || s.length !== 4) return one(x && { dtype: x.dtype });
      const b = attrInt(node, 'blocksize', 1);
      const up = op === 'DepthToSpace';
      return one({ dtype: x.dtype, shape: up ? [s[0], dim.div(s[1], b * b), dim.mul(s[2], b), dim.mul(s[3], b)] : [s[0], dim.mul(s[1], b * b), dim.div(s[2], b), dim.div(s[3], b)] });
    }
    case 'Einsum': case 'NonZero': case 'NonMaxSuppression': case 'Compress': case 'Unique':
      return one({ dtype: op === 'Einsum' ? x?.dtype ?? 'float32' : 'int64' });
    default:
      return { metas: [] };
  }
}

function isNum(d: Dim | undefined): d is number { return typeof d === 'number'; }

function sliceRange(start: number, end: number, step: number, d: number): [number, number, number] {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let b = start < 0 ? start + d : start;
  let e = end < 0 ? end + d : end;
  if (step > 0) { b = clamp(b, 0, d); e = clamp(e, 0, d); } else { b = clamp(b, -1, d - 1); e = clamp(e, -1, d - 1); }
  return [b, e, step];
}

export function matmulShape(a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const a2 = a.length === 1 ? [1, a[0]] : a, b2 = b.length === 1 ? [b[0], 1] : b;
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)]);
  const out: Dim[] = [...batch];
  if (a.length !== 1) out.push(a2[a2.length - 2]);
  if (b.length !== 1) out.push(b2[b2.length - 1]);
  return out;
}

function reshape(s: Dim[] | undefined, target: number[], allowzero: boolean): Dim[] {
  const out: Dim[] = target.map((t, i) => (t === 0 && !allowzero ? s?.[i] ?? `reshape:${i}` : t));
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const total = s && s.every(isNum) ? (s as number[]).reduce((p, q) => p * q, 1) : undefined;
    const known = out.filter((d, i) => i !== neg);
    if (total !== undefined && known.every(isNum)) out[neg] = total / Math.max(1, (known as number[]).reduce((p, q) => p * q, 1));
    else out[neg] = `reshape(${(s ?? []).join('*')})`;
  }
  return out;
}

/** Output spatial dims for Conv/Pool: explicit pads, auto_pad SAME_*, VALID, dilations, ceil_mode. */
function poolLike(node: onnx.INodeProto, s: Dim[], k: number[], channels: Dim): Dim[] {
  const sp = s.length - 2;
  const strides = attrInts(node, 'strides') ?? Array(sp).fill(1);
  const dil = attrInts(node, 'dilations') ?? Array(sp).fill(1);
  const pads = attrInts(node, 'pads') ?? Array(2 * sp).fill(0);
  const auto = attrString(node, 'auto_pad', 'NOTSET');
  const ceil = attrInt(node, 'ceil_mode', 0) === 1;
  const out: Dim[] = [s[0], channels];
  for (let i = 0; i < sp; i++) {
    const d = s[i + 2];
    const ek = (k[i] - 1) * dil[i] + 1;
    if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') out.push(dim.div(d, strides[i], true));
    else {
      const p = auto === 'VALID' ? 0 : pads[i] + pads[i + sp];
      out.push(dim.window(d, p - ek, strides[i], ceil));
    }
  }
  return out;
}

function conv(node: onnx.INodeProto, ins: (TensorMeta | undefined)[], wIndex: number): TensorMeta | undefined {
  const x = ins[0], w = ins[wIndex];
  if (!x) return undefined;
  const dtype: DType = node.opType === 'ConvInteger' ? 'int32' : x.dtype;
  if (!x.shape || !w?.shape) return { dtype };
  const k = attrInts(node, 'kernel_shape') ?? (w.shape.slice(2) as number[]);
  return { dtype, shape: poolLike(node, x.shape, k, w.shape[0]) };
}

function convTranspose(node: onnx.INodeProto, ins: (TensorMeta | undefined)[]): TensorMeta | undefined {
  const x = ins[0], w = ins[1];
  if (!x) return undefined;
  if (!x.shape || !w?.shape) return { dtype: x.dtype };
  const s = x.shape, sp = s.length - 2;
  const g = attrInt(node, 'group', 1);
  const k = attrInts(node, 'kernel_shape') ?? (w.shape.slice(2) as number[]);
  const strides = attrInts(node, 'strides') ?? Array(sp).fill(1);
  const dil = attrInts(node, 'dilations') ?? Array(sp).fill(1);
  const pads = attrInts(node, 'pads') ?? Array(2 * sp).fill(0);
  const outPad = attrInts(node, 'output_padding') ?? Array(sp).fill(0);
  const outShape = attrInts(node, 'output_shape');
  const auto = attrString(node, 'auto_pad', 'NOTSET');
  const out: Dim[] = [s[0], dim.mul(w.shape[1], g)];
  for (let i = 0; i < sp; i++) {
    if (outShape) { out.push(outShape[outShape.length - sp + i]); continue; }
    if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') { out.push(dim.mul(s[i + 2], strides[i])); continue; }
    // stride*(in-1) + output_padding + (k-1)*dilation + 1 - pads
    const base = dim.mul(dim.add(s[i + 2], -1), strides[i]);
    out.push(dim.add(base, outPad[i] + (k[i] - 1) * dil[i] + 1 - pads[i] - pads[i + sp]));
  }
  return { dtype: x.dtype, shape: out };
}
