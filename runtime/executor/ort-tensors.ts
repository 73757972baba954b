// Conversion between the codec `Tensor` and onnxruntime-node's `ort.Tensor`, and the dtype rules of ORT.
// Both directions share the data array (no copy); shapes are copied.
import ort from '../ort.js';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { DType, Dim } from '../../protocols/graph.js';
import type { Tensor, TensorData } from '../../protocols/tensor-codec.js';

/** The codec dtypes onnxruntime-node 1.30 accepts as feeds and returns as outputs (not bfloat16). */
export type OrtDType = Exclude<DType, 'bfloat16'>;

const ORT_ARRAY: Readonly<Record<OrtDType, string>> = {
  float32: 'Float32Array', float64: 'Float64Array', float16: 'Uint16Array',
  int8: 'Int8Array', int16: 'Int16Array', int32: 'Int32Array', int64: 'BigInt64Array',
  uint8: 'Uint8Array', uint16: 'Uint16Array', uint32: 'Uint32Array', uint64: 'BigUint64Array',
  bool: 'Uint8Array', string: 'string[]',
};

export function isOrtDType(d: unknown): d is OrtDType {
  return typeof d === 'string' && Object.hasOwn(ORT_ARRAY, d);
}

/** Throws INPUT_INVALID, naming the tensor, when onnxruntime cannot take `dtype`. */
export function assertOrtDType(name: string, dtype: unknown): asserts dtype is OrtDType {
  if (isOrtDType(dtype)) return;
  const hint = dtype === 'bfloat16'
    ? 'onnxruntime-node has no bfloat16 tensors; cast it to float32 (or float16) before this stage, or re-export the partition with a float32 input'
    : `use one of ${Object.keys(ORT_ARRAY).join(', ')}`;
  throw new CleaveError(ErrorCode.INPUT_INVALID, `tensor '${name}' has dtype ${String(dtype)}, which onnxruntime cannot take; ${hint}`, { details: { tensor: name, dtype } });
}

/**
 * Throws INPUT_INVALID, naming the tensor, unless `t` is a well-formed tensor ORT can take: a supported
 * dtype, the array type the codec uses for it, and as many elements as the shape holds.
 */
export function checkOrtTensor(name: string, t: Tensor): asserts t is Tensor & { dtype: OrtDType } {
  const fail = (why: string): never => {
    throw new CleaveError(ErrorCode.INPUT_INVALID, `tensor '${name}' ${why}`, { details: { tensor: name } });
  };
  if (t === null || typeof t !== 'object') fail('is not a { dtype, shape, data } object');
  assertOrtDType(name, t.dtype);
  if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    fail(`has shape ${JSON.stringify(t.shape)}; dims must be non-negative integers`);
  }
  const want = ORT_ARRAY[t.dtype];
  const got = t.dtype === 'string' ? (Array.isArray(t.data) ? 'string[]' : arrayTag(t.data)) : arrayTag(t.data);
  if (got !== want) fail(`is ${t.dtype} and needs a ${want} as data, got ${got ?? typeof t.data}`);
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) fail(`has shape [${t.shape.join(',')}] (${count} elements) but ${t.data.length} data elements`);
}

/**
 * The codec tensor as an `ort.Tensor` over the same data (no copy). Call checkOrtTensor first when
 * the tensor comes from outside: this only refuses dtypes ORT lacks.
 */
export function toOrtTensor(name: string, t: Tensor): ort.Tensor {
  assertOrtDType(name, t.dtype);
  // ORT's constructor picks the element type from the dtype string; Uint16Array is its float16 carrier.
  return new ort.Tensor(t.dtype, t.data as ort.Tensor.DataTypeMap[OrtDType], t.shape);
}

/**
 * An `ort.Tensor` (CPU) as a codec tensor over the same data (no copy). float16 comes back as a
 * Uint16Array of raw bits even on runtimes where ORT hands out a Float16Array. int4/uint4 and
 * non-CPU tensors are refused with MODEL_UNSUPPORTED.
 */
export function fromOrtTensor(name: string, t: ort.Tensor): Tensor {
  const dtype = t.type as string;
  if (!isOrtDType(dtype)) {
    throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `output '${name}' has element type ${dtype}, which Cleave tensors cannot carry; cast it to int8/uint8 (or float32) in the model`, { details: { tensor: name, dtype } });
  }
  if (t.location !== 'cpu') {
    throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `output '${name}' lives on '${t.location}', not the CPU; run the partition with the CPU execution provider`, { details: { tensor: name } });
  }
  let data = t.data as TensorData | ArrayBufferView;
  if (dtype === 'float16' && arrayTag(data) !== 'Uint16Array') {
    const v = data as ArrayBufferView;
    data = new Uint16Array(v.buffer, v.byteOffset, v.byteLength / 2);
  }
  return { dtype, shape: t.dims.map(Number), data: data as TensorData };
}

/** Metadata of one model input or output, as onnxruntime reports it. */
export interface OrtValueInfo {
  name: string;
  /** Element type; undefined for non-tensor values (sequences, maps, optionals). */
  dtype?: OrtDType;
  /**
   * Dims as numbers, or symbolic names for dynamic dims (an unnamed dynamic dim is `<name>:<index>`,
   * as in the partition graph). Empty both for scalars and when the model declares no shape.
   */
  shape: Dim[];
}

/** ORT's ValueMetadata in Cleave's terms. */
export function valueInfoFromOrt(m: ort.InferenceSession.ValueMetadata): OrtValueInfo {
  if (!m.isTensor) return { name: m.name, shape: [] };
  const dtype = isOrtDType(m.type) ? m.type : undefined;
  return { name: m.name, dtype, shape: m.shape.map((d, i) => (typeof d === 'string' && d === '' ? `${m.name}:${i}` : d)) };
}

function arrayTag(v: unknown): string | undefined {
  // toStringTag survives worker realms and calls a Buffer a Uint8Array.
  return ArrayBuffer.isView(v) ? (v as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag] : undefined;
}

/**
 * Checks feeds against a partition's inputs (INPUT_INVALID: unknown or missing input, dtype ORT cannot
 * take or the model does not declare, rank or fixed dim that differs) and returns them as wire tensors
 * (same data).
 */
export function checkFeeds(inputs: readonly OrtValueInfo[], feeds: Record<string, Tensor>): WireTensor[] {
  if (feeds === null || typeof feeds !== 'object') throw new CleaveError(ErrorCode.INPUT_INVALID, 'feeds must be an object of named tensors');
  const wire: WireTensor[] = [];
  const wanted = new Map(inputs.map((m) => [m.name, m]));
  const names = inputs.map((m) => `'${m.name}'`).join(', ');
  for (const [name, t] of Object.entries(feeds)) {
    const info = wanted.get(name);
    if (!info) {
      throw new CleaveError(ErrorCode.INPUT_INVALID, `input '${name}' is not an input of this partition; it takes ${names}`, { details: { tensor: name } });
    }
    checkOrtTensor(name, t);
    if (info.dtype !== undefined && t.dtype !== info.dtype) {
      throw new CleaveError(ErrorCode.INPUT_INVALID, `input '${name}' is ${t.dtype} but the partition takes ${info.dtype}; cast it before sending`, { details: { tensor: name, dtype: t.dtype, expected: info.dtype } });
    }
    // An empty declared shape means either a scalar or no declared shape: check only declared ranks.
    if (info.shape.length > 0) {
      const dimsOk = t.shape.length === info.shape.length && info.shape.every((d, i) => typeof d !== 'number' || d === t.shape[i]);
      if (!dimsOk) {
        throw new CleaveError(ErrorCode.INPUT_INVALID, `input '${name}' has shape [${t.shape.join(',')}] but the partition takes [${info.shape.join(',')}]; reshape it (named dims may take any size)`, { details: { tensor: name, shape: t.shape, expected: info.shape } });
      }
    }
    wire.push({ name, dtype: t.dtype, shape: [...t.shape], data: t.data });
  }
  const missing = inputs.map((m) => m.name).filter((n) => !Object.hasOwn(feeds, n));
  if (missing.length > 0) {
    throw new CleaveError(ErrorCode.INPUT_INVALID, `missing input${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')}; feed every input of the partition`, { details: { missing } });
  }
  return wire;
}

/** A tensor crossing a thread boundary; numeric data travels in transferred (or shared) buffers. */
export interface WireTensor extends Tensor {
  name: string;
}

/**
 * The ArrayBuffers to transfer with `tensors` (postMessage's transfer list), so big tensors are moved,
 * not structured-cloned. A tensor whose typed array spans its whole ArrayBuffer is transferred (the
 * sender's array is detached afterwards); a view into a larger buffer (a decoded frame, a Buffer pool
 * slab) is replaced in `tensors` by a copy of just its bytes, made once, which is transferred; shared
 * memory crosses by reference. Strings are cloned.
 */
export function prepareTransfer(tensors: WireTensor[]): ArrayBuffer[] {
  const owned = new Set<ArrayBuffer>();
  const viewed = new Set<ArrayBufferLike>();
  for (const t of tensors) {
    if (Array.isArray(t.data)) continue;
    const d = t.data;
    if (d.buffer instanceof ArrayBuffer && d.byteOffset === 0 && d.byteLength === d.buffer.byteLength) owned.add(d.buffer);
    else viewed.add(d.buffer);
  }
  const transfer: ArrayBuffer[] = [];
  for (const t of tensors) {
    if (Array.isArray(t.data)) continue;
    const d = t.data;
    // Shared memory crosses by reference already; transferring would be refused.
    if (typeof SharedArrayBuffer !== 'undefined' && d.buffer instanceof SharedArrayBuffer) continue;
    if (owned.has(d.buffer as ArrayBuffer) && !viewed.has(d.buffer)) {
      if (!transfer.includes(d.buffer as ArrayBuffer)) transfer.push(d.buffer as ArrayBuffer);
      continue;
    }
    // A view into a larger buffer (a decoded frame, a Buffer pool slab): copy just its bytes, once.
    const copy = d.slice() as typeof d;
    t.data = copy;
    transfer.push(copy.buffer as ArrayBuffer);
  }
  return transfer;
}

