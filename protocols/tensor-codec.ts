// The tensor wire format: named tensors plus a small metadata map in one msgpack frame, and the
// chunk frames that carry a frame larger than one NATS message. Pure: no I/O, no runtime imports.
//
// ## Tensor frame (CODEC_VERSION 1). One msgpack value: a 9-element array. Integers big-endian.
//
//   off      bytes                     msgpack          meaning
//   0        99                        fixarray(9)
//   1        a4 'C' 'L' 'V' 'T'        fixstr           magic
//   6        01                        positive fixint  version (bytes 0..6 keep this shape in every version)
//   7        ff                        positive fixint  flags; bit 0 = payload checksum present
//   8        ce HHHHHHHH               uint32           H = byte length of the header map at 23
//   13       ce PPPPPPPP               uint32           CRC-32 of the payload data (0 when flag bit 0 clear)
//   18       ce CCCCCCCC               uint32           CRC-32 of bytes [0,18) ++ [23, payloadStart): always on
//   23       header (H bytes)          map              { t: [entry...], m: meta }
//   23+H     c4 pp 00*pp               bin8             0..7 zero bytes so the payload data starts 8-aligned
//   ...      c6 LLLLLLLL data          bin32            payload; payloadStart = first data byte, % 8 == 0
//
//   entry = { n: name, d: dtype, s: shape, o: offset, l: byteLength }   numeric dtypes; blob at
//           payloadStart + o, o % 8 == 0, blobs in entry order, non-overlapping, gaps zero
//         | { n: name, d: 'string', s: shape, v: [str...] }             strings live in the header
//   Element bytes are little-endian (bool: one byte, 0 or 1; float16/bfloat16: raw 16-bit patterns).
//   The frame ends exactly at the payload's end. CRC-32 is the zlib/IEEE polynomial.
//
// Why this layout (bench/codec.ts, 2-core VM): msgpackr's own bin handling copies through its growing
// scratch buffer and leaves payloads at arbitrary offsets, so the receiver copies again (its unpack of a
// moreTypes Float32Array always copies). Here the header is msgpack and each payload is written once,
// 8-aligned, into one output buffer: into reused memory that runs at memcpy speed (0.6-1.3x of
// TypedArray.set without the CRC), and decoding is O(header) because float32 tensors come back as views
// whenever the received buffer is 4-aligned. A generic msgpack reader still sees an ordinary array
// (header map + bin), so a non-JS peer needs no custom parser.
//
// Checksums: the header CRC is always on (header corruption could otherwise yield a wrong shape or
// name). The payload CRC is on by default (`checksum: false` per frame turns it off): one read pass on
// each side, which then bounds encode and decode: ~10-14 GB/s with @node-rs/crc32 (3-5.5 with Node's
// zlib.crc32; `cleave bench codec`: encode into reused memory 6.8-9.9 GB/s against 2.5-4.5, decode
// 10.6-13 against 3.4-5.3), ~0.1 ms per side for a 1 MB frame against ~2.2 ms on the wire (NATS
// ~450 MB/s). With it off, payload byte flips are
// not detected (the header still is, and bool bytes outside 0/1 are refused).
//
// ## Chunk frame (for frames larger than NATS max_payload). A 9-element msgpack array, 59-byte header:
//   0  99 | 1 a4 'C' 'L' 'V' 'C' | 6 01 version | 7 c4 10 <16-byte transfer id> | 25 ce index
//   30 ce count | 35 cf total frame length (uint64) | 44 ce CRC-32 of the whole frame
//   49 ce CRC-32 of bytes [0,49) ++ data | 54 c6 LLLLLLLL data
// Every chunk but the last carries the same data length L, at offset index * L.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';
import { Packr, Unpackr } from 'msgpackr';
import type { DType } from './graph.js';
import { CleaveError, ErrorCode } from './errors.js';

export type { DType } from './graph.js';

/** Version written into every frame; a frame with another version is refused with CODEC_VERSION. */
export const CODEC_VERSION = 1;
/** Version of the chunk frame layout. */
export const CHUNK_VERSION = 1;
/** Bytes a chunk frame adds around its slice of the whole frame. */
export const CHUNK_OVERHEAD = 59;

export type TensorData =
  | Float32Array | Float64Array | Uint16Array
  | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint32Array | BigUint64Array
  | string[];

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export interface Frame {
  tensors: Record<string, Tensor>;
  meta?: Record<string, unknown>;
}

export interface DecodedFrame {
  tensors: Record<string, Tensor>;
  meta: Record<string, unknown>;
}

export interface EncodeOptions {
  /** Refuse (CODEC_TOO_LARGE) a frame longer than this many bytes, before allocating it. */
  maxBytes?: number;
  /** Write a CRC-32 of the payload (default true). The header is always checksummed. */
  checksum?: boolean;
  /**
   * Where the frame is written: called once with the exact length, returns a buffer at least that long
   * (every byte of the first `byteLength` is written), or undefined for the default, `Buffer.allocUnsafe`.
   * Lets a caller reuse memory: on these machines fresh pages cost far more than the copy (see bench/codec.ts).
   */
  allocate?: (byteLength: number) => Uint8Array | undefined;
}

export interface DecodeOptions {
  /** Copy every tensor out of `bytes` even when a view would do (use when `bytes` will be reused). */
  copy?: boolean;
}

/** Bytes per element; 0 for `string` (variable length). */
export const ELEMENT_BYTES: Readonly<Record<DType, number>> = Object.freeze({
  float32: 4, float16: 2, float64: 8, bfloat16: 2,
  int8: 1, int16: 2, int32: 4, int64: 8,
  uint8: 1, uint16: 2, uint32: 4, uint64: 8,
  bool: 1, string: 0,
});

type NumericDType = Exclude<DType, 'string'>;
type TypedCtor = { new (length: number): Exclude<TensorData, string[]>; new (buffer: ArrayBufferLike, byteOffset: number, length: number): Exclude<TensorData, string[]> };

const ARRAY_TYPE: Readonly<Record<NumericDType, TypedCtor>> = {
  float32: Float32Array, float16: Uint16Array, float64: Float64Array, bfloat16: Uint16Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  bool: Uint8Array,
} as Record<NumericDType, TypedCtor>;

const DTYPES = new Set<string>(Object.keys(ELEMENT_BYTES));

export function isDType(v: unknown): v is DType {
  return typeof v === 'string' && DTYPES.has(v);
}

/** Number of elements a shape holds (1 for a scalar `[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes of a tensor's data on the wire: elements × element size; UTF-8 bytes for strings. */
export function byteLength(t: Tensor): number {
  if (t.dtype === 'string') {
    let n = 0;
    for (const s of t.data as string[]) n += Buffer.byteLength(s, 'utf8');
    return n;
  }
  return (t.data as Exclude<TensorData, string[]>).byteLength;
}

/** A tensor, after checking that `data`'s array type and element count fit `dtype` and `shape`. */
export function tensor(dtype: DType, shape: readonly number[], data: TensorData): Tensor {
  const t: Tensor = { dtype, shape: [...shape], data };
  checkTensor('tensor', t);
  return t;
}

// ---------------------------------------------------------------------------------------------------
// Validation shared by tensor(), encode and decode.

function fail(code: ErrorCode, message: string, details: Record<string, unknown> = {}): never {
  throw new CleaveError(code, message, { details });
}

function typedArrayTag(v: unknown): string | undefined {
  // toStringTag works across realms (worker/vm) and names Buffer 'Uint8Array'.
  return ArrayBuffer.isView(v) ? (v as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag] : undefined;
}

function checkShape(name: string, shape: unknown): number {
  if (!Array.isArray(shape)) fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape must be an array of non-negative integers, got ${describe(shape)}`, { tensor: name });
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape [${shape.join(',')}] has dim ${describe(d)}; dims must be non-negative integers (resolve symbolic dims before sending)`, { tensor: name });
    }
    n *= d;
  }
  if (n > Number.MAX_SAFE_INTEGER) fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape [${shape.join(',')}] has more elements than can be addressed`, { tensor: name });
  return n;
}

function checkTensor(name: string, t: Tensor): void {
  if (t === null || typeof t !== 'object') fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}' is ${describe(t)}, not a { dtype, shape, data } object`, { tensor: name });
  if (!isDType(t.dtype)) fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}': unknown dtype ${describe(t.dtype)}; use one of ${[...DTYPES].join(', ')}`, { tensor: name });
  const count = checkShape(name, t.shape);
  if (t.dtype === 'string') {
    if (!Array.isArray(t.data)) fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}': dtype string needs a string[] as data, got ${describe(t.data)}`, { tensor: name });
    if (t.data.length !== count) fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape [${t.shape.join(',')}] holds ${count} elements but data has ${t.data.length}`, { tensor: name });
    for (let i = 0; i < t.data.length; i++) {
      const s = t.data[i];
      if (typeof s !== 'string') fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}': element ${i} is ${describe(s)}, not a string`, { tensor: name });
      if (!isWellFormed(s)) {
        fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}': element ${i} has a lone UTF-16 surrogate, which UTF-8 cannot carry; fix the string or send its bytes as a uint8 tensor`, { tensor: name });
      }
    }
    return;
  }
  const want = ARRAY_TYPE[t.dtype].name;
  const got = typedArrayTag(t.data);
  if (got !== want) {
    fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}': dtype ${t.dtype} needs a ${want} as data, got ${got ?? describe(t.data)}; convert it (e.g. ${want}.from(data))${t.dtype === 'float16' || t.dtype === 'bfloat16' ? ' holding the raw 16-bit patterns' : ''}`, { tensor: name });
  }
  const data = t.data as Exclude<TensorData, string[]>;
  if (data.length !== count) fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape [${t.shape.join(',')}] holds ${count} elements but data has ${data.length}`, { tensor: name });
  if (t.dtype === 'bool') checkBool(name, data as Uint8Array, ErrorCode.CODEC_BAD_DTYPE);
}

function checkBool(name: string, data: Uint8Array, code: ErrorCode): void {
  for (let i = 0; i < data.length; i++) {
    if (data[i] > 1) fail(code, `tensor '${name}': bool element ${i} is ${data[i]}; bool tensors hold 0 or 1 per byte`, { tensor: name });
  }
}

// String.prototype.isWellFormed is ES2024 (Node 20 has it; the tsconfig lib is ES2023).
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  const tag = typedArrayTag(v);
  if (tag) return `a ${tag}`;
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'object'}`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}

/**
 * Meta travels as plain msgpack: JSON-like values (plus bigint within 64 bits). As JSON.stringify does,
 * undefined object fields are dropped, undefined array items become null and toJSON() is honoured.
 */
function cleanMeta(v: unknown, path: string, depth: number): unknown {
  if (depth > 64) fail(ErrorCode.BAD_ARGUMENT, `frame meta is nested more than 64 levels at ${path}; flatten it`);
  if (typeof v === 'string') {
    if (!isWellFormed(v)) fail(ErrorCode.BAD_ARGUMENT, `frame meta ${path} has a lone UTF-16 surrogate, which UTF-8 cannot carry; fix the string`);
    return v;
  }
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') {
    if (v < -(2n ** 63n) || v >= 2n ** 64n) fail(ErrorCode.BAD_ARGUMENT, `frame meta ${path} is a bigint outside 64 bits; send it as a string`);
    return v;
  }
  if (Array.isArray(v)) return v.map((x, i) => (x === undefined ? null : cleanMeta(x, `${path}[${i}]`, depth + 1)));
  if (typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function' && !ArrayBuffer.isView(v)) {
    return cleanMeta((v as { toJSON(key: string): unknown }).toJSON(path), path, depth + 1); // as JSON.stringify: Date → ISO string
  }
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (!isWellFormed(k)) fail(ErrorCode.BAD_ARGUMENT, `frame meta ${path} has a key with a lone UTF-16 surrogate, which UTF-8 cannot carry`);
      if (k === '__proto__') fail(ErrorCode.BAD_ARGUMENT, `frame meta ${path} has a key named __proto__, which msgpack readers in JS rename or drop; choose another key`);
      if (x !== undefined) defineField(out, k, cleanMeta(x, `${path}.${k}`, depth + 1));
      }
      return out;
    }
  }
  fail(ErrorCode.BAD_ARGUMENT, `frame meta ${path} is ${describe(v)}; meta carries JSON-like values (put typed arrays in tensors; give classes a toJSON())`);
}

function defineField(o: Record<string, unknown>, k: string, v: unknown): void {
  // defineProperty so that a key named "__proto__" stays a plain field.
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------------
// CRC-32 (IEEE, zlib's). @node-rs/crc32 (SIMD, the same values): 12.6 GB/s over a warm 1 MB buffer
// here against 5.2 for Node's zlib.crc32, which bounds the inline path of a frame (one pass on each
// side, see Checksums above). Node's zlib.crc32 (>= 20.15) when that package has no binary for this
// platform, and a table fallback for older runtimes.

type Crc32 = (data: Uint8Array, value?: number) => number;
const nativeCrc32: Crc32 | undefined = (() => {
  try {
    // A require, not an import: a missing platform binary must fall back, not fail the codec's load.
    return (createRequire(import.meta.url)('@node-rs/crc32') as { crc32: Crc32 }).crc32;
  } catch {
    return (zlib as unknown as { crc32?: Crc32 }).crc32;
  }
})();
let crcTable: Uint32Array | undefined;

/** CRC-32 (zlib/IEEE polynomial) of `data`, continuing from `seed` (a previous result) when given. */
export function crc32(data: Uint8Array, seed = 0): number {
  // zlib returns 0, not the seed, for an empty array over a zero-length buffer (NULL pointer).
  if (data.length === 0) return seed >>> 0;
  if (nativeCrc32) return nativeCrc32(data, seed) >>> 0;
  return crc32Js(data, seed);
}

/** The portable implementation, exported for tests. */
export function crc32Js(data: Uint8Array, seed = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Tensor frames

const MAGIC = [0xa4, 0x43, 0x4c, 0x56, 0x54]; // fixstr "CLVT"
const FLAG_PAYLOAD_CRC = 0x01;
const KNOWN_FLAGS = FLAG_PAYLOAD_CRC;
const HEADER_START = 23;
const MAX_BIN32 = 0xffffffff;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Plain msgpack both ways: no records, no msgpackr-only extensions, so any msgpack library reads it.
const headerPackr = new Packr({ useRecords: false, moreTypes: false, useFloat32: 0, encodeUndefinedAsNil: true });
const headerUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) fail(ErrorCode.INTERNAL, 'the tensor codec needs a little-endian host; big-endian hosts are not supported yet');
}

const align8 = (n: number): number => (n + 7) & ~7;

/**
 * Uninitialised memory (callers write every byte) as a plain Uint8Array: Buffer#slice does not copy,
 * and a frame handed to user code must not behave differently from one received off the wire.
 */
function allocBytes(n: number): Uint8Array {
  const b = Buffer.allocUnsafe(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

interface Slot {
  name: string;
  bytes?: Uint8Array; // numeric payload view; undefined for strings
  offset: number;
}

interface Layout {
  header: Uint8Array;
  slots: Slot[];
  padStart: number;
  pad: number;
  payloadStart: number;
  payloadLength: number;
  total: number;
  checksum: boolean;
}

function layout(frame: Frame, options: EncodeOptions): Layout {
  requireLittleEndian();
  if (frame === null || typeof frame !== 'object' || frame.tensors === null || typeof frame.tensors !== 'object') {
    fail(ErrorCode.BAD_ARGUMENT, 'encodeFrame needs { tensors: Record<string, Tensor>, meta? }');
  }
  const checksum = options.checksum ?? true;
  const entries: Record<string, unknown>[] = [];
  const slots: Slot[] = [];
  let payloadLength = 0;
  for (const [name, t] of Object.entries(frame.tensors)) {
    checkTensor(name, t);
    if (t.dtype === 'string') {
      entries.push({ n: name, d: t.dtype, s: t.shape, v: t.data });
      continue;
    }
    const data = t.data as Exclude<TensorData, string[]>;
    const offset = align8(payloadLength);
    entries.push({ n: name, d: t.dtype, s: t.shape, o: offset, l: data.byteLength });
    slots.push({ name, offset, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    payloadLength = offset + data.byteLength;
  }
  const meta = cleanMeta(frame.meta ?? {}, 'meta', 0);
  const header = headerPackr.pack({ t: entries, m: meta });
  const padStart = HEADER_START + header.length;
  const pad = (8 - ((padStart + 2 + 5) % 8)) % 8;
  const payloadStart = padStart + 2 + pad + 5;
  const total = payloadStart + payloadLength;

  if (options.maxBytes !== undefined && total > options.maxBytes) {
    fail(ErrorCode.CODEC_TOO_LARGE, `frame of ${total} bytes exceeds the limit of ${options.maxBytes} bytes; split it with splitFrame() or raise the limit (NATS max_payload)`, { bytes: total, limit: options.maxBytes });
  }
  if (payloadLength > MAX_BIN32 || header.length > MAX_BIN32) {
    fail(ErrorCode.CODEC_TOO_LARGE, `frame payload of ${payloadLength} bytes exceeds the 4 GiB a frame can carry; send the tensors in several frames`, { bytes: total, limit: MAX_BIN32 });
  }
  return { header, slots, padStart, pad, payloadStart, payloadLength, total, checksum };
}

/** Writes bytes [0, payloadStart) of the frame into `out` (which holds at least that many); payload CRC given. */
function writePrefix(out: Uint8Array, l: Layout, payloadCrc: number): void {
  const view = new DataView(out.buffer, out.byteOffset, l.payloadStart);
  out[0] = 0x99;
  out.set(MAGIC, 1);
  out[6] = CODEC_VERSION;
  out[7] = l.checksum ? FLAG_PAYLOAD_CRC : 0;
  out[8] = 0xce; view.setUint32(9, l.header.length);
  out[13] = 0xce; view.setUint32(14, payloadCrc);
  out[18] = 0xce; // header CRC, written below
  out.set(l.header, HEADER_START);
  out[l.padStart] = 0xc4;
  out[l.padStart + 1] = l.pad;
  out.fill(0, l.padStart + 2, l.padStart + 2 + l.pad);
  out[l.payloadStart - 5] = 0xc6;
  view.setUint32(l.payloadStart - 4, l.payloadLength);
  view.setUint32(19, crc32(out.subarray(HEADER_START, l.payloadStart), crc32(out.subarray(0, 18))));
}

/** Encode named tensors and meta into one msgpack frame (layout in the module header). */
export function encodeFrame(frame: Frame, options: EncodeOptions = {}): Uint8Array {
  const l = layout(frame, options);
  const raw = options.allocate?.(l.total) ?? allocBytes(l.total);
  if (!(raw instanceof Uint8Array) || raw.length < l.total) fail(ErrorCode.BAD_ARGUMENT, `encodeFrame: allocate(${l.total}) must return a Uint8Array of at least ${l.total} bytes`);
  const out = raw.length === l.total ? raw : raw.subarray(0, l.total);
  let cursor = 0;
  for (const s of l.slots) {
    if (s.offset > cursor) out.fill(0, l.payloadStart + cursor, l.payloadStart + s.offset);
    out.set(s.bytes!, l.payloadStart + s.offset);
    cursor = s.offset + s.bytes!.length;
  }
  writePrefix(out, l, l.checksum ? crc32(out.subarray(l.payloadStart, l.total)) : 0);
  return out;
}

/**
 * The same frame as encodeFrame, as a list of byte ranges to write in order (a vectored write): a
 * fresh prefix (header through the payload's length) and the tensors' own bytes with zero padding
 * between them. The tensor data is not copied; the parts are valid while the tensors are.
 */
export function encodeFrameParts(frame: Frame, options: Omit<EncodeOptions, 'allocate'> = {}): { parts: Uint8Array[]; byteLength: number } {
  const l = layout(frame, options);
  const prefix = new Uint8Array(l.payloadStart);
  const parts: Uint8Array[] = [prefix];
  let cursor = 0;
  let crc = 0;
  for (const s of l.slots) {
    if (s.offset > cursor) {
      const gap = ZERO_PAD.subarray(0, s.offset - cursor);
      parts.push(gap);
      if (l.checksum) crc = crc32(gap, crc);
    }
    parts.push(s.bytes!);
    if (l.checksum) crc = crc32(s.bytes!, crc);
    cursor = s.offset + s.bytes!.length;
  }
  writePrefix(prefix, l, l.checksum ? crc : 0);
  return { parts, byteLength: l.total };
}

const ZERO_PAD = new Uint8Array(8);

/**
 * Decode a frame made by encodeFrame. Tensors are views over `bytes` (no copy) when `bytes` sits at an
 * offset aligned to the element size, so they share its memory; pass `{ copy: true }` if `bytes` will
 * be reused. Any malformed input throws a CleaveError (CODEC_*); it never yields a wrong tensor.
 */
export function decodeFrame(bytes: Uint8Array, options: DecodeOptions = {}): DecodedFrame {
  requireLittleEndian();
  if (!(bytes instanceof Uint8Array)) fail(ErrorCode.BAD_ARGUMENT, `decodeFrame needs a Uint8Array, got ${describe(bytes)}`);
  const len = bytes.length;
  const fixed = Math.min(len, HEADER_START);
  for (let i = 1; i < Math.min(fixed, 6); i++) {
    if (bytes[i] !== MAGIC[i - 1]) fail(ErrorCode.CODEC_CORRUPT, 'not a Cleave tensor frame (bad magic); check that the sender uses protocols/tensor-codec', { at: i });
  }
  if (len > 0 && (bytes[0] & 0xf0) !== 0x90) fail(ErrorCode.CODEC_CORRUPT, 'not a Cleave tensor frame (does not start with a msgpack array)');
  if (len > 6 && bytes[6] !== CODEC_VERSION) {
    fail(ErrorCode.CODEC_VERSION, `frame has codec version ${bytes[6]}, this build reads version ${CODEC_VERSION}; run the same Cleave version on both ends`, { version: bytes[6], supported: CODEC_VERSION });
  }
  if (len > 0 && bytes[0] !== 0x99) fail(ErrorCode.CODEC_CORRUPT, `frame array has ${bytes[0] & 0x0f} elements, version ${CODEC_VERSION} has 9`);
  for (const at of [8, 13, 18]) {
    if (len > at && bytes[at] !== 0xce) fail(ErrorCode.CODEC_CORRUPT, `frame field at byte ${at} is not a uint32`, { at });
  }
  if (len < HEADER_START) truncated(len, HEADER_START);
  const view = new DataView(bytes.buffer, bytes.byteOffset, len);
  const flags = bytes[7];
  const headerLength = view.getUint32(9);
  const padStart = HEADER_START + headerLength;
  if (len < padStart + 2) truncated(len, padStart + 2);
  if (bytes[padStart] !== 0xc4 || bytes[padStart + 1] > 7) fail(ErrorCode.CODEC_CORRUPT, 'frame padding field is malformed', { at: padStart });
  const payloadStart = padStart + 2 + bytes[padStart + 1] + 5;
  if (payloadStart % 8 !== 0) fail(ErrorCode.CODEC_CORRUPT, 'frame payload is not 8-aligned', { at: padStart });
  if (len < payloadStart) truncated(len, payloadStart);
  if (bytes[payloadStart - 5] !== 0xc6) fail(ErrorCode.CODEC_CORRUPT, 'frame payload field is not a bin32', { at: payloadStart - 5 });
  const payloadLength = view.getUint32(payloadStart - 4);
  const total = payloadStart + payloadLength;
  if (len < total) truncated(len, total);
  if (len > total) fail(ErrorCode.CODEC_CORRUPT, `frame has ${len - total} bytes after its end; pass exactly one frame`, { bytes: len, expected: total });

  const headerCrc = crc32(bytes.subarray(HEADER_START, payloadStart), crc32(bytes.subarray(0, 18)));
  if (headerCrc !== view.getUint32(19)) fail(ErrorCode.CODEC_CORRUPT, 'frame header checksum mismatch: the frame was damaged in transit or by a buffer reused too early');
  if ((flags & ~KNOWN_FLAGS) !== 0) fail(ErrorCode.CODEC_VERSION, `frame uses flags 0x${flags.toString(16)} this build does not know; run the same Cleave version on both ends`, { flags });
  const payload = bytes.subarray(payloadStart, total);
  if (flags & FLAG_PAYLOAD_CRC) {
    if (crc32(payload) !== view.getUint32(14)) fail(ErrorCode.CODEC_CORRUPT, 'frame payload checksum mismatch: the tensor bytes were damaged in transit or by a buffer reused too early');
  }

  let header: unknown;
  try {
    header = headerUnpackr.unpack(bytes.subarray(HEADER_START, padStart));
  } catch (e) {
    throw new CleaveError(ErrorCode.CODEC_CORRUPT, `frame header is not valid msgpack (${(e as Error).message.slice(0, 80)}); the sender wrote a bad frame`, { cause: e });
  }
  return readHeader(header, bytes, payloadStart, payloadLength, options.copy === true);
}

function truncated(len: number, need: number): never {
  fail(ErrorCode.CODEC_TRUNCATED, `frame is truncated: ${len} bytes, needs at least ${need}; the message was cut short (check NATS max_payload or chunking)`, { bytes: len, needed: need });
}

function readHeader(header: unknown, bytes: Uint8Array, payloadStart: number, payloadLength: number, copy: boolean): DecodedFrame {
  const h = header as { t?: unknown; m?: unknown };
  if (h === null || typeof h !== 'object' || !Array.isArray(h.t)) fail(ErrorCode.CODEC_CORRUPT, 'frame header has no tensor list');
  const meta = h.m ?? {};
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) fail(ErrorCode.CODEC_CORRUPT, 'frame meta is not a map');
  const tensors: Record<string, Tensor> = {};
  let cursor = 0;
  for (const raw of h.t) {
    const e = raw as { n?: unknown; d?: unknown; s?: unknown; o?: unknown; l?: unknown; v?: unknown };
    if (e === null || typeof e !== 'object' || typeof e.n !== 'string') fail(ErrorCode.CODEC_CORRUPT, 'frame header has a tensor entry without a name');
    const name = e.n;
    if (Object.prototype.hasOwnProperty.call(tensors, name)) fail(ErrorCode.CODEC_CORRUPT, `frame header names tensor '${name}' twice`, { tensor: name });
    if (!isDType(e.d)) fail(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}' has unknown dtype ${describe(e.d)}; the peer runs a newer or different codec`, { tensor: name });
    const count = checkShape(name, e.s);
    const shape = e.s as number[];
    let data: TensorData;
    if (e.d === 'string') {
      if (!Array.isArray(e.v) || e.v.some((x) => typeof x !== 'string')) fail(ErrorCode.CODEC_CORRUPT, `tensor '${name}': string values missing or not strings`, { tensor: name });
      if (e.v.length !== count) fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape [${shape.join(',')}] holds ${count} elements but the frame carries ${e.v.length}`, { tensor: name });
      data = e.v as string[];
    } else {
      const size = ELEMENT_BYTES[e.d];
      const o = e.o, l = e.l;
      if (typeof o !== 'number' || typeof l !== 'number' || !Number.isSafeInteger(o) || !Number.isSafeInteger(l) || o < cursor || o % 8 !== 0 || l < 0 || o + l > payloadLength) {
        fail(ErrorCode.CODEC_CORRUPT, `tensor '${name}': payload range ${describe(o)}+${describe(l)} is outside the payload, unaligned or overlapping`, { tensor: name });
      }
      if (l !== count * size) fail(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}': shape [${shape.join(',')}] of ${e.d} needs ${count * size} bytes, the frame carries ${l}`, { tensor: name });
      cursor = o + l;
      const at = bytes.byteOffset + payloadStart + o;
      const Ctor = ARRAY_TYPE[e.d];
      if (!copy && at % size === 0) {
        data = new Ctor(bytes.buffer, at, count);
      } else {
        const owned = new Ctor(count);
        new Uint8Array(owned.buffer).set(bytes.subarray(payloadStart + o, payloadStart + o + l));
        data = owned;
      }
      if (e.d === 'bool') checkBool(name, data as Uint8Array, ErrorCode.CODEC_CORRUPT);
    }
    defineField(tensors as Record<string, unknown>, name, { dtype: e.d, shape, data });
  }
  return { tensors, meta: meta as Record<string, unknown> };
}

// ---------------------------------------------------------------------------------------------------
// Chunking: pure split and reassembly. The transport decides subjects, acks and timeouts.

const CHUNK_MAGIC = [0xa4, 0x43, 0x4c, 0x56, 0x43]; // fixstr "CLVC"
const MAX_CHUNKS = 0xffffffff;

/** What one chunk frame says about itself (after its checksum was verified). */
export interface ChunkInfo {
  /** 32 hex characters. */
  transferId: string;
  index: number;
  count: number;
  /** Length of the whole frame. */
  totalBytes: number;
  /** CRC-32 of the whole frame. */
  frameCrc: number;
  /** Where `data` sits in the whole frame. */
  offset: number;
  /** A view into the chunk (not a copy). */
  data: Uint8Array;
}

export interface SplitOptions {
  /** 16 bytes or 32 hex characters; random by default. */
  transferId?: Uint8Array | string;
}

/**
 * Split a frame into chunk frames of at most `chunkBytes` bytes each (give NATS max_payload minus
 * room for headers). Every chunk is self-describing; FrameAssembler puts them back together.
 */
export function splitFrame(frame: Uint8Array, chunkBytes: number, options: SplitOptions = {}): Uint8Array[] {
  if (!(frame instanceof Uint8Array)) fail(ErrorCode.BAD_ARGUMENT, `splitFrame needs a Uint8Array, got ${describe(frame)}`);
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= CHUNK_OVERHEAD) {
    fail(ErrorCode.BAD_ARGUMENT, `splitFrame: chunkBytes must be an integer above ${CHUNK_OVERHEAD} (the chunk header), got ${chunkBytes}`);
  }
  const id = transferIdBytes(options.transferId);
  const L = Math.min(chunkBytes - CHUNK_OVERHEAD, MAX_BIN32);
  const count = Math.max(1, Math.ceil(frame.length / L));
  if (count > MAX_CHUNKS) fail(ErrorCode.CODEC_TOO_LARGE, `frame of ${frame.length} bytes needs more than ${MAX_CHUNKS} chunks; raise chunkBytes`);
  const frameCrc = crc32(frame);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const data = frame.subarray(i * L, Math.min(frame.length, (i + 1) * L));
    const out = allocBytes(CHUNK_OVERHEAD + data.length);
    const v = new DataView(out.buffer, out.byteOffset, out.length);
    out[0] = 0x99;
    out.set(CHUNK_MAGIC, 1);
    out[6] = CHUNK_VERSION;
    out[7] = 0xc4; out[8] = 16; out.set(id, 9);
    out[25] = 0xce; v.setUint32(26, i);
    out[30] = 0xce; v.setUint32(31, count);
    out[35] = 0xcf; v.setBigUint64(36, BigInt(frame.length));
    out[44] = 0xce; v.setUint32(45, frameCrc);
    out[49] = 0xce;
    out[54] = 0xc6; v.setUint32(55, data.length);
    out.set(data, CHUNK_OVERHEAD);
    v.setUint32(50, crc32(data, crc32(out.subarray(0, 49))));
    chunks.push(out);
  }
  return chunks;
}

function transferIdBytes(id: Uint8Array | string | undefined): Uint8Array {
  if (id === undefined) return new Uint8Array(randomBytes(16));
  if (typeof id === 'string') {
    if (!/^[0-9a-f]{32}$/i.test(id)) fail(ErrorCode.BAD_ARGUMENT, `transferId must be 32 hex characters, got ${describe(id)}`);
    return Uint8Array.from(Buffer.from(id, 'hex'));
  }
  if (id.length !== 16) fail(ErrorCode.BAD_ARGUMENT, `transferId must be 16 bytes, got ${id.length}`);
  return id;
}

/** Parse and verify one chunk frame; throws CODEC_* on anything malformed. */
export function readChunk(chunk: Uint8Array): ChunkInfo {
  if (!(chunk instanceof Uint8Array)) fail(ErrorCode.BAD_ARGUMENT, `readChunk needs a Uint8Array, got ${describe(chunk)}`);
  const len = chunk.length;
  for (let i = 1; i < Math.min(len, 6); i++) {
    if (chunk[i] !== CHUNK_MAGIC[i - 1]) fail(ErrorCode.CODEC_CORRUPT, 'not a Cleave chunk frame (bad magic)', { at: i });
  }
  if (len > 6 && chunk[6] !== CHUNK_VERSION) fail(ErrorCode.CODEC_VERSION, `chunk has version ${chunk[6]}, this build reads ${CHUNK_VERSION}; run the same Cleave version on both ends`);
  const marks: [number, number][] = [[0, 0x99], [7, 0xc4], [8, 16], [25, 0xce], [30, 0xce], [35, 0xcf], [44, 0xce], [49, 0xce], [54, 0xc6]];
  for (const [at, b] of marks) if (len > at && chunk[at] !== b) fail(ErrorCode.CODEC_CORRUPT, `chunk frame is malformed at byte ${at}`, { at });
  if (len < CHUNK_OVERHEAD) fail(ErrorCode.CODEC_TRUNCATED, `chunk is truncated: ${len} bytes, needs at least ${CHUNK_OVERHEAD}`);
  const v = new DataView(chunk.buffer, chunk.byteOffset, len);
  const dataLength = v.getUint32(55);
  if (len < CHUNK_OVERHEAD + dataLength) fail(ErrorCode.CODEC_TRUNCATED, `chunk is truncated: ${len} bytes, needs ${CHUNK_OVERHEAD + dataLength}`);
  if (len > CHUNK_OVERHEAD + dataLength) fail(ErrorCode.CODEC_CORRUPT, `chunk has ${len - CHUNK_OVERHEAD - dataLength} bytes after its end`);
  const data = chunk.subarray(CHUNK_OVERHEAD);
  if (crc32(data, crc32(chunk.subarray(0, 49))) !== v.getUint32(50)) fail(ErrorCode.CODEC_CORRUPT, 'chunk checksum mismatch: the chunk was damaged in transit; ask for it again');
  const index = v.getUint32(26);
  const count = v.getUint32(31);
  const total = v.getBigUint64(36);
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) fail(ErrorCode.CODEC_CORRUPT, 'chunk declares an impossible frame length');
  const totalBytes = Number(total);
  if (count === 0 || index >= count) fail(ErrorCode.CODEC_CORRUPT, `chunk index ${index} is outside its count ${count}`);
  const transferId = Buffer.from(chunk.subarray(9, 25)).toString('hex');
  // Every chunk but the last holds L bytes at index * L; derive L and check this chunk against it.
  let offset: number;
  if (index < count - 1) {
    offset = index * dataLength;
    if (dataLength === 0 || dataLength * (count - 1) >= totalBytes || dataLength * count < totalBytes) {
      fail(ErrorCode.CODEC_CORRUPT, `chunk ${index}/${count} length ${dataLength} does not fit a ${totalBytes}-byte frame`);
    }
  } else {
    offset = totalBytes - dataLength;
    if (offset < 0 || (count > 1 && (dataLength === 0 || dataLength > offset / (count - 1) || offset % (count - 1) !== 0)) || (count === 1 && offset !== 0)) {
      fail(ErrorCode.CODEC_CORRUPT, `last chunk length ${dataLength} does not fit a ${totalBytes}-byte frame in ${count} chunks`);
    }
  }
  return { transferId, index, count, totalBytes, frameCrc: v.getUint32(45), offset, data };
}

export interface AssemblerOptions {
  /** Largest whole frame accepted (CODEC_TOO_LARGE above). Default 256 MiB. */
  maxBytes?: number;
  /** Largest sum of the frames being assembled at once. Default 4 × maxBytes. */
  maxPendingBytes?: number;
  /** How many completed transfer ids to remember so that late duplicates are ignored. Default 1024. */
  rememberCompleted?: number;
}

export interface PendingTransfer {
  transferId: string;
  received: number;
  count: number;
  totalBytes: number;
}

interface Transfer {
  count: number;
  totalBytes: number;
  frameCrc: number;
  chunkLength: number;
  chunkCrcs: Map<number, number>;
  buffer: Uint8Array;
}

/**
 * Reassembles chunk frames from any number of transfers, in any order; duplicates are ignored. `add`
 * returns the whole frame when a chunk completes it. Time-outs belong to the caller: call `abandon`
 * for a transfer that stalls, which reports the missing chunks as a CODEC_TRUNCATED error.
 */
export class FrameAssembler {
  readonly maxBytes: number;
  readonly maxPendingBytes: number;
  private readonly remember: number;
  private readonly transfers = new Map<string, Transfer>();
  private readonly completed = new Set<string>();
  private pendingBytes = 0;

  constructor(options: AssemblerOptions = {}) {
    this.maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    this.maxPendingBytes = options.maxPendingBytes ?? 4 * this.maxBytes;
    this.remember = options.rememberCompleted ?? 1024;
  }

  /** Feed one chunk frame. Returns the whole frame once every chunk of its transfer has arrived. */
  add(chunk: Uint8Array): Uint8Array | undefined {
    const c = readChunk(chunk);
    if (this.completed.has(c.transferId)) return undefined;
    let t = this.transfers.get(c.transferId);
    if (!t) {
      if (c.totalBytes > this.maxBytes) {
        fail(ErrorCode.CODEC_TOO_LARGE, `incoming frame of ${c.totalBytes} bytes exceeds the limit of ${this.maxBytes} bytes; raise maxBytes on the receiver or send smaller tensors`, { bytes: c.totalBytes, limit: this.maxBytes, transferId: c.transferId });
      }
      if (this.pendingBytes + c.totalBytes > this.maxPendingBytes) {
        fail(ErrorCode.CODEC_TOO_LARGE, `assembling ${this.transfers.size} frames already holds ${this.pendingBytes} bytes; another ${c.totalBytes} would pass the ${this.maxPendingBytes}-byte limit; abandon stalled transfers or raise maxPendingBytes`, { bytes: c.totalBytes, limit: this.maxPendingBytes, transferId: c.transferId });
      }
      const chunkLength = c.index < c.count - 1 ? c.data.length : c.count > 1 ? c.offset / (c.count - 1) : c.totalBytes;
      t = { count: c.count, totalBytes: c.totalBytes, frameCrc: c.frameCrc, chunkLength, chunkCrcs: new Map(), buffer: allocBytes(c.totalBytes) };
      this.transfers.set(c.transferId, t);
      this.pendingBytes += c.totalBytes;
    } else if (t.count !== c.count || t.totalBytes !== c.totalBytes || t.frameCrc !== c.frameCrc || c.offset !== c.index * t.chunkLength) {
      fail(ErrorCode.CODEC_CORRUPT, `chunk ${c.index} of transfer ${c.transferId} disagrees with its earlier chunks (count, length, offset or checksum); the sender reused a transfer id`, { transferId: c.transferId, index: c.index });
    }
    const crc = new DataView(chunk.buffer, chunk.byteOffset, chunk.length).getUint32(50);
    const seen = t.chunkCrcs.get(c.index);
    if (seen !== undefined) {
      if (seen !== crc) fail(ErrorCode.CODEC_CORRUPT, `chunk ${c.index} of transfer ${c.transferId} arrived twice with different content`, { transferId: c.transferId, index: c.index });
      return undefined;
    }
    t.buffer.set(c.data, c.offset);
    t.chunkCrcs.set(c.index, crc);
    if (t.chunkCrcs.size < t.count) return undefined;

    this.forget(c.transferId, t);
    this.completed.add(c.transferId);
    if (this.completed.size > this.remember) this.completed.delete(this.completed.values().next().value as string);
    if (crc32(t.buffer) !== t.frameCrc) {
      fail(ErrorCode.CODEC_CORRUPT, `reassembled frame of transfer ${c.transferId} fails its checksum; chunks from different frames share a transfer id`, { transferId: c.transferId });
    }
    return t.buffer;
  }

  /** Indices not yet received for a transfer (empty for unknown or completed transfers). */
  missing(transferId: string): number[] {
    const t = this.transfers.get(transferId);
    if (!t) return [];
    const out: number[] = [];
    for (let i = 0; i < t.count; i++) if (!t.chunkCrcs.has(i)) out.push(i);
    return out;
  }

  /** Transfers started and not complete. */
  pending(): PendingTransfer[] {
    return [...this.transfers].map(([transferId, t]) => ({ transferId, received: t.chunkCrcs.size, count: t.count, totalBytes: t.totalBytes }));
  }

  /** Drop a stalled transfer; returns the CODEC_TRUNCATED error naming its missing chunks (or undefined if unknown). */
  abandon(transferId: string): CleaveError | undefined {
    const t = this.transfers.get(transferId);
    if (!t) return undefined;
    const missing = this.missing(transferId);
    this.forget(transferId, t);
    const shown = missing.length > 20 ? `${missing.slice(0, 20).join(', ')}, …` : missing.join(', ');
    return new CleaveError(ErrorCode.CODEC_TRUNCATED, `transfer ${transferId} is missing ${missing.length} of ${t.count} chunks (${shown}); the sender must resend the frame`, { details: { transferId, missing } });
  }

  private forget(transferId: string, t: Transfer): void {
    this.transfers.delete(transferId);
    this.pendingBytes -= t.totalBytes;
  }
}
