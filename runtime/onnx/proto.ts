// ONNX protobuf I/O: decode/encode/validate models, resolve external data, convert TensorProto to typed
// arrays and back, and THE node-id rule. Types and enums: `onnx-proto`; codec: the vendored onnx.proto.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import onnxProtoPkg from 'onnx-proto';
import protobuf from 'protobufjs';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { DType } from '../../protocols/graph.js';

/** The ONNX protobuf namespace (value and type): `onnx.ModelProto`, `onnx.TensorProto.DataType`, … */
export import onnx = onnxProtoPkg.onnx;

// onnx-proto's static codec knows the ONNX 1.10 schema only and drops newer fields (function attribute
// defaults, overloads, metadata) on decode. Route every class's codec through protobufjs reflection over
// the vendored current schema; decoded messages stay instances of the onnx-proto classes.
const SCHEMA = protobuf.parse(readFileSync(new URL('./onnx.proto', import.meta.url), 'utf8')).root;
SCHEMA.resolveAll();
function bindCodec(ns: object, path: string): void {
  for (const [name, cls] of Object.entries(ns) as [string, unknown][]) {
    if (typeof cls !== 'function' || typeof (cls as { encode?: unknown }).encode !== 'function') continue;
    const type = SCHEMA.lookupType(`${path}.${name}`);
    type.ctor = cls as unknown as protobuf.Constructor<object>;
    Object.assign(cls, {
      encode: (m: object, w?: protobuf.Writer) => type.encode(m, w),
      encodeDelimited: (m: object, w?: protobuf.Writer) => type.encodeDelimited(m, w),
      decode: (r: protobuf.Reader | Uint8Array, l?: number) => type.decode(r, l),
      decodeDelimited: (r: protobuf.Reader | Uint8Array) => type.decodeDelimited(r),
      verify: (m: { [k: string]: unknown }) => type.verify(m),
      fromObject: (o: { [k: string]: unknown }) => type.fromObject(o),
      toObject: (m: protobuf.Message<object>, o?: protobuf.IConversionOptions) => type.toObject(m, o),
    });
    bindCodec(cls, `${path}.${name}`);
  }
}
bindCodec(onnx, 'onnx');

/** int64 fields decode as protobufjs `Long` objects (or plain numbers when built by hand). */
export interface LongLike { low: number; high: number; unsigned: boolean; toString(): string }
export type Int64 = number | LongLike;

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array;

/** A tensor's value decoded from a TensorProto. float16/bfloat16 hold raw bits; bool is 0/1 bytes. */
export interface DecodedTensor {
  dtype: DType;
  dims: number[];
  data: TypedArray | string[];
}

// ---------------------------------------------------------------- ints

/** An int64 proto field as a JS number (exact up to 2^53; larger values lose precision). */
export function int64ToNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  return Number(int64ToBigInt(v));
}

/** An int64 proto field as an exact bigint. */
export function int64ToBigInt(v: Int64 | null | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'number') return BigInt(v);
  const lo = BigInt(v.low >>> 0);
  const hi = BigInt(v.high >>> 0);
  const u = (hi << 32n) | lo;
  return v.unsigned ? u : BigInt.asIntN(64, u);
}

// ---------------------------------------------------------------- dtypes

const DT = onnx.TensorProto.DataType;

const DTYPE_BY_ELEM: Record<number, DType> = {
  [DT.FLOAT]: 'float32', [DT.UINT8]: 'uint8', [DT.INT8]: 'int8', [DT.UINT16]: 'uint16',
  [DT.INT16]: 'int16', [DT.INT32]: 'int32', [DT.INT64]: 'int64', [DT.STRING]: 'string',
  [DT.BOOL]: 'bool', [DT.FLOAT16]: 'float16', [DT.DOUBLE]: 'float64', [DT.UINT32]: 'uint32',
  [DT.UINT64]: 'uint64', [DT.BFLOAT16]: 'bfloat16',
};
const ELEM_BY_DTYPE = Object.fromEntries(Object.entries(DTYPE_BY_ELEM).map(([k, v]) => [v, Number(k)])) as Record<DType, number>;

/** ONNX TensorProto.DataType number → DType; throws MODEL_UNSUPPORTED for complex and unknown types. */
export function dtypeFromElemType(elemType: number): DType {
  const d = DTYPE_BY_ELEM[elemType];
  if (!d) {
    const name = (DT as unknown as Record<number, string>)[elemType] ?? `#${elemType}`;
    throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `tensor element type ${name} is not supported by Cleave; convert the model to a real-valued type (float32, int64, …)`, { details: { elemType } });
  }
  return d;
}

/** DType → ONNX TensorProto.DataType number. */
export function elemTypeFromDType(dtype: DType): number {
  const e = ELEM_BY_DTYPE[dtype];
  if (e === undefined) throw new CleaveError(ErrorCode.CODEC_BAD_DTYPE, `unknown dtype '${dtype}'; use one of ${Object.keys(ELEM_BY_DTYPE).join(', ')}`);
  return e;
}

type ArrayCtor = { new (n: number): TypedArray; new (b: ArrayBuffer, off?: number, len?: number): TypedArray; BYTES_PER_ELEMENT: number };
const CTOR: Record<Exclude<DType, 'string'>, ArrayCtor> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array, bool: Uint8Array,
};

/** The typed-array constructor Cleave uses for a dtype (float16/bfloat16 → Uint16Array, bool → Uint8Array). */
export function arrayCtorFor(dtype: Exclude<DType, 'string'>): ArrayCtor {
  return CTOR[dtype];
}

// ---------------------------------------------------------------- tensors

/** A TensorProto's value as a typed array (or string[]), from raw_data or the typed *_data fields. */
export function tensorProtoToArray(t: onnx.ITensorProto): DecodedTensor {
  const dtype = dtypeFromElemType(t.dataType ?? 0);
  const dims = (t.dims ?? []).map((d) => int64ToNumber(d));
  const count = dims.reduce((a, b) => a * b, 1);
  if (t.dataLocation === DT_EXTERNAL) {
    throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `tensor '${t.name ?? ''}' keeps its data in an external file; load the model with loadModelFile() or decodeModel(bytes, { baseDir }) so the data is read`, { details: { tensor: t.name } });
  }
  if (dtype === 'string') {
    const strs = (t.stringData ?? []).map((b) => Buffer.from(b).toString('utf8'));
    return { dtype, dims, data: strs };
  }
  const Ctor = CTOR[dtype];
  const raw = t.rawData;
  let data: TypedArray;
  if (raw && raw.length > 0) {
    if (raw.length !== count * Ctor.BYTES_PER_ELEMENT) {
      throw new CleaveError(ErrorCode.MODEL_INVALID, `tensor '${t.name ?? ''}' has ${raw.length} bytes of raw_data but dims ${JSON.stringify(dims)} of ${dtype} need ${count * Ctor.BYTES_PER_ELEMENT}; re-export the model`, { details: { tensor: t.name } });
    }
    // Copy: raw_data is a view into the model buffer and may be unaligned.
    const buf = new ArrayBuffer(raw.length);
    new Uint8Array(buf).set(raw);
    data = new Ctor(buf);
  } else {
    data = new Ctor(count);
    const src = fieldFor(t, dtype);
    if (src.length !== count && !(src.length === 0 && count === 0)) {
      if (src.length === 0) {
        throw new CleaveError(ErrorCode.MODEL_INVALID, `tensor '${t.name ?? ''}' has dims ${JSON.stringify(dims)} but no data; re-export the model with its weights`, { details: { tensor: t.name } });
      }
      throw new CleaveError(ErrorCode.MODEL_INVALID, `tensor '${t.name ?? ''}' has ${src.length} values but dims ${JSON.stringify(dims)} need ${count}; re-export the model`, { details: { tensor: t.name } });
    }
    if (data instanceof BigInt64Array) for (let i = 0; i < count; i++) data[i] = int64ToBigInt(src[i] as Int64);
    else if (data instanceof BigUint64Array) for (let i = 0; i < count; i++) data[i] = BigInt.asUintN(64, int64ToBigInt(src[i] as Int64));
    else if (dtype === 'uint32') for (let i = 0; i < count; i++) data[i] = int64ToNumber(src[i] as Int64);
    else for (let i = 0; i < count; i++) (data as Float32Array)[i] = src[i] as number;
  }
  return { dtype, dims, data };
}

const DT_EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;

function fieldFor(t: onnx.ITensorProto, dtype: DType): ArrayLike<number | Int64> {
  switch (dtype) {
    case 'float32': return t.floatData ?? [];
    case 'float64': return t.doubleData ?? [];
    case 'int64': return t.int64Data ?? [];
    case 'uint32': case 'uint64': return t.uint64Data ?? [];
    // int32_data holds int8/16/32, uint8/16, bool and the bit patterns of float16/bfloat16.
    default: return t.int32Data ?? [];
  }
}

/** A typed array (or string[]) as a TensorProto: raw_data for numbers, string_data for strings. */
export function arrayToTensorProto(name: string, value: DecodedTensor): onnx.TensorProto {
  const { dtype, dims, data } = value;
  const t = onnx.TensorProto.create({ name, dataType: elemTypeFromDType(dtype), dims: [...dims] });
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) {
    throw new CleaveError(ErrorCode.CODEC_SHAPE_MISMATCH, `tensor '${name}' has ${data.length} values but dims ${JSON.stringify(dims)} need ${count}; pass data that matches the shape`);
  }
  if (dtype === 'string') {
    if (!Array.isArray(data)) throw new CleaveError(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}' is a string tensor; pass its data as string[]`);
    t.stringData = data.map((s) => Buffer.from(s, 'utf8'));
    return t;
  }
  if (Array.isArray(data)) throw new CleaveError(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}' is ${dtype}; pass its data as a typed array, not string[]`);
  const Ctor = CTOR[dtype];
  if (data.BYTES_PER_ELEMENT !== Ctor.BYTES_PER_ELEMENT) {
    throw new CleaveError(ErrorCode.CODEC_BAD_DTYPE, `tensor '${name}' is ${dtype} but its data is a ${data.constructor.name}; pass a ${Ctor.name}`);
  }
  t.rawData = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return t;
}

// ---------------------------------------------------------------- models

/** Decode and validate ONNX model bytes; with baseDir, external-data tensors are read into raw_data. */
export function decodeModel(bytes: Uint8Array, opts: { baseDir?: string } = {}): onnx.ModelProto {
  let m: onnx.ModelProto;
  try {
    m = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw invalid(`cannot decode ONNX protobuf (${(e as Error).message})`, e);
  }
  validate(m);
  if (opts.baseDir !== undefined) resolveExternalData(m, opts.baseDir);
  return m;
}

/** Read, decode and validate an .onnx file (external data resolved next to it). */
export async function loadModelFile(path: string): Promise<onnx.ModelProto> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new CleaveError(ErrorCode.MODEL_NOT_FOUND, `model file '${path}' does not exist; check the path`, { cause: e, details: { path } });
    }
    throw new CleaveError(ErrorCode.MODEL_NOT_FOUND, `cannot read model file '${path}' (${code ?? (e as Error).message}); check the path and its permissions`, { cause: e, details: { path } });
  }
  try {
    return decodeModel(bytes, { baseDir: dirname(resolve(path)) });
  } catch (e) {
    if (e instanceof CleaveError) e.details.path ??= path;
    throw e;
  }
}

/** Encode a model to protobuf bytes. */
export function encodeModel(m: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(m).finish();
}

function invalid(what: string, cause?: unknown): CleaveError {
  return new CleaveError(ErrorCode.MODEL_INVALID, `not a valid ONNX model: ${what}; pass an .onnx file exported by an ONNX exporter`, cause === undefined ? {} : { cause });
}

// Garbage bytes sometimes decode "successfully" into a message with junk fields; insist on the shape of a model.
function validate(m: onnx.ModelProto): void {
  if (!m.graph) throw invalid('no graph');
  const g = { node: m.graph.node ?? [], input: m.graph.input ?? [], output: m.graph.output ?? [], initializer: m.graph.initializer ?? [] };
  if (g.output.length === 0) throw invalid('the graph has no outputs');
  if (g.node.length === 0 && g.output.every((o) => !g.input.some((i) => i.name === o.name) && !g.initializer.some((t) => t.name === o.name))) {
    throw invalid('the graph has no nodes');
  }
  if (m.opsetImport.length === 0 && int64ToNumber(m.irVersion) >= 3) throw invalid('no opset_import');
  for (const o of g.output) if (!o.name) throw invalid('a graph output has no name');
  for (const n of g.node) {
    if (!n.opType || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(n.opType)) throw invalid(`a node has op_type '${String(n.opType).slice(0, 40)}'`);
  }
}

// ---------------------------------------------------------------- external data

/** Every TensorProto in a graph (initializers, sparse parts, attribute tensors), subgraphs included. */
export function* allTensors(g: onnx.IGraphProto): Generator<onnx.ITensorProto> {
  for (const t of g.initializer ?? []) yield t;
  for (const s of g.sparseInitializer ?? []) {
    if (s.values) yield s.values;
    if (s.indices) yield s.indices;
  }
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) yield a.t;
      for (const t of a.tensors ?? []) yield t;
      if (a.g) yield* allTensors(a.g);
      for (const sg of a.graphs ?? []) yield* allTensors(sg);
    }
  }
}

function resolveExternalData(m: onnx.ModelProto, baseDir: string): void {
  const files = new Map<string, Buffer>();
  const tensors = [...allTensors(m.graph!)];
  for (const f of m.functions ?? []) for (const n of f.node ?? []) for (const a of n.attribute ?? []) if (a.t) tensors.push(a.t);
  for (const t of tensors) {
    if (t.dataLocation !== DT_EXTERNAL) continue;
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = kv.get('location');
    if (!location) throw invalid(`tensor '${t.name ?? ''}' is marked EXTERNAL but has no 'location'`);
    const file = resolve(baseDir, location);
    const rel = relative(resolve(baseDir), file);
    if (isAbsolute(location) || rel.startsWith('..')) {
      throw new CleaveError(ErrorCode.MODEL_INVALID, `tensor '${t.name ?? ''}' points at external data '${location}' outside the model's folder; keep external data files next to the model`, { details: { tensor: t.name, location } });
    }
    let buf = files.get(file);
    if (!buf) {
      try {
        buf = readFileSync(file);
      } catch (e) {
        throw new CleaveError(ErrorCode.MODEL_MISSING_INITIALIZER, `external data file '${location}' for tensor '${t.name ?? ''}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); copy it next to the model`, { cause: e, details: { tensor: t.name, location } });
      }
      files.set(file, buf);
    }
    const offset = Number(kv.get('offset') ?? 0);
    const length = kv.has('length') ? Number(kv.get('length')) : buf.length - offset;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > buf.length) {
      throw new CleaveError(ErrorCode.MODEL_INVALID, `tensor '${t.name ?? ''}' asks for bytes ${offset}..${offset + length} of '${location}', which has ${buf.length}; the external data file does not match the model — re-export both together`, { details: { tensor: t.name, location } });
    }
    t.rawData = new Uint8Array(buf.subarray(offset, offset + length));
    t.externalData = [];
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
  }
}

// ---------------------------------------------------------------- node ids

/**
 * THE node-id rule: node.name when non-empty and unique in the graph, else `${op_type}_${index}`
 * (index in graph.node). A generated id that collides with a real name gets `_<k>` appended.
 */
export function nodeIds(graph: onnx.IGraphProto): string[] {
  const nodes = graph.node ?? [];
  const count = new Map<string, number>();
  for (const n of nodes) if (n.name) count.set(n.name, (count.get(n.name) ?? 0) + 1);
  const used = new Set<string>();
  const ids: (string | undefined)[] = nodes.map((n) => (n.name && count.get(n.name) === 1 ? n.name : undefined));
  for (const id of ids) if (id !== undefined) used.add(id);
  return ids.map((id, i) => {
    if (id !== undefined) return id;
    let gen = `${nodes[i].opType ?? 'Node'}_${i}`;
    for (let k = 1; used.has(gen); k++) gen = `${nodes[i].opType ?? 'Node'}_${i}_${k}`;
    used.add(gen);
    return gen;
  });
}
