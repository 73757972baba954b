// Multi-process pipeline inference: real nats-server, every actor its own process, real onnxruntime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import ort from '../runtime/ort.js';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { suiteServer, suiteConnection, onCleanup } from './helpers/nats.js';
import { startLocalDeployment } from '../runtime/local-deployment.js';
import { deployModelFile, undeploy } from '../runtime/pipeline/deploy.js';
import { InferenceClient } from '../runtime/pipeline/client.js';
import { sampleInputs } from '../runtime/cli/commands/infer.js';
import { toOrtTensor, fromOrtTensor } from '../runtime/executor/ort-tensors.js';
import { compareTensors } from '../runtime/onnx/tensor-compare.js';
import { controlRequest, listActors } from '../runtime/actor/client.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { Role, Stream, Subject, Header } from '../protocols/subjects.js';
import { workSubject, type Deployment } from '../protocols/deployment.js';
import { tensor, type Tensor } from '../protocols/tensor-codec.js';
import { OCR_DET_MODEL } from '../runtime/onnx/conformance.js';

const server = await suiteServer();
const nc = await suiteConnection(server.url);
const home = mkdtempSync(join(tmpdir(), 'cleave-pipeline-'));
const dep = await startLocalDeployment({
  servers: [server.url],
  dataDir: home,
  writeRunFile: false,
  executors: 3,
  roles: [Role.GRAPH_ANALYZER, Role.PLANNER, Role.COORDINATOR],
});
onCleanup(async () => {
  await dep.stop();
  rmSync(home, { recursive: true, force: true });
});

async function reference(model: string, inputs: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const s = await ort.InferenceSession.create(await readFile(model), { intraOpNumThreads: 1 });
  try {
    const out = await s.run(Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, toOrtTensor(k, t)])));
    return Object.fromEntries(s.outputNames.map((n) => [n, fromOrtTensor(n, out[n]!)]));
  } finally {
    await s.release();
  }
}

function assertClose(got: Record<string, Tensor>, want: Record<string, Tensor>, atol = 1e-4): void {
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    assert.ok(g, `missing output ${name}`);
    const cmp = compareTensors({ ...g, dims: g.shape }, { ...w, dims: w.shape }, { rtol: 0, atol });
    assert.ok(cmp.ok, `${name}: ${cmp.ok ? '' : cmp.message}`);
  }
}

async function runAll(d: Deployment, model: string, n: number, shapes: Record<string, number[]> = {}, client?: InferenceClient) {
  const c = client ?? (await InferenceClient.open(nc, d.run, { maxInFlight: 4, timeoutMs: 60_000 }));
  try {
    const inputs = Array.from({ length: n }, (_, i) => sampleInputs(d.inputs, shapes, i));
    const results = await Promise.all(inputs.map((x) => c.infer(x)));
    for (let i = 0; i < n; i++) assertClose(results[i]!.outputs, await reference(model, inputs[i]!));
    return results;
  } finally {
    if (!client) await c.close();
  }
}

test('pipeline - PP-OCRv4 det across three executor processes equals single-process onnxruntime', async () => {
  const d = await deployModelFile(nc, OCR_DET_MODEL, {
    inputs: { x: [1, 3, 320, 320] },
    // Three stages whatever the planner would prefer on this loaded test machine.
    constraints: { boundaries: [200, 450] },
    replicas: 'none',
  });
  try {
    assert.equal(d.stages.length, 3);
    assert.equal(new Set(d.stages.flatMap((s) => s.executors)).size, 3);
    const c = await InferenceClient.open(nc, d.run, { maxInFlight: 4, timeoutMs: 60_000 });
    try {
      const results = await runAll(d, OCR_DET_MODEL, 4, { x: [1, 3, 320, 320] }, c);
      for (const r of results) {
        assert.deepEqual(r.hops.map((h) => h.stage), [0, 1, 2]);
        assert.equal(new Set(r.hops.map((h) => h.executor)).size, 3);
        assert.ok(r.hops.every((h) => h.inBytes > 0 && h.outBytes > 0));
      }
      // Everything is on one host here: the tensors went through shared memory, only references through NATS.
      assert.deepEqual(c.sent, { sharedMemory: 4, inline: 0 });
      const jsm = await jetstreamManager(nc);
      const work = await jsm.streams.info(Stream.WORK);
      assert.ok(work.state.bytes < 1024 * 1024, `work messages carry references, not tensors (${work.state.bytes} bytes)`);
    } finally {
      await c.close();
    }
  } finally {
    await undeploy(nc, d.run);
  }
});

test('pipeline - stages on two hosts (two shared-memory domains): small frames cross inline, large ones are fetched over NATS; losing a host loses no request', async () => {
  const other = mkdtempSync(join(tmpdir(), 'cleave-otherhost-'));
  onCleanup(() => rmSync(other, { recursive: true, force: true }));
  await dep.addActor(Role.EXECUTOR, 'executor-far', { CLEAVE_SHM_DIR: other });
  const stats = (id: string) => controlRequest<{ sentShared?: number; sentInline?: number }>(nc, Role.EXECUTOR, id, { type: 'stats' });
  // 160x160: every frame is under the inline limit (input 0.3 MB, cut ~0.5 MB, result 0.1 MB). Within
  // a host it goes through the pool; to a reader on the other host, inline.
  {
    const d = await deployModelFile(nc, OCR_DET_MODEL, { inputs: { x: [1, 3, 160, 160] }, replicas: 'none', constraints: { boundaries: [300] }, maxStages: 2, executors: ['executor-1', 'executor-far'] });
    const c = await InferenceClient.open(nc, d.run, { maxInFlight: 3, timeoutMs: 90_000 });
    try {
      const far = d.stages.findIndex((s) => s.executors[0] === 'executor-far');
      assert.ok(far >= 0);
      assert.deepEqual(d.stages.map((s) => s.domains!.length), [1, 1]);
      assert.notDeepEqual(d.stages[0]!.domains, d.stages[1]!.domains);
      await runAll(d, OCR_DET_MODEL, 4, { x: [1, 3, 160, 160] }, c);
      const [s1, sFar] = [await stats('executor-1'), await stats('executor-far')];
      // The far executor's readers (executor-1, or the client) are all on this host: inline.
      assert.deepEqual([sFar.sentShared, sFar.sentInline], [0, 4]);
      if (far === 0) {
        assert.deepEqual(c.sent, { sharedMemory: 0, inline: 4 });
        assert.deepEqual([s1.sentShared, s1.sentInline], [4, 0], 'the last stage shares a host with the client');
      } else {
        assert.deepEqual(c.sent, { sharedMemory: 4, inline: 0 });
        assert.deepEqual([s1.sentShared, s1.sentInline], [0, 4], 'stage 0 sends to the other host');
      }
    } finally {
      await c.close();
      await undeploy(nc, d.run);
    }
  }
  // 640x640: the input (4.9 MB) and the cut (~8.6 MB) stay in their producer's pool and the executor
  // on the other host fetches what it reads.
  const d = await deployModelFile(nc, OCR_DET_MODEL, { inputs: { x: [1, 3, 640, 640] }, replicas: 'none', constraints: { boundaries: [300] }, maxStages: 2, executors: ['executor-1', 'executor-far'], ackWaitMs: 2000 });
  const c = await InferenceClient.open(nc, d.run, { maxInFlight: 3, timeoutMs: 90_000 });
  try {
    assert.deepEqual(d.stages.map((s) => s.executors.length), [1, 1]);
    assert.ok(d.stages.some((s) => s.executors[0] === 'executor-far'));
    await runAll(d, OCR_DET_MODEL, 2, { x: [1, 3, 640, 640] }, c);
    assert.deepEqual(c.sent, { sharedMemory: 2, inline: 0 });
    const stage0 = await stats(d.stages[0]!.executors[0]!);
    assert.ok(stage0.sentShared! >= 2, `stage 0 left its 8.6 MB outputs in its pool (${JSON.stringify(stage0)})`);
    // Then the other host goes down with work in flight: the requests fail at that stage or go back to
    // its queue, the client sends failed ones again, and the coordinator gives the orphaned stage to an
    // idle executor. Nothing is lost; each request is answered once.
    const farStage = d.stages.findIndex((s) => s.executors[0] === 'executor-far');
    const inputs = Array.from({ length: 16 }, (_, i) => sampleInputs(d.inputs, { x: [1, 3, 640, 640] }, 50 + i));
    const pending = inputs.map((x) => c.infer(x));
    await Promise.race(pending); // mid-run: the first answer is back, the rest are in flight
    process.kill(dep.actors.find((a) => a.id === 'executor-far')!.pid, 'SIGKILL');
    const results = await Promise.all(pending);
    assert.equal(new Set(results.map((r) => r.req)).size, 16);
    const takenOver = results.filter((r) => r.hops.find((h) => h.stage === farStage)!.executor !== 'executor-far');
    assert.ok(takenOver.length > 0, 'requests in flight at the loss were served by the executor that took the stage over');
    for (const i of [0, 15]) assertClose(results[i]!.outputs, await reference(OCR_DET_MODEL, inputs[i]!));
  } finally {
    await c.close();
    await undeploy(nc, d.run).catch(() => {});
  }
});

test('pipeline - concurrent callers never have more requests in flight than the client allows', async () => {
  const model = CONFORMANCE[1]![0];
  const d = await deployModelFile(nc, model, { replicas: 'none', maxStages: 2 });
  const c = await InferenceClient.open(nc, d.run, { maxInFlight: 3, timeoutMs: 60_000 });
  try {
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, c.inFlight)), 1);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => c.infer(sampleInputs(d.inputs, {}, i)).then((r) => { most = Math.max(most, c.inFlight); return r; })));
    clearInterval(watch);
    assert.equal(results.length, 20);
    assert.ok(most <= 3 && most >= 2, `at most 3 in flight (saw ${most})`);
  } finally {
    await c.close();
    await undeploy(nc, d.run);
  }
});

// Multi-node models of Debian's libonnx-testdata, with the cuts that make three stages of each.
const CONFORMANCE: [string, number[]][] = [
  ['/usr/share/libonnx-testdata/data/node/test_layer_normalization_4d_axis1_expanded/model.onnx', [10, 20]],
  ['/usr/share/libonnx-testdata/data/node/test_mvn_expanded/model.onnx', [4, 8]],
  ['/usr/share/libonnx-testdata/data/node/test_dynamicquantizelinear_expanded/model.onnx', [5, 10]],
];

test('pipeline - conformance models split into several stages give the unsplit outputs', async () => {
  for (const [k, [model, boundaries]] of CONFORMANCE.entries()) {
    const d = await deployModelFile(nc, model, { replicas: 'none', constraints: { boundaries } });
    try {
      assert.equal(d.stages.length, 3, `${model} has ${d.stages.length} stage(s)`);
      // One of them with a client that keeps every tensor on NATS (as one on another host would).
      const inline = k === 0 ? await InferenceClient.open(nc, d.run, { sharedMemory: false }) : undefined;
      await runAll(d, model, 3, {}, inline);
      if (inline) {
        assert.deepEqual(inline.sent, { sharedMemory: 0, inline: 3 });
        await inline.close();
      }
    } finally {
      await undeploy(nc, d.run);
    }
  }
});

test('pipeline - bad inputs are refused before they enter the pipeline', async () => {
  const d = await deployModelFile(nc, OCR_DET_MODEL, { inputs: { x: [1, 3, 64, 64] }, replicas: 'none', maxStages: 2 });
  const c = await InferenceClient.open(nc, d.run);
  try {
    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info(Stream.WORK, { subjects_filter: workSubject(d.run, d.epoch, 0) })).state.messages;
    const good = new Float32Array(3 * 64 * 64);
    const cases: [Record<string, Tensor>, RegExp][] = [
      [{ image: tensor('float32', [1, 3, 64, 64], good) }, /missing x; unknown image/],
      [{ x: tensor('float64', [1, 3, 64, 64], new Float64Array(3 * 64 * 64)) }, /'x' is float64 but the model takes float32/],
      [{ x: tensor('float32', [3, 64, 64], good) }, /rank 3.*rank 4/],
      [{ x: tensor('float32', [1, 4, 32, 24], new Float32Array(4 * 32 * 24)) }, /has 4 at dim 1 but the model fixes it to 3/],
    ];
    for (const [inputs, msg] of cases) {
      await assert.rejects(c.infer(inputs), (e: unknown) => {
        assert.ok(e instanceof CleaveError);
        assert.equal(e.code, ErrorCode.INPUT_INVALID);
        assert.match(e.message, msg);
        return true;
      });
    }
    const afterCount = (await jsm.streams.info(Stream.WORK, { subjects_filter: workSubject(d.run, d.epoch, 0) })).state.messages;
    assert.equal(afterCount, before, 'nothing entered the pipeline');
    // A message that reaches a stage malformed is dead-lettered with its reason; the executor lives on.
    const js = jetstream(nc);
    const parkedBefore = (await jsm.streams.info(Stream.PARKED)).state.last_seq;
    await js.publish(workSubject(d.run, d.epoch, 0), new Uint8Array([1, 2, 3]));
    let parked;
    for (let i = 0; i < 100 && !parked; i++) {
      const m = await jsm.streams.getMessage(Stream.PARKED, { last_by_subj: Subject.parked(Role.EXECUTOR) }).catch(() => null);
      if (m && m.seq > parkedBefore) parked = m;
      else await sleep(100);
    }
    assert.ok(parked);
    assert.match(parked.header.get(Header.PARK_REASON), /stage 0/);
    const r = await c.infer({ x: tensor('float32', [1, 3, 64, 64], good) });
    assert.deepEqual(r.outputs['sigmoid_0.tmp_0']!.shape, [1, 1, 64, 64]);
  } finally {
    await c.close();
    await undeploy(nc, d.run);
  }
});

test('pipeline - a launched executor joins as a replica, and SIGKILL of a replica mid-run loses no request', async () => {
  const d = await deployModelFile(nc, OCR_DET_MODEL, { inputs: { x: [1, 3, 128, 128] }, replicas: 'none', maxStages: 1, ackWaitMs: 2000, executors: ['executor-1'] });
  const c = await InferenceClient.open(nc, d.run, { maxInFlight: 6, timeoutMs: 60_000 });
  try {
    assert.equal(d.stages.length, 1);
    // Scaling is launching a process: the coordinator gives the new executor the stage that needs it.
    await dep.addActor(Role.EXECUTOR, 'executor-4');
    let runs: { run: string; stages: { executors: string[] }[] }[] = [];
    for (let i = 0; i < 100; i++) {
      runs = await controlRequest(nc, Role.COORDINATOR, undefined, { type: 'runs' });
      if (runs.find((r) => r.run === d.run)?.stages[0]!.executors.includes('executor-4')) break;
      await sleep(100);
    }
    assert.deepEqual(runs.find((r) => r.run === d.run)!.stages[0]!.executors.sort(), ['executor-1', 'executor-4']);
    // Replicas share the stage's consumer: both serve a batch.
    const warm = await Promise.all(Array.from({ length: 16 }, (_, i) => c.infer(sampleInputs(d.inputs, { x: [1, 3, 128, 128] }, 100 + i))));
    assert.deepEqual([...new Set(warm.map((r) => r.hops[0]!.executor))].sort(), ['executor-1', 'executor-4']);
    const n = 24;
    const inputs = Array.from({ length: n }, (_, i) => sampleInputs(d.inputs, { x: [1, 3, 128, 128] }, i));
    const pending = inputs.map((x) => c.infer(x));
    await sleep(300);
    const victim = dep.actors.find((a) => a.id === 'executor-4')!;
    process.kill(victim.pid, 'SIGKILL');
    const results = await Promise.all(pending);
    assert.equal(results.length, n);
    assert.equal(new Set(results.map((r) => r.req)).size, n, 'each request answered exactly once');
    for (let i = 0; i < n; i += 6) assertClose(results[i]!.outputs, await reference(OCR_DET_MODEL, inputs[i]!));
    const servedBy = new Set(results.map((r) => r.hops[0]!.executor));
    assert.ok(servedBy.has('executor-1'));
  } finally {
    await c.close();
    await undeploy(nc, d.run).catch(() => {});
  }
});

test('pipeline - cleave infer --compare --json on the running cluster reports the run', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const model = CONFORMANCE[1]![0];
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/cleave.js', 'infer', model, '--requests', '5', '--compare', '--json', '--max-stages', '2'], {
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, NATS_URL: server.url },
    timeout: 120_000,
  });
  const r = JSON.parse(stdout) as { runId: string; requests: number; completed: number; maxAbsDiff: number; throughputPerSec: number; stages: { index: number; executors: string[] }[] };
  assert.match(r.runId, /^run-/);
  assert.equal(r.requests, 5);
  assert.equal(r.completed, 5);
  assert.ok(r.maxAbsDiff <= 1e-4, `maxAbsDiff ${r.maxAbsDiff}`);
  assert.ok(r.throughputPerSec > 0);
  assert.ok(r.stages.length >= 1 && r.stages.every((s) => s.executors.length >= 1));
});

test('pipeline - a stage whose only executor is SIGKILLed is re-assigned to an idle executor and loses no request', async () => {
  const solo = dep.actors.find((a) => a.id === 'executor-3')!;
  const d = await deployModelFile(nc, OCR_DET_MODEL, { inputs: { x: [1, 3, 320, 320] }, replicas: 'none', maxStages: 1, ackWaitMs: 2000, executors: ['executor-3'] });
  const c = await InferenceClient.open(nc, d.run, { maxInFlight: 4, timeoutMs: 90_000 });
  try {
    const inputs = Array.from({ length: 40 }, (_, i) => sampleInputs(d.inputs, { x: [1, 3, 320, 320] }, 200 + i));
    const pending = inputs.map((x) => c.infer(x));
    await sleep(200);
    process.kill(solo.pid, 'SIGKILL');
    const results = await Promise.all(pending).catch(async (e: Error) => {
      // Say what the cluster looked like, for diagnosis.
      const roster = (await listActors(nc)).map((a) => `${a.id}:${a.state}`).join(' ');
      const runs = await controlRequest(nc, Role.COORDINATOR, undefined, { type: 'runs' }).catch(() => 'no answer');
      throw new Error(`${e.message}\nroster: ${roster}\nruns: ${JSON.stringify(runs)}`);
    });
    assert.equal(new Set(results.map((r) => r.req)).size, 40, 'each request answered exactly once');
    const after = new Set(results.map((r) => r.hops[0]!.executor));
    assert.ok([...after].some((e) => e !== 'executor-3'), `a surviving executor took over (served by ${[...after]})`);
    assertClose(results[39]!.outputs, await reference(OCR_DET_MODEL, inputs[39]!));
  } finally {
    await c.close();
    await undeploy(nc, d.run).catch(() => {});
  }
});
