// The ONNX cost model: FLOPs of one node from its input/output shapes (a multiply-add counts 2;
// symbolic dims count 1). Conventions per op family are in onnx-ops.ts; formulas are here.
import type { onnx } from 'onnx-proto';
import type { Dim } from '../../protocols/graph.js';
import { OP_COST, TRANSCENDENTAL_FLOPS } from './onnx-ops.js';
import { attrInt, attrInts, attrString, type TensorMeta } from './shapes.js';
import { numel } from './tensors.js';

const d = (x: Dim | undefined): number => (typeof x === 'number' ? x : 1);
const prod = (xs: readonly Dim[]): number => xs.reduce<number>((a, x) => a * d(x), 1);

/** FLOPs of one default-domain (or contrib) node; unknown ops cost one FLOP per output element. */
export function nodeFlops(node: onnx.INodeProto, ins: (TensorMeta | undefined)[], outs: (TensorMeta | undefined)[]): number {
  const op = node.opType ?? '';
  const x = ins[0]?.shape;
  const y = outs[0]?.shape;
  const outN = outs.reduce((a, m) => a + numel(m?.shape), 0);
  const inN = numel(x);
  const kind = OP_COST.get(op);
  if (kind === 'movement') return 0;
  if (kind === 'transcendental') return TRANSCENDENTAL_FLOPS * outN;
  if (kind === 'reduction') return inN;
  if (kind !== 'special') {
    // contrib ops with a known shape of work
    if (op === 'FusedConv') return convFlops(node, ins, outs);
    if (op === 'FusedMatMul') return matmulFlops(ins);
    if (op === 'Attention' || op === 'MultiHeadAttention') return attentionFlops(node, ins);
    return outN || inN;
  }
  switch (op) {
    case 'Conv': case 'ConvInteger': case 'QLinearConv': case 'DeformConv':
      return convFlops(node, op === 'QLinearConv' ? [ins[0], ins[3], ins[8]] : ins, outs);
    case 'ConvTranspose': {
      // each input pixel scatters a (Cout/g × k) patch: 2·N·Cin·in_spatial·(Cout/g)·prod(k)
      const w = ins[1]?.shape;
      if (!x || !w) return outN;
      const k = attrInts(node, 'kernel_shape') ?? w.slice(2);
      return 2 * d(x[0]) * d(x[1]) * prod(x.slice(2)) * d(w[1]) * prod(k) + (ins[2] ? numel(y) : 0);
    }
    case 'Gemm': {
      const a = ins[0]?.shape, b = ins[1]?.shape;
      if (!a || !b || !y) return outN;
      const K = attrInt(node, 'transA', 0) ? d(a[0]) : d(a[1]);
      return 2 * prod(y) * K + (ins[2] ? prod(y) : 0);
    }
    case 'MatMul': case 'MatMulInteger': return matmulFlops(ins);
    case 'QLinearMatMul': return matmulFlops([ins[0], ins[3]]);
    case 'Einsum': return einsumFlops(node, ins);
    case 'AveragePool': case 'MaxPool': case 'LpPool': {
      const k = attrInts(node, 'kernel_shape') ?? [1];
      return numel(y) * prod(k);
    }
    case 'MaxRoiPool': return numel(y) * 4;
    case 'BatchNormalization': return 2 * numel(y); // folded scale and shift
    case 'InstanceNormalization': case 'LayerNormalization': case 'GroupNormalization':
    case 'MeanVarianceNormalization': case 'RMSNormalization': case 'LpNormalization':
      return 5 * inN; // mean, variance, normalize, scale, shift
    case 'LRN': return numel(y) * (attrInt(node, 'size', 1) + TRANSCENDENTAL_FLOPS);
    case 'Softmax': case 'LogSoftmax': return (3 + TRANSCENDENTAL_FLOPS) * inN; // max, sub, exp, sum, div
    case 'HardSigmoid': return 3 * outN;
    case 'HardSwish': return 4 * outN;
    case 'Attention': return attentionFlops(node, ins);
    case 'RotaryEmbedding': return 3 * outN;
    case 'Resize': case 'Upsample': {
      const mode = attrString(node, 'mode', 'nearest');
      const sp = Math.max(0, (y?.length ?? 2) - 2);
      const taps = mode === 'linear' || mode === 'bilinear' ? 2 ** sp : mode === 'cubic' ? 4 ** sp : 0;
      return taps === 0 ? numel(y) : 2 * taps * numel(y);
    }
    case 'LSTM': case 'GRU': case 'RNN': {
      // per step and direction: gates·hidden·(input+hidden) multiply-adds
      const w = ins[1]?.shape, r = ins[2]?.shape;
      if (!x || !w || !r) return outN;
      const gates = op === 'LSTM' ? 4 : op === 'GRU' ? 3 : 1;
      const hidden = attrInt(node, 'hidden_size', d(r[2]));
      const dirs = d(w[0]);
      const inputSize = d(x[2]);
      return 2 * d(x[0]) * d(x[1]) * dirs * gates * hidden * (inputSize + hidden) + 4 * d(x[0]) * d(x[1]) * dirs * gates * hidden;
    }
    case 'If': case 'Loop': case 'Scan': return 0; // priced from their subgraphs by the analyzer
    default: return outN;
  }
}

/** 2·N·Cout·out_spatial·(Cin/g)·prod(k), plus one add per output for the bias. */
function convFlops(node: onnx.INodeProto, ins: (TensorMeta | undefined)[], outs: (TensorMeta | undefined)[]): number {
  const w = ins[1]?.shape, y = outs[0]?.shape;
  if (!w || !y) return numel(y);
  const k = attrInts(node, 'kernel_shape') ?? w.slice(2);
  const cinPerGroup = d(w[1]);
  return 2 * numel(y) * cinPerGroup * prod(k) + (ins[2] ? numel(y) : 0);
}

/** 2·batch·M·N·K with numpy broadcasting of the batch dims. */
function matmulFlops(ins: (TensorMeta | undefined)[]): number {
  const a = ins[0]?.shape, b = ins[1]?.shape;
  if (!a || !b) return 0;
  const a2 = a.length === 1 ? [1, a[0]] : a, b2 = b.length === 1 ? [b[0], 1] : b;
  const M = d(a2[a2.length - 2]), K = d(a2[a2.length - 1]), N = d(b2[b2.length - 1]);
  const ab = a2.slice(0, -2), bb = b2.slice(0, -2);
  const r = Math.max(ab.length, bb.length);
  let batch = 1;
  for (let i = 0; i < r; i++) batch *= Math.max(d(ab[ab.length - r + i] ?? 1), d(bb[bb.length - r + i] ?? 1));
  return 2 * batch * M * N * K;
}

/** 2 × product over every distinct index letter (one multiply-add per point of the iteration space). */
function einsumFlops(node: onnx.INodeProto, ins: (TensorMeta | undefined)[]): number {
  const eq = attrString(node, 'equation', '').replace(/\s/g, '');
  const lhs = eq.split('->')[0]?.split(',') ?? [];
  const sizes = new Map<string, number>();
  lhs.forEach((term, i) => {
    const s = ins[i]?.shape;
    if (!s || term.includes('...')) return;
    [...term].forEach((ch, j) => sizes.set(ch, Math.max(sizes.get(ch) ?? 1, d(s[j]))));
  });
  let p = 1;
  for (const v of sizes.values()) p *= v;
  return 2 * p;
}

/** QKᵀ and (softmax·V) for [B,S,hidden] activations: 4·B·S²·hidden plus the QKV projections when weights are given. */
function attentionFlops(node: onnx.INodeProto, ins: (TensorMeta | undefined)[]): number {
  const q = ins[0]?.shape;
  if (!q) return 0;
  if (q.length === 4) { // ai.onnx Attention with [B, heads, S, head_size]
    const k = ins[1]?.shape;
    const [B, H, S, Dh] = q.map(d);
    const L = k ? d(k[2]) : S;
    return 4 * B * H * S * L * Dh + 5 * B * H * S * L;
  }
  const [B, S, hidden] = q.map(d);
  const w = ins[1]?.shape;
  const proj = w && w.length === 2 && node.domain === 'com.microsoft' ? 2 * B * S * d(w[0]) * d(w[1]) : 0;
  return proj + 4 * B * S * S * hidden + 5 * B * S * S;
}
