// The one tensor comparison: dtype, then dims, then data with absolute/relative tolerance and NaN rules.
// Accepts DecodedTensor ({dtype,dims,data}) and onnxruntime tensors ({type,dims,data}) alike.

/** Anything tensor-shaped: a DecodedTensor, an onnxruntime `Tensor`, or a codec tensor. */
export interface ComparableTensor {
  dtype?: string;
  type?: string;
  dims: readonly number[];
  data: ArrayLike<number | bigint | string | boolean> | readonly (number | bigint | string | boolean)[];
}

/** numpy `allclose` semantics: |a - e| <= atol + rtol * |e|, per element. */
export interface Tolerance {
  rtol: number;
  atol: number;
}

/** onnx backend-test defaults. */
export const DEFAULT_TOLERANCE: Tolerance = { rtol: 1e-3, atol: 1e-5 };

export type CompareResult =
  | { ok: true; maxAbsDiff: number }
  | { ok: false; reason: 'dtype' | 'dims' | 'length' | 'data'; message: string; index?: number; actual?: unknown; expected?: unknown; maxAbsDiff?: number };

const FLOAT_TYPES = new Set(['float32', 'float64', 'float16', 'bfloat16']);

/**
 * Compare `actual` against `expected`. Floats: NaN equals NaN, ±Inf must match exactly, otherwise
 * the tolerance applies. Integers, bool and strings must be equal. float16/bfloat16 data are raw bits.
 */
export function compareTensors(actual: ComparableTensor, expected: ComparableTensor, tol: Tolerance = DEFAULT_TOLERANCE): CompareResult {
  const at = dtypeOf(actual);
  const et = dtypeOf(expected);
  if (at !== et) return { ok: false, reason: 'dtype', message: `dtype ${at} != expected ${et}`, actual: at, expected: et };
  const ad = [...actual.dims].map(Number);
  const ed = [...expected.dims].map(Number);
  if (ad.length !== ed.length || ad.some((d, i) => d !== ed[i])) {
    return { ok: false, reason: 'dims', message: `dims [${ad}] != expected [${ed}]`, actual: ad, expected: ed };
  }
  const a = actual.data;
  const e = expected.data;
  if (a.length !== e.length) return { ok: false, reason: 'length', message: `${a.length} elements != expected ${e.length}`, actual: a.length, expected: e.length };
  const n = a.length;
  if (!FLOAT_TYPES.has(et)) {
    for (let i = 0; i < n; i++) {
      const x = normExact(a[i]);
      const y = normExact(e[i]);
      if (x !== y) return { ok: false, reason: 'data', message: `element ${i}: ${String(a[i])} != expected ${String(e[i])}`, index: i, actual: a[i], expected: e[i] };
    }
    return { ok: true, maxAbsDiff: 0 };
  }
  const decode = et === 'float16' ? halfToFloat : et === 'bfloat16' ? bfloatToFloat : (v: number) => v;
  let maxAbsDiff = 0;
  for (let i = 0; i < n; i++) {
    const x = decode(Number(a[i]));
    const y = decode(Number(e[i]));
    if (Number.isNaN(y) || Number.isNaN(x)) {
      if (Number.isNaN(x) && Number.isNaN(y)) continue;
      return { ok: false, reason: 'data', message: `element ${i}: ${x} != expected ${y} (NaN matches only NaN)`, index: i, actual: x, expected: y };
    }
    if (!Number.isFinite(y) || !Number.isFinite(x)) {
      if (x === y) continue;
      return { ok: false, reason: 'data', message: `element ${i}: ${x} != expected ${y} (infinities must match exactly)`, index: i, actual: x, expected: y };
    }
    const diff = Math.abs(x - y);
    if (diff > maxAbsDiff) maxAbsDiff = diff;
    if (diff > tol.atol + tol.rtol * Math.abs(y)) {
      return { ok: false, reason: 'data', message: `element ${i}: ${x} != expected ${y} (|diff| ${diff.toExponential(3)} > atol ${tol.atol} + rtol ${tol.rtol}·|expected|)`, index: i, actual: x, expected: y, maxAbsDiff: diff };
    }
  }
  return { ok: true, maxAbsDiff };
}

/** Throws an `AssertionError`-named Error describing the first difference; for tests and `--compare`. */
export function assertTensorEqual(actual: ComparableTensor, expected: ComparableTensor, tol: Tolerance = DEFAULT_TOLERANCE, label = 'tensor'): void {
  const r = compareTensors(actual, expected, tol);
  if (!r.ok) {
    const err = new Error(`${label}: ${r.message}`);
    err.name = 'AssertionError';
    throw err;
  }
}

function dtypeOf(t: ComparableTensor): string {
  return t.dtype ?? t.type ?? 'unknown';
}

function normExact(v: unknown): string | number | bigint {
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  return String(v);
}

/** IEEE 754 half-precision bits → number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 0x1f) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** bfloat16 bits → number. */
export function bfloatToFloat(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}
