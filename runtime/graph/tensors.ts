// Element types, byte sizes and dimension arithmetic that keeps unknown dims symbolic (strings).
import type { DType, Dim } from '../../protocols/graph.js';

/** ONNX TensorProto.DataType → DType. */
export const ONNX_DTYPES: Readonly<Record<number, DType>> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  float32: 4, float16: 2, float64: 8, bfloat16: 2, int8: 1, int16: 2, int32: 4, int64: 8,
  uint8: 1, uint16: 2, uint32: 4, uint64: 8, bool: 1, string: 8,
};

/** A protobuf int64 that may arrive as a number or a Long. */
export function num(v: number | { toString(): string } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : Number(v.toString());
}

export function isKnown(shape: readonly Dim[] | undefined): shape is number[] {
  return shape !== undefined && shape.every((d) => typeof d === 'number');
}

/** Element count, symbolic dims taken as 1. */
export function numel(shape: readonly Dim[] | undefined): number {
  if (!shape) return 0;
  let n = 1;
  for (const d of shape) n *= typeof d === 'number' ? d : 1;
  return n;
}

export function tensorBytes(dtype: DType, shape: readonly Dim[] | undefined): number {
  return numel(shape) * DTYPE_BYTES[dtype];
}

/**
 * a+b, a*b, a/b on dims: numbers when both are known, else a readable expression kept short by folding
 * constant offsets (`H+2-1` → `H+1`) and nested ceil divisions (`ceil(ceil(H/2)/2)` → `ceil(H/4)`).
 */
export const dim = {
  add(a: Dim, b: Dim): Dim {
    if (typeof a === 'number' && typeof b === 'number') return a + b;
    if (typeof a === 'number') [a, b] = [b, a];
    if (b === 0) return a;
    if (typeof b === 'number') {
      const [base, k] = splitOffset(a as string);
      const off = k + b;
      return off === 0 ? base : `${base}${off > 0 ? '+' : '-'}${Math.abs(off)}`;
    }
    return `${a}+${b}`;
  },
  mul(a: Dim, b: Dim): Dim {
    if (typeof a === 'number' && typeof b === 'number') return a * b;
    if (a === 1) return b;
    if (b === 1) return a;
    return `${wrap(a)}*${wrap(b)}`;
  },
  div(a: Dim, b: Dim, ceil = false): Dim {
    if (typeof a === 'number' && typeof b === 'number') return ceil ? Math.ceil(a / b) : Math.floor(a / b);
    if (b === 1) return a;
    const nested = typeof a === 'string' && typeof b === 'number' ? /^ceil\(([^()]+)\/(\d+)\)$/.exec(a) : null;
    if (ceil && nested) return `ceil(${nested[1]}/${Number(nested[2]) * (b as number)})`;
    return `${ceil ? 'ceil' : 'floor'}(${wrap(a)}/${b})`;
  },
  /** floor((d + off) / s) + 1 — the output length of a window op — simplified for same-style padding. */
  window(d: Dim, off: number, s: number, ceilMode = false): Dim {
    if (typeof d === 'number') return (ceilMode ? Math.ceil((d + off) / s) : Math.floor((d + off) / s)) + 1;
    if (s === 1) return dim.add(d, off + 1);
    if (off === -1 && !ceilMode) return dim.div(d, s, true); // floor((d-1)/s)+1 = ceil(d/s)
    return dim.add(dim.div(dim.add(d, off), s, ceilMode), 1);
  },
};

/** `X+3` → [X, 3]; `X` → [X, 0]; only a constant term at paren depth 0 counts. */
function splitOffset(e: string): [string, number] {
  const m = /^(.*?)([+-])(\d+)$/.exec(e);
  if (!m) return [e, 0];
  let depth = 0;
  for (const ch of m[1]) depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
  if (depth !== 0 || m[1] === '') return [e, 0];
  return [m[1], (m[2] === '-' ? -1 : 1) * Number(m[3])];
}

function wrap(d: Dim): string {
  if (typeof d !== 'string') return String(d);
  let depth = 0;
  for (const ch of d) {
    depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
    if (depth === 0 && (ch === '+' || ch === '-')) return `(${d})`;
  }
  return d;
}

/** Numpy-style broadcast of several shapes (symbolic dims win over 1, lose to numbers > 1). */
export function broadcast(shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i];
      if (x === undefined || x === 1) continue;
      if (d === 1 || (typeof d === 'string' && typeof x === 'number')) d = x;
    }
    out.push(d);
  }
  return out;
}
