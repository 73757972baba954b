import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from '../runtime/ort.js';
import { isCleaveError, ErrorCode } from '../protocols/errors.js';
import type { DType } from '../protocols/graph.js';
import {
  arrayToTensorProto, decodeModel, encodeModel, int64ToBigInt, loadModelFile, nodeIds, onnx, tensorProtoToArray,
  type DecodedTensor,
} from '../runtime/onnx/proto.js';
import { runModel, toOrtTensor } from '../runtime/onnx/conformance.js';
import { assertTensorEqual, compareTensors } from '../runtime/onnx/tensor-compare.js';

const CONV = '/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv2d';

const SAMPLES: Record<DType, DecodedTensor['data']> = {
  float32: new Float32Array([1.5, -2, NaN, Infinity, 0, 3.25]),
  float64: new Float64Array([1e300, -2, NaN, -Infinity, 0, Math.PI]),
  float16: new Uint16Array([0x3c00, 0xc000, 0x7e00, 0x7c00, 0, 0x3555]),
  bfloat16: new Uint16Array([0x3f80, 0xc000, 0x7fc0, 0x7f80, 0, 0x4049]),
  int8: new Int8Array([-128, 127, 0, 1, -1, 5]),
  int16: new Int16Array([-32768, 32767, 0, 1, -1, 5]),
  int32: new Int32Array([-2147483648, 2147483647, 0, 1, -1, 5]),
  int64: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, 1n, -1n, 9007199254740993n]),
  uint8: new Uint8Array([0, 255, 1, 2, 3, 4]),
  uint16: new Uint16Array([0, 65535, 1, 2, 3, 4]),
  uint32: new Uint32Array([0, 4294967295, 1, 2, 3, 4]),
  uint64: new BigUint64Array([0n, 2n ** 64n - 1n, 1n, 2n, 3n, 2n ** 53n + 1n]),
  bool: new Uint8Array([1, 0, 1, 1, 0, 0]),
  string: ['a', '', 'héllo', 'x y', '\u0000z', '🙂'],
};

function roundTrip(t: onnx.ITensorProto): DecodedTensor {
  return tensorProtoToArray(onnx.TensorProto.decode(onnx.TensorProto.encode(t).finish()));
}

function assertSameData(got: DecodedTensor, want: DecodedTensor): void {
  assert.equal(got.dtype, want.dtype);
  assert.deepEqual(got.dims, want.dims);
  assert.equal(got.data.constructor, want.data.constructor);
  // Bitwise equality (NaN payloads included) for typed arrays; value equality for strings.
  if (Array.isArray(want.data)) assert.deepEqual(got.data, want.data);
  else assert.deepEqual(Buffer.from((got.data as Uint8Array).buffer), Buffer.from((want.data as Uint8Array).buffer));
}

for (const [dtype, data] of Object.entries(SAMPLES) as [DType, DecodedTensor['data']][]) {
  test(`onnx proto - ${dtype} tensor survives arrayToTensorProto → encode → decode → tensorProtoToArray`, () => {
    const want: DecodedTensor = { dtype, dims: [2, 3], data };
    assertSameData(roundTrip(arrayToTensorProto('t', want)), want);
  });
}

test('onnx proto - typed *_data fields decode like raw_data', () => {
  const DT = onnx.TensorProto.DataType;
  const cases: [onnx.ITensorProto, DecodedTensor][] = [
    [{ dataType: DT.FLOAT, dims: [2], floatData: [1.5, -2] }, { dtype: 'float32', dims: [2], data: new Float32Array([1.5, -2]) }],
    [{ dataType: DT.DOUBLE, dims: [2], doubleData: [1e300, -2] }, { dtype: 'float64', dims: [2], data: new Float64Array([1e300, -2]) }],
    [{ dataType: DT.INT32, dims: [2], int32Data: [-7, 7] }, { dtype: 'int32', dims: [2], data: new Int32Array([-7, 7]) }],
    [{ dataType: DT.INT8, dims: [2], int32Data: [-128, 127] }, { dtype: 'int8', dims: [2], data: new Int8Array([-128, 127]) }],
    [{ dataType: DT.UINT16, dims: [2], int32Data: [65535, 1] }, { dtype: 'uint16', dims: [2], data: new Uint16Array([65535, 1]) }],
    [{ dataType: DT.BOOL, dims: [2], int32Data: [1, 0] }, { dtype: 'bool', dims: [2], data: new Uint8Array([1, 0]) }],
    [{ dataType: DT.FLOAT16, dims: [1], int32Data: [0x3c00] }, { dtype: 'float16', dims: [1], data: new Uint16Array([0x3c00]) }],
    [{ dataType: DT.BFLOAT16, dims: [1], int32Data: [0x3f80] }, { dtype: 'bfloat16', dims: [1], data: new Uint16Array([0x3f80]) }],
    [{ dataType: DT.INT64, dims: [2], int64Data: [-5, 2 ** 40] }, { dtype: 'int64', dims: [2], data: new BigInt64Array([-5n, 2n ** 40n]) }],
    [{ dataType: DT.UINT32, dims: [1], uint64Data: [4294967295] }, { dtype: 'uint32', dims: [1], data: new Uint32Array([4294967295]) }],
    [{ dataType: DT.UINT64, dims: [1], uint64Data: [2 ** 40] }, { dtype: 'uint64', dims: [1], data: new BigUint64Array([2n ** 40n]) }],
    [{ dataType: DT.STRING, dims: [2], stringData: [Buffer.from('ab'), Buffer.from('')] }, { dtype: 'string', dims: [2], data: ['ab', ''] }],
    [{ dataType: DT.FLOAT, dims: [], floatData: [3] }, { dtype: 'float32', dims: [], data: new Float32Array([3]) }],
    [{ dataType: DT.FLOAT, dims: [0, 4] }, { dtype: 'float32', dims: [0, 4], data: new Float32Array(0) }],
  ];
  for (const [proto, want] of cases) assertSameData(roundTrip(proto), want);
});

test('onnx proto - int64 fields convert exactly to bigint', () => {
  const t = roundTrip({ dataType: onnx.TensorProto.DataType.INT64, dims: [1], int64Data: [1] });
  assert.equal(t.dims[0], 1);
  const decoded = onnx.TensorProto.decode(onnx.TensorProto.encode({ dims: [2 ** 40 + 3] }).finish());
  assert.equal(int64ToBigInt(decoded.dims[0]), 2n ** 40n + 3n);
});

test('onnx proto - complex tensors and wrong byte counts fail with a typed error', () => {
  assert.throws(() => tensorProtoToArray({ dataType: onnx.TensorProto.DataType.COMPLEX64, dims: [1], floatData: [1, 2] }), (e) => isCleaveError(e, ErrorCode.MODEL_UNSUPPORTED));
  assert.throws(() => tensorProtoToArray({ dataType: 1, dims: [4], rawData: new Uint8Array(12) }), (e) => isCleaveError(e, ErrorCode.MODEL_INVALID) && /raw_data/.test(e.message));
  assert.throws(() => arrayToTensorProto('t', { dtype: 'float32', dims: [3], data: new Float32Array(2) }), (e) => isCleaveError(e, ErrorCode.CODEC_SHAPE_MISMATCH));
  assert.throws(() => arrayToTensorProto('t', { dtype: 'int64', dims: [1], data: new Float32Array(1) }), (e) => isCleaveError(e, ErrorCode.CODEC_BAD_DTYPE));
});

test('onnx proto - a real model decodes, re-encodes and decodes to the same graph', async () => {
  const m = await loadModelFile(join(CONV, 'model.onnx'));
  const again = decodeModel(encodeModel(m));
  assert.deepEqual(onnx.ModelProto.toObject(again), onnx.ModelProto.toObject(m));
  assert.ok(m.graph!.node!.length > 0);
});

function assertInvalid(bytes: Uint8Array, label: string): void {
  assert.throws(() => decodeModel(bytes), (e) => {
    assert.ok(isCleaveError(e, ErrorCode.MODEL_INVALID), `${label}: expected MODEL_INVALID, got ${String(e)}`);
    assert.match((e as Error).message, /pass an \.onnx file/);
    return true;
  });
}

test('onnx proto - truncated model bytes are MODEL_INVALID', async () => {
  const bytes = await readFile(join(CONV, 'model.onnx'));
  for (const frac of [0.1, 0.5, 0.9]) assertInvalid(bytes.subarray(0, Math.floor(bytes.length * frac)), `truncated to ${frac}`);
  assertInvalid(new Uint8Array(0), 'empty');
});

test('onnx proto - random bytes are MODEL_INVALID', () => {
  let s = 12345;
  const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
  for (let k = 0; k < 200; k++) {
    const len = 1 + (k * 37) % 4000;
    const b = new Uint8Array(len);
    for (let i = 0; i < len; i++) b[i] = rand();
    assertInvalid(b, `random #${k}`);
  }
});

test('onnx proto - a text file is MODEL_INVALID', () => {
  assertInvalid(new TextEncoder().encode('{"stages": [{"nodes": ["a", "b"]}]}\n'), 'json');
  assertInvalid(readFileSync(new URL('../runtime/onnx/proto.ts', import.meta.url)), 'typescript source');
});

test('onnx proto - a missing file is MODEL_NOT_FOUND', async () => {
  await assert.rejects(loadModelFile('/nonexistent/dir/model.onnx'), (e) => {
    assert.ok(isCleaveError(e, ErrorCode.MODEL_NOT_FOUND));
    assert.match((e as Error).message, /check the path/);
    return true;
  });
});

test('onnx proto - a model with external-data initializers loads and runs', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cleave-extdata-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const original = await loadModelFile(join(CONV, 'model.onnx'));
  const m = decodeModel(encodeModel(original));
  // Move every initializer's bytes into one side file, at 4096-aligned offsets, as onnx's save does.
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const init of m.graph!.initializer!) {
    const raw = Buffer.from(init.rawData!);
    const pad = Buffer.alloc((4096 - (offset % 4096)) % 4096);
    chunks.push(pad);
    offset += pad.length;
    init.externalData = [
      { key: 'location', value: 'weights.bin' },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    init.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    init.rawData = new Uint8Array(0);
    chunks.push(raw);
    offset += raw.length;
  }
  await writeFile(join(dir, 'weights.bin'), Buffer.concat(chunks));
  await writeFile(join(dir, 'model.onnx'), encodeModel(m));

  // Unresolved, the data is missing: a typed error, not garbage.
  const unresolved = decodeModel(await readFile(join(dir, 'model.onnx')));
  assert.throws(() => tensorProtoToArray(unresolved.graph!.initializer![0]), (e) => isCleaveError(e, ErrorCode.MODEL_MISSING_INITIALIZER));

  const loaded = await loadModelFile(join(dir, 'model.onnx'));
  for (const [i, init] of loaded.graph!.initializer!.entries()) {
    assert.equal(init.dataLocation, onnx.TensorProto.DataLocation.DEFAULT);
    assert.deepEqual(Buffer.from(init.rawData!), Buffer.from(original.graph!.initializer![i].rawData!));
  }
  const input = tensorProtoToArray(onnx.TensorProto.decode(await readFile(join(CONV, 'test_data_set_0/input_0.pb'))));
  const expected = tensorProtoToArray(onnx.TensorProto.decode(await readFile(join(CONV, 'test_data_set_0/output_0.pb'))));
  const out = await runModel(encodeModel(loaded), { [loaded.graph!.input![0].name!]: toOrtTensor(input) });
  assertTensorEqual(out[loaded.graph!.output![0].name!], expected);

  // A missing side file is a typed error that says what to do.
  await rm(join(dir, 'weights.bin'));
  await assert.rejects(loadModelFile(join(dir, 'model.onnx')), (e) => isCleaveError(e, ErrorCode.MODEL_MISSING_INITIALIZER) && /copy it next to the model/.test((e as Error).message));
});

test('onnx proto - node ids: unique names kept, empty or duplicate names become op_index', () => {
  const g: onnx.IGraphProto = {
    node: [
      { name: 'conv', opType: 'Conv' },
      { name: '', opType: 'Relu' },
      { name: 'dup', opType: 'Add' },
      { name: 'dup', opType: 'Mul' },
      { opType: 'Relu' },
      { name: 'Relu_4', opType: 'Sigmoid' },
    ],
  };
  assert.deepEqual(nodeIds(g), ['conv', 'Relu_1', 'Add_2', 'Mul_3', 'Relu_4_1', 'Relu_4']);
});

test('tensor compare - dtype, then dims, then data with tolerance and NaN rules', () => {
  const f = (data: number[], dims = [data.length]) => ({ dtype: 'float32' as const, dims, data: new Float32Array(data) });
  assert.equal(compareTensors(f([1, NaN, Infinity]), f([1, NaN, Infinity])).ok, true);
  assert.equal(compareTensors(f([1, 2]), f([1, 2.001])).ok, true); // within rtol 1e-3
  assert.deepEqual(pick(compareTensors(f([1, 2]), f([1, 2.01]))), { ok: false, reason: 'data', index: 1 });
  assert.deepEqual(pick(compareTensors(f([NaN]), f([0]))), { ok: false, reason: 'data', index: 0 });
  assert.deepEqual(pick(compareTensors(f([Infinity]), f([-Infinity]))), { ok: false, reason: 'data', index: 0 });
  assert.deepEqual(pick(compareTensors(f([1, 2], [2, 1]), f([1, 2]))), { ok: false, reason: 'dims', index: undefined });
  assert.deepEqual(pick(compareTensors({ dtype: 'float64', dims: [1], data: new Float64Array([1]) }, f([1]))), { ok: false, reason: 'dtype', index: undefined });
  const ortInt = new ort.Tensor('int64', new BigInt64Array([1n, 2n]), [2]);
  assert.equal(compareTensors(ortInt, { dtype: 'int64', dims: [2], data: new BigInt64Array([1n, 2n]) }).ok, true);
  assert.equal(compareTensors(ortInt, { dtype: 'int64', dims: [2], data: new BigInt64Array([1n, 3n]) }, { rtol: 1, atol: 1 }).ok, false, 'integers are exact');
  assert.equal(compareTensors({ dtype: 'float16', dims: [1], data: new Uint16Array([0x3c00]) }, { dtype: 'float16', dims: [1], data: new Uint16Array([0x3c01]) }).ok, true);
  assert.throws(() => assertTensorEqual(f([1]), f([2]), undefined, 'y'), { name: 'AssertionError', message: /^y: element 0/ });
});

function pick(r: ReturnType<typeof compareTensors>): { ok: boolean; reason?: string; index?: number } {
  return r.ok ? { ok: true } : { ok: false, reason: r.reason, index: r.index };
}

test('onnx proto - fields newer than onnx-proto (function defaults, overloads, metadata) survive decode and encode', () => {
  // The TS types stop at ONNX 1.10; the codec follows the vendored current schema.
  const fn = {
    name: 'scaled', domain: 'local', overload: 'v2', input: ['x'], output: ['y'], attribute: [],
    attributeProto: [{ name: 'alpha', type: onnx.AttributeProto.AttributeType.FLOAT, f: 2 }],
    valueInfo: [{ name: 'x', type: { tensorType: { elemType: 1 } } }],
    node: [{ opType: 'Mul', input: ['x', 'x'], output: ['y'] }],
    opsetImport: [{ domain: '', version: 18 }],
  };
  const model = {
    irVersion: 10, opsetImport: [{ domain: '', version: 18 }, { domain: 'local', version: 1 }], functions: [fn],
    graph: {
      name: 'g', input: [{ name: 'a', type: { tensorType: { elemType: 1 } } }], output: [{ name: 'b', type: { tensorType: { elemType: 1 } } }],
      node: [{ opType: 'scaled', domain: 'local', overload: 'v2', input: ['a'], output: ['b'], metadataProps: [{ key: 'k', value: 'v' }] }],
      metadataProps: [{ key: 'graph', value: 'meta' }],
    },
  } as unknown as onnx.IModelProto;
  const back = onnx.ModelProto.toObject(decodeModel(encodeModel(model))) as Record<string, any>;
  assert.equal(back.functions[0].overload, 'v2');
  assert.equal(back.functions[0].attributeProto[0].f, 2);
  assert.equal(back.functions[0].valueInfo[0].name, 'x');
  assert.equal(back.graph.node[0].overload, 'v2');
  assert.deepEqual(back.graph.node[0].metadataProps, [{ key: 'k', value: 'v' }]);
  assert.deepEqual(back.graph.metadataProps, [{ key: 'graph', value: 'meta' }]);
});

test('onnx proto - every libonnx-testdata model and PP-OCRv4 det re-encode byte for byte', async () => {
  const { listCases, OCR_DET_MODEL } = await import('../runtime/onnx/conformance.js');
  const files = [...listCases().map((c) => join(c.dir, 'model.onnx')), OCR_DET_MODEL];
  let checked = 0;
  for (const f of files) {
    let bytes: Buffer;
    try { bytes = readFileSync(f); } catch { continue; }
    const m = decodeModel(bytes);
    assert.ok(m instanceof onnx.ModelProto && m.graph instanceof onnx.GraphProto, `${f}: decoded as onnx-proto classes`);
    assert.ok(Buffer.from(encodeModel(m)).equals(bytes), `${f}: re-encoded bytes differ`);
    checked++;
  }
  assert.ok(checked === 0 || checked > 1000 || files.length < 1000, `${checked} models checked`);
});
