import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import {
  CODEC_VERSION, CHUNK_OVERHEAD, ELEMENT_BYTES, FrameAssembler, byteLength, crc32, crc32Js, decodeFrame, encodeFrame,
  encodeFrameParts, readChunk, splitFrame, tensor, type DType, type Tensor, type TensorData,
} from '../protocols/tensor-codec.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

const NUMERIC: Exclude<DType, 'string'>[] = [
  'float32', 'float16', 'float64', 'bfloat16', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool',
];
const CTOR = {
  float32: Float32Array, float16: Uint16Array, float64: Float64Array, bfloat16: Uint16Array, int8: Int8Array, int16: Int16Array,
  int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array, bool: Uint8Array,
} as const;

/** Bit patterns worth hitting on purpose, per element size: NaN payloads, ±0, ±Inf, subnormals, extremes. */
const SPECIAL: Record<number, bigint[]> = {
  1: [0x00n, 0x01n, 0x7fn, 0x80n, 0xffn],
  2: [0x0000n, 0x8000n, 0x0001n, 0x7c00n, 0xfc00n, 0x7e00n, 0x7c01n, 0xfe55n, 0x7f80n, 0x7fc1n, 0xffffn],
  4: [0x00000000n, 0x80000000n, 0x00000001n, 0x807fffffn, 0x7f800000n, 0xff800000n, 0x7fc00000n, 0x7f800001n, 0xffc12345n, 0x7f7fffffn, 0xffffffffn],
  8: [0n, 0x8000000000000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn, 1n, 0x7ff0000000000000n, 0xfff0000000000000n,
    0x7ff8000000000000n, 0x7ff0000000000001n, 0xfff8dead0000beefn, 0x000fffffffffffffn],
};

function bitsArb(size: number): fc.Arbitrary<bigint> {
  return fc.oneof(fc.constantFrom(...SPECIAL[size]), fc.bigInt({ min: 0n, max: (1n << BigInt(8 * size)) - 1n }));
}

const shapeArb = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 });

/** A tensor of `dtype` whose bytes are built from raw bit patterns, placed at a random offset in its buffer. */
function tensorArb(dtype: DType): fc.Arbitrary<Tensor> {
  return shapeArb.chain((shape) => {
    const count = shape.reduce((a, b) => a * b, 1);
    if (dtype === 'string') {
      const str = fc.oneof(fc.constant(''), fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 6 }));
      return fc.array(str, { minLength: count, maxLength: count }).map((data) => tensor('string', shape, data));
    }
    const size = ELEMENT_BYTES[dtype];
    const el = dtype === 'bool' ? fc.constantFrom(0n, 1n) : bitsArb(size);
    return fc.tuple(fc.array(el, { minLength: count, maxLength: count }), fc.integer({ min: 0, max: 3 })).map(([bits, lead]) => {
      const buf = new ArrayBuffer((count + lead + 1) * size);
      const bytes = new Uint8Array(buf, lead * size, count * size);
      bits.forEach((b, i) => { for (let k = 0; k < size; k++) bytes[i * size + k] = Number((b >> BigInt(8 * k)) & 0xffn); });
      return tensor(dtype, shape, new CTOR[dtype](buf, lead * size, count) as TensorData);
    });
  });
}

const anyTensorArb = fc.constantFrom<DType>(...NUMERIC, 'string').chain(tensorArb);
const nameArb = fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'x'));
const metaArb = fc.dictionary(fc.string({ maxLength: 9 }).filter((k) => k !== '__proto__'), fc.oneof(
  fc.string({ unit: 'binary', maxLength: 8 }), fc.integer(), fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)), fc.boolean(), fc.constant(null),
  fc.bigInt({ min: -(2n ** 63n), max: -(2n ** 53n) }), fc.array(fc.integer(), { maxLength: 3 }),
), { maxKeys: 4 });
const framesArb = fc.record({
  tensors: fc.uniqueArray(fc.tuple(nameArb, anyTensorArb), { selector: ([n]) => n, maxLength: 5 }),
  meta: metaArb,
  checksum: fc.boolean(),
});

const byteLengthOf = (t: Tensor): number => (t.data as Exclude<TensorData, string[]>).byteLength;

function bytesOf(t: Tensor): Uint8Array {
  const d = t.data as Exclude<TensorData, string[]>;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

function recordOf(pairs: [string, Tensor][]): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [n, t] of pairs) Object.defineProperty(out, n, { value: t, enumerable: true, writable: true, configurable: true });
  return out;
}

function assertSameTensor(got: Tensor, want: Tensor, name: string): void {
  assert.equal(got.dtype, want.dtype, `${name} dtype`);
  assert.deepEqual(got.shape, want.shape, `${name} shape`);
  if (want.dtype === 'string') assert.deepEqual(got.data, want.data, `${name} strings`);
  else {
    assert.equal((got.data as object).constructor, (want.data as object).constructor, `${name} array type`);
    assert.ok(Buffer.from(bytesOf(got)).equals(bytesOf(want)), `${name} bytes differ`);
  }
}

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) {
    assert.ok(e instanceof CleaveError, `expected a CleaveError, got ${String(e)}`);
    return e.code;
  }
  return undefined;
}

const CODEC_CODES = new Set<string>([ErrorCode.CODEC_TRUNCATED, ErrorCode.CODEC_CORRUPT, ErrorCode.CODEC_BAD_DTYPE, ErrorCode.CODEC_SHAPE_MISMATCH, ErrorCode.CODEC_VERSION]);

function sampleFrame(checksum = true): Uint8Array {
  return encodeFrame({
    tensors: {
      x: tensor('float32', [2, 2], new Float32Array([1, -0, NaN, Infinity])),
      i: tensor('int64', [2], new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n])),
      m: tensor('bool', [3], new Uint8Array([1, 0, 1])),
      s: tensor('string', [2], ['', 'ü✓']),
    },
    meta: { requestId: 'r-1', stage: 2 },
  }, { checksum });
}

/** Builds a frame the way a non-JS peer would, following the layout in the module header. */
function craft(header: unknown, payload: Uint8Array, opts: { version?: number; flags?: number } = {}): Uint8Array {
  const h = new Packr({ useRecords: false }).pack(header);
  const padStart = 23 + h.length;
  const pad = (8 - ((padStart + 7) % 8)) % 8;
  const payloadStart = padStart + 2 + pad + 5;
  const out = new Uint8Array(payloadStart + payload.length);
  const v = new DataView(out.buffer);
  out.set([0x99, 0xa4, 0x43, 0x4c, 0x56, 0x54, opts.version ?? 1, opts.flags ?? 1, 0xce], 0);
  v.setUint32(9, h.length);
  out[13] = 0xce; out[18] = 0xce;
  out.set(h, 23);
  out[padStart] = 0xc4; out[padStart + 1] = pad;
  out[payloadStart - 5] = 0xc6; v.setUint32(payloadStart - 4, payload.length);
  out.set(payload, payloadStart);
  v.setUint32(14, crc32(payload));
  v.setUint32(19, crc32(out.subarray(23, payloadStart), crc32(out.subarray(0, 18))));
  return out;
}

test('tensor-codec - tensor() accepts each dtype with its array type and rejects every other one', () => {
  const arrays = [...new Set(Object.values(CTOR))];
  for (const dtype of NUMERIC) {
    assert.equal(tensor(dtype, [2], new CTOR[dtype](2) as TensorData).shape.length, 1);
    for (const A of arrays) {
      if (A === CTOR[dtype]) continue;
      assert.equal(codeOf(() => tensor(dtype, [2], new A(2) as TensorData)), ErrorCode.CODEC_BAD_DTYPE, `${dtype} with ${A.name}`);
    }
    assert.equal(codeOf(() => tensor(dtype, [2], ['a', 'b'])), ErrorCode.CODEC_BAD_DTYPE);
  }
  assert.equal(codeOf(() => tensor('string', [1], new Float32Array(1))), ErrorCode.CODEC_BAD_DTYPE);
  assert.equal(codeOf(() => tensor('float8' as DType, [1], new Float32Array(1))), ErrorCode.CODEC_BAD_DTYPE);
  assert.ok(tensor('uint8', [3], Buffer.from([1, 2, 3])));
});

test('tensor-codec - tensor() checks element count, dims, bool values and well-formed strings', () => {
  assert.equal(codeOf(() => tensor('float32', [2, 3], new Float32Array(5))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => tensor('float32', [], new Float32Array(0))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => tensor('float32', [-1], new Float32Array(1))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => tensor('float32', [1.5], new Float32Array(1))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => tensor('float32', ['N' as unknown as number], new Float32Array(1))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => tensor('string', [2], ['a'])), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => tensor('bool', [2], new Uint8Array([1, 2]))), ErrorCode.CODEC_BAD_DTYPE);
  assert.equal(codeOf(() => tensor('string', [1], ['\ud800'])), ErrorCode.CODEC_BAD_DTYPE);
  assert.equal(tensor('float32', [3, 0, 2], new Float32Array(0)).data.length, 0);
  assert.equal(tensor('int8', [], new Int8Array([7])).shape.length, 0);
  assert.equal(byteLength(tensor('string', [2], ['ü', ''])), 2);
  assert.equal(byteLength(tensor('float64', [2], new Float64Array(2))), 16);
  const err = (() => { try { tensor('float32', [2], new Float64Array(2)); } catch (e) { return e as CleaveError; } })();
  assert.match(err!.message, /Float32Array/);
});

test('tensor-codec - random frames of every dtype round-trip bit-exact, aligned ones as views', () => {
  fc.assert(fc.property(framesArb, ({ tensors, meta, checksum }) => {
    const frame = encodeFrame({ tensors: recordOf(tensors), meta }, { checksum });
    assert.equal(frame.byteOffset % 8, 0);
    const got = decodeFrame(frame);
    assert.deepEqual(Object.keys(got.tensors), tensors.map(([n]) => n));
    for (const [name, want] of tensors) {
      const t = got.tensors[name];
      assertSameTensor(t, want, name);
      if (want.dtype !== 'string') assert.equal((t.data as Uint8Array).buffer, frame.buffer, `${name} should be a view`);
    }
    assert.deepEqual(got.meta, Object.fromEntries(Object.entries(meta)));
  }), { numRuns: 400 });
});

test('tensor-codec - encodeFrameParts concatenates to exactly the bytes of encodeFrame, without copying tensor data', () => {
  fc.assert(fc.property(framesArb, ({ tensors, meta, checksum }) => {
    const frame = { tensors: recordOf(tensors), meta };
    const whole = encodeFrame(frame, { checksum });
    const { parts, byteLength } = encodeFrameParts(frame, { checksum });
    assert.equal(byteLength, whole.byteLength);
    assert.deepEqual(Buffer.concat(parts), Buffer.from(whole.buffer, whole.byteOffset, whole.byteLength));
    for (const [name, t] of tensors) {
      if (t.dtype === 'string' || byteLengthOf(t) === 0) continue;
      assert.ok(parts.some((p) => p.buffer === (t.data as Uint8Array).buffer), `${name}'s bytes are referenced, not copied`);
    }
  }), { numRuns: 300 });
});

test('tensor-codec - each dtype on its own round-trips bit-exact (random shapes, special values)', () => {
  for (const dtype of [...NUMERIC, 'string'] as DType[]) {
    fc.assert(fc.property(tensorArb(dtype), fc.boolean(), (want, checksum) => {
      const got = decodeFrame(encodeFrame({ tensors: { t: want } }, { checksum })).tensors.t;
      assertSameTensor(got, want, dtype);
    }), { numRuns: 60 });
  }
});

test('tensor-codec - every dtype at a misaligned receive offset is copied, still bit-exact', () => {
  fc.assert(fc.property(framesArb, fc.integer({ min: 1, max: 7 }), ({ tensors, meta, checksum }, shift) => {
    const frame = encodeFrame({ tensors: recordOf(tensors), meta }, { checksum });
    const host = new Uint8Array(frame.length + 8);
    host.set(frame, shift);
    const moved = host.subarray(shift, shift + frame.length);
    const got = decodeFrame(moved);
    for (const [name, want] of tensors) {
      const t = got.tensors[name];
      assertSameTensor(t, want, name);
      if (want.dtype !== 'string') {
        const aligned = shift % ELEMENT_BYTES[want.dtype] === 0;
        assert.equal((t.data as Uint8Array).buffer === host.buffer, aligned, `${name} view iff aligned (shift ${shift})`);
      }
    }
  }), { numRuns: 150 });
});

test('tensor-codec - copy: true detaches the tensors from the received bytes', () => {
  const frame = sampleFrame();
  const got = decodeFrame(frame, { copy: true });
  assert.notEqual((got.tensors.x.data as Float32Array).buffer, frame.buffer);
  frame.fill(0);
  assert.equal((got.tensors.x.data as Float32Array)[3], Infinity);
});

test('tensor-codec - a 4 MiB float32 tensor decodes as a view over the frame', () => {
  const data = new Float32Array(1 << 20).map((_, i) => i);
  const frame = encodeFrame({ tensors: { w: tensor('float32', [1024, 1024], data) } });
  const w = decodeFrame(frame).tensors.w.data as Float32Array;
  assert.equal(w.buffer, frame.buffer);
  assert.equal(w[123456], 123456);
  assert.equal(frame.length - data.byteLength < 128, true);
});

test('tensor-codec - an empty frame and empty meta round-trip', () => {
  const got = decodeFrame(encodeFrame({ tensors: {} }));
  assert.deepEqual(got, { tensors: {}, meta: {} });
});

test('tensor-codec - every truncation point gives CODEC_TRUNCATED or CODEC_CORRUPT', () => {
  for (const checksum of [true, false]) {
    const frame = sampleFrame(checksum);
    for (let n = 0; n < frame.length; n++) {
      const code = codeOf(() => decodeFrame(frame.slice(0, n)));
      assert.ok(code === ErrorCode.CODEC_TRUNCATED || code === ErrorCode.CODEC_CORRUPT, `cut at ${n}: ${code}`);
    }
    assert.equal(codeOf(() => decodeFrame(frame.slice(0, frame.length - 1))), ErrorCode.CODEC_TRUNCATED);
    const longer = new Uint8Array(frame.length + 1);
    longer.set(frame);
    assert.equal(codeOf(() => decodeFrame(longer)), ErrorCode.CODEC_CORRUPT);
  }
});

test('tensor-codec - every single-byte corruption of a checksummed frame gives a typed error', () => {
  const frame = sampleFrame(true);
  for (let at = 0; at < frame.length; at++) {
    for (const mask of [0x01, 0x80, 0xff, 0x5a]) {
      const bad = frame.slice();
      bad[at] ^= mask;
      const code = codeOf(() => decodeFrame(bad));
      assert.ok(code && CODEC_CODES.has(code), `byte ${at} ^ ${mask}: ${code}`);
    }
  }
});

test('tensor-codec - random multi-byte corruption of a checksummed frame gives a typed error', () => {
  const frame = sampleFrame(true);
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(frame.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 6 }), (flips) => {
    const bad = frame.slice();
    for (const [at, mask] of flips) bad[at] ^= mask;
    if (Buffer.from(bad).equals(frame)) return;
    const code = codeOf(() => decodeFrame(bad));
    assert.ok(code && CODEC_CODES.has(code), `${JSON.stringify(flips)}: ${code}`);
  }), { numRuns: 2000 });
});

test('tensor-codec - without the payload checksum the header is still guarded, payload flips are not (documented)', () => {
  const frame = sampleFrame(false);
  const payloadStart = frame.length - 35; // x 16 bytes at 0, i 16 at 16, m 3 at 32
  for (let at = 0; at < payloadStart; at++) {
    const bad = frame.slice();
    bad[at] ^= 0x10;
    const code = codeOf(() => decodeFrame(bad));
    assert.ok(code && CODEC_CODES.has(code), `header byte ${at}: ${code}`);
  }
  const bad = frame.slice();
  bad[payloadStart] ^= 0x10; // first byte of x: decodes, to a different value
  assert.notEqual((decodeFrame(bad).tensors.x.data as Float32Array)[0], 1);
  const boolFlip = frame.slice();
  boolFlip[payloadStart + 32] = 7; // a bool byte outside 0/1 is still refused
  assert.equal(codeOf(() => decodeFrame(boolFlip)), ErrorCode.CODEC_CORRUPT);
});

test('tensor-codec - a peer-written frame decodes; bad dtype, shape, ranges and versions are typed errors', () => {
  const payload = new Uint8Array(16);
  new Float32Array(payload.buffer).set([1, 2, 3, 4]);
  const ok = craft({ t: [{ n: 'a', d: 'float32', s: [2, 2], o: 0, l: 16 }], m: { k: 1 } }, payload);
  assert.deepEqual([...(decodeFrame(ok).tensors.a.data as Float32Array)], [1, 2, 3, 4]);
  const entry = (e: Record<string, unknown>) => craft({ t: [{ n: 'a', d: 'float32', s: [2, 2], o: 0, l: 16, ...e }], m: {} }, payload);
  assert.equal(codeOf(() => decodeFrame(entry({ d: 'float8' }))), ErrorCode.CODEC_BAD_DTYPE);
  assert.equal(codeOf(() => decodeFrame(entry({ s: [2, 3] }))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => decodeFrame(entry({ d: 'float64' }))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => decodeFrame(entry({ s: [-2, -2] }))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => decodeFrame(entry({ s: [2 ** 40, 2 ** 40] }))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => decodeFrame(entry({ o: 8, l: 16 }))), ErrorCode.CODEC_CORRUPT);
  assert.equal(codeOf(() => decodeFrame(entry({ o: 4 }))), ErrorCode.CODEC_CORRUPT);
  assert.equal(codeOf(() => decodeFrame(entry({ o: 'x' }))), ErrorCode.CODEC_CORRUPT);
  assert.equal(codeOf(() => decodeFrame(craft({ t: [{ n: 's', d: 'string', s: [2], v: ['a'] }] }, new Uint8Array(0)))), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => decodeFrame(craft({ t: [{ n: 's', d: 'string', s: [1], v: [3] }] }, new Uint8Array(0)))), ErrorCode.CODEC_CORRUPT);
  const twice = craft({ t: [{ n: 'a', d: 'uint8', s: [1], o: 0, l: 1 }, { n: 'a', d: 'uint8', s: [1], o: 8, l: 1 }] }, new Uint8Array(9));
  assert.equal(codeOf(() => decodeFrame(twice)), ErrorCode.CODEC_CORRUPT);
  const overlap = craft({ t: [{ n: 'a', d: 'uint8', s: [8], o: 0, l: 8 }, { n: 'b', d: 'uint8', s: [1], o: 0, l: 1 }] }, new Uint8Array(8));
  assert.equal(codeOf(() => decodeFrame(overlap)), ErrorCode.CODEC_CORRUPT);
  assert.equal(codeOf(() => decodeFrame(craft({ x: 1 }, new Uint8Array(0)))), ErrorCode.CODEC_CORRUPT);
  assert.equal(codeOf(() => decodeFrame(craft({ t: [] }, new Uint8Array(0), { version: 2 }))), ErrorCode.CODEC_VERSION);
  assert.equal(codeOf(() => decodeFrame(craft({ t: [] }, new Uint8Array(0), { flags: 0x03 }))), ErrorCode.CODEC_VERSION);
  assert.equal(codeOf(() => decodeFrame(new TextEncoder().encode('{"json": "not a frame"}'))), ErrorCode.CODEC_CORRUPT);
  assert.equal(CODEC_VERSION, 1);
});

test('tensor-codec - a generic msgpack reader sees the documented array', () => {
  const frame = sampleFrame();
  const arr = new Unpackr({ useRecords: false }).unpack(frame) as unknown[];
  assert.equal(arr.length, 9);
  assert.deepEqual(arr.slice(0, 3), ['CLVT', CODEC_VERSION, 1]);
  const header = arr[6] as { t: { n: string; d: string; s: number[]; o?: number; l?: number }[]; m: unknown };
  assert.deepEqual(header.t.map((e) => [e.n, e.d, e.s, e.o, e.l]), [['x', 'float32', [2, 2], 0, 16], ['i', 'int64', [2], 16, 16], ['m', 'bool', [3], 32, 3], ['s', 'string', [2], undefined, undefined]]);
  assert.deepEqual(header.m, { requestId: 'r-1', stage: 2 });
  assert.equal((arr[8] as Uint8Array).length, 35);
});

test('tensor-codec - encodeFrame refuses wrong tensors and non-JSON meta', () => {
  const bad = { dtype: 'float32', shape: [2], data: new Float32Array(3) } as Tensor;
  assert.equal(codeOf(() => encodeFrame({ tensors: { bad } })), ErrorCode.CODEC_SHAPE_MISMATCH);
  assert.equal(codeOf(() => encodeFrame({ tensors: { bad: { ...bad, data: new Float64Array(2) } } })), ErrorCode.CODEC_BAD_DTYPE);
  assert.equal(codeOf(() => encodeFrame({ tensors: { bad: { ...bad, dtype: 'complex64' as DType } } })), ErrorCode.CODEC_BAD_DTYPE);
  for (const v of [new Float32Array(2), new ArrayBuffer(4), new Map(), new Error('e'), () => 1, Symbol('s'), 2n ** 70n]) {
    assert.equal(codeOf(() => encodeFrame({ tensors: {}, meta: { v } })), ErrorCode.BAD_ARGUMENT, String(v));
  }
  assert.equal(codeOf(() => encodeFrame({ tensors: {}, meta: JSON.parse('{"__proto__": 1}') })), ErrorCode.BAD_ARGUMENT);
  assert.equal(codeOf(() => encodeFrame({ tensors: {}, meta: { s: 'a\udc00' } })), ErrorCode.BAD_ARGUMENT);
  assert.equal(codeOf(() => encodeFrame({ tensors: {}, meta: { '\ud800': 1 } })), ErrorCode.BAD_ARGUMENT);
  const meta = decodeFrame(encodeFrame({ tensors: {}, meta: { a: undefined, b: [undefined, 1], c: { d: 2n ** 63n }, t: new Date(0) } })).meta;
  assert.deepEqual(meta, { b: [null, 1], c: { d: 2n ** 63n }, t: '1970-01-01T00:00:00.000Z' });
});

test('tensor-codec - maxBytes refuses an oversize frame, naming size and limit', () => {
  const frame = { tensors: { x: tensor('float32', [256], new Float32Array(256)) } };
  const size = encodeFrame(frame).length;
  assert.equal(encodeFrame(frame, { maxBytes: size }).length, size);
  let allocated = false;
  const err = (() => { try { encodeFrame(frame, { maxBytes: size - 1, allocate: (n) => { allocated = true; return new Uint8Array(n); } }); } catch (e) { return e as CleaveError; } })();
  assert.equal(err?.code, ErrorCode.CODEC_TOO_LARGE);
  assert.match(err!.message, new RegExp(`${size} bytes.*${size - 1} bytes.*splitFrame`));
  assert.equal(allocated, false);
});

test('tensor-codec - allocate lets the caller choose (and reuse) the output memory', () => {
  const pool = new Uint8Array(4096);
  const frame = encodeFrame({ tensors: { x: tensor('int32', [3], new Int32Array([1, 2, 3])) } }, { allocate: () => pool.fill(0xee) });
  assert.equal(frame.buffer, pool.buffer);
  assert.deepEqual([...(decodeFrame(frame).tensors.x.data as Int32Array)], [1, 2, 3]);
  assert.equal(codeOf(() => encodeFrame({ tensors: {} }, { allocate: () => new Uint8Array(3) })), ErrorCode.BAD_ARGUMENT);
  // Declining (undefined) leaves the frame to the default allocation.
  const own = encodeFrame({ tensors: { x: tensor('int32', [3], new Int32Array([4, 5, 6])) } }, { allocate: () => undefined });
  assert.notEqual(own.buffer, pool.buffer);
  assert.deepEqual([...(decodeFrame(own).tensors.x.data as Int32Array)], [4, 5, 6]);
});

test('tensor-codec - crc32 matches the zlib check value and the portable implementation', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32Js(new TextEncoder().encode('123456789')), 0xcbf43926);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), (b, cut) => {
    assert.equal(crc32Js(b), crc32(b));
    const k = Math.min(cut, b.length);
    assert.equal(crc32Js(b.subarray(k), crc32Js(b.subarray(0, k))), crc32(b));
  }), { numRuns: 300 });
});

test('tensor-codec - chunks reassemble in shuffled order with duplicates, interleaved with another transfer', () => {
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ minLength: 1, maxLength: 900 }), fc.integer({ min: CHUNK_OVERHEAD + 1, max: 500 }), fc.infiniteStream(fc.nat()),
    (a, b, chunkBytes, rnd) => {
      const ca = splitFrame(a, chunkBytes);
      const cb = splitFrame(b, chunkBytes);
      for (const c of [...ca, ...cb]) assert.ok(c.length <= chunkBytes);
      const it = rnd[Symbol.iterator]();
      const next = () => it.next().value as number;
      const feed = [...ca, ...cb, ...ca.filter(() => next() % 3 === 0), ...cb.filter(() => next() % 3 === 0)];
      for (let i = feed.length - 1; i > 0; i--) { const j = next() % (i + 1); [feed[i], feed[j]] = [feed[j], feed[i]]; }
      const asm = new FrameAssembler();
      const done: Uint8Array[] = [];
      for (const c of feed) { const f = asm.add(c); if (f) done.push(f); }
      assert.equal(done.length, 2);
      const sorted = done.map((d) => Buffer.from(d)).sort((x, y) => x.length === y.length ? Buffer.compare(x, y) : 0);
      assert.ok(sorted.some((d) => d.equals(a)) && sorted.some((d) => d.equals(b)));
      assert.deepEqual(asm.pending(), []);
      for (const c of ca) assert.equal(asm.add(c), undefined, 'late duplicates after completion are ignored');
    }), { numRuns: 200 });
});

test('tensor-codec - a split tensor frame reassembles and decodes as views', () => {
  const data = new Float64Array(5000).map((_, i) => i / 3);
  const frame = encodeFrame({ tensors: { g: tensor('float64', [50, 100], data) }, meta: { epoch: 4 } });
  const chunks = splitFrame(frame, 4096, { transferId: '00112233445566778899aabbccddeeff' });
  assert.equal(chunks.length, Math.ceil(frame.length / (4096 - CHUNK_OVERHEAD)));
  assert.equal(readChunk(chunks[1]).transferId, '00112233445566778899aabbccddeeff');
  const asm = new FrameAssembler();
  let whole: Uint8Array | undefined;
  for (const c of chunks.reverse()) whole = asm.add(c) ?? whole;
  const got = decodeFrame(whole!);
  assert.equal((got.tensors.g.data as Float64Array).buffer, whole!.buffer);
  assert.equal((got.tensors.g.data as Float64Array)[4999], 4999 / 3);
  assert.deepEqual(got.meta, { epoch: 4 });
});

test('tensor-codec - a missing chunk is reported by missing() and abandon() as CODEC_TRUNCATED', () => {
  const chunks = splitFrame(new Uint8Array(1000).fill(3), 200);
  const asm = new FrameAssembler();
  const id = readChunk(chunks[0]).transferId;
  chunks.forEach((c, i) => { if (i !== 2 && i !== 4) assert.equal(asm.add(c), undefined); });
  assert.deepEqual(asm.missing(id), [2, 4]);
  assert.deepEqual(asm.pending(), [{ transferId: id, received: chunks.length - 2, count: chunks.length, totalBytes: 1000 }]);
  const err = asm.abandon(id);
  assert.equal(err?.code, ErrorCode.CODEC_TRUNCATED);
  assert.match(err!.message, /missing 2 of \d+ chunks \(2, 4\)/);
  assert.deepEqual(asm.pending(), []);
  assert.equal(asm.abandon(id), undefined);
});

test('tensor-codec - corrupt, truncated and inconsistent chunks are typed errors', () => {
  const frame = new Uint8Array(700).map((_, i) => i);
  const chunks = splitFrame(frame, 300, { transferId: 'ab'.repeat(16) });
  for (let at = 0; at < chunks[0].length; at += 7) {
    const bad = chunks[0].slice();
    bad[at] ^= 0x21;
    const code = codeOf(() => readChunk(bad));
    assert.ok(code && CODEC_CODES.has(code), `byte ${at}: ${code}`);
  }
  for (let n = 0; n < chunks[1].length; n++) {
    const code = codeOf(() => readChunk(chunks[1].subarray(0, n)));
    assert.ok(code === ErrorCode.CODEC_TRUNCATED || code === ErrorCode.CODEC_CORRUPT, `cut at ${n}: ${code}`);
  }
  // Same transfer id, different frame: refused at the chunk or at the whole-frame checksum.
  const other = splitFrame(new Uint8Array(700).fill(9), 300, { transferId: 'ab'.repeat(16) });
  const asm = new FrameAssembler();
  asm.add(chunks[0]);
  assert.equal(codeOf(() => asm.add(other[1])), ErrorCode.CODEC_CORRUPT);
  assert.equal(codeOf(() => asm.add(other[0])), ErrorCode.CODEC_CORRUPT, 'same index, different content');
  const sameShape = splitFrame(new Uint8Array(700).fill(9), 300, { transferId: 'cd'.repeat(16) });
  const mixed = splitFrame(frame, 300, { transferId: 'cd'.repeat(16) });
  const asm2 = new FrameAssembler();
  asm2.add(mixed[0]);
  assert.equal(codeOf(() => asm2.add(sameShape[1])), ErrorCode.CODEC_CORRUPT);
});

test('tensor-codec - the assembler enforces its size limits', () => {
  const big = splitFrame(new Uint8Array(5000), 1000);
  assert.equal(codeOf(() => new FrameAssembler({ maxBytes: 4999 }).add(big[3])), ErrorCode.CODEC_TOO_LARGE);
  const asm = new FrameAssembler({ maxBytes: 5000, maxPendingBytes: 9000 });
  asm.add(big[0]);
  const second = splitFrame(new Uint8Array(5000), 1000);
  assert.equal(codeOf(() => asm.add(second[0])), ErrorCode.CODEC_TOO_LARGE);
  asm.abandon(readChunk(big[0]).transferId);
  assert.equal(asm.add(second[0]), undefined);
  assert.equal(codeOf(() => splitFrame(new Uint8Array(10), CHUNK_OVERHEAD)), ErrorCode.BAD_ARGUMENT);
  assert.equal(codeOf(() => splitFrame(new Uint8Array(10), 100, { transferId: 'xyz' })), ErrorCode.BAD_ARGUMENT);
});

test('tensor-codec - an empty frame splits into one chunk and reassembles', () => {
  const [only, ...rest] = splitFrame(new Uint8Array(0), 100);
  assert.equal(rest.length, 0);
  assert.equal(new FrameAssembler().add(only)?.length, 0);
});
