// Frames of one host's shared memory read from "another host" over a real nats-server (two pools on
// two directories are two domains).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { suiteServer, suiteConnection, onCleanup } from './helpers/nats.js';
import { ShmPool, readerOf } from '../runtime/shm/pool.js';
import { fetchShmFrame, releaseRemoteShm, serveShmReads } from '../runtime/shm/remote.js';
import { tensor } from '../protocols/tensor-codec.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { followStageDomains, loadDeployment, saveDeployment } from '../runtime/pipeline/store.js';
import type { Deployment } from '../protocols/deployment.js';

const server = await suiteServer();
const producerConn = await suiteConnection(server.url);
const consumerConn = await suiteConnection(server.url);
const dirs = [mkdtempSync(join(tmpdir(), 'cleave-shm-a-')), mkdtempSync(join(tmpdir(), 'cleave-shm-b-'))];
onCleanup(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const hostA = ShmPool.open({ dir: dirs[0] })!;
const hostB = ShmPool.open({ dir: dirs[1] })!;
const service = serveShmReads(producerConn, hostA);
onCleanup(() => service.unsubscribe());
const isCode = (code: ErrorCode) => (e: unknown) => e instanceof CleaveError && e.code === code;

test('shm remote - a consumer on another host reads a multi-range frame over NATS, bit-exact', async () => {
  assert.notEqual(hostA.domain, hostB.domain);
  const n = 3 * 1024 * 1024 + 17; // 12 MB: three 4 MiB ranges and a tail
  const data = new Float32Array(n).map((_, i) => Math.sin(i));
  const ref = hostA.writeFrame({ t: tensor('float32', [n], data) });
  const got = (await fetchShmFrame(consumerConn, ref)).tensors.t!.data as Float32Array;
  assert.equal(got.length, n);
  assert.deepEqual(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(data.buffer));
  // Done with it: the consumer tells the producer's host, which recycles the file.
  releaseRemoteShm(consumerConn, ref);
  await consumerConn.flush();
  for (let i = 0; i < 50 && hostA.stats.released === 0; i++) await sleep(20);
  assert.equal(hostA.stats.released, 1);
  await assert.rejects(fetchShmFrame(consumerConn, ref), isCode(ErrorCode.FRAME_GONE));
});

test('shm remote - read blocks are recycled once written, and many frames fetched at once each arrive exact', async () => {
  // 24 frames of ~2.6 MB, each its own content, fetched 6 at a time: the service reuses the blocks the
  // socket has written, and a block reused too early would show as another frame's bytes (the CRC).
  const n = 650_001;
  const refs = Array.from({ length: 24 }, (_, k) => ({ k, ref: hostA.writeFrame({ t: tensor('float32', [n], new Float32Array(n).map((_, i) => Math.sin(i + k * 1000))) }) }));
  for (let at = 0; at < refs.length; at += 6) {
    await Promise.all(refs.slice(at, at + 6).map(async ({ k, ref }) => {
      const got = (await fetchShmFrame(consumerConn, ref)).tensors.t!.data as Float32Array;
      assert.equal(got[0], Math.fround(Math.sin(k * 1000)), `frame ${k}`);
      assert.equal(got[n - 1], Math.fround(Math.sin(n - 1 + k * 1000)), `frame ${k}`);
      releaseRemoteShm(consumerConn, ref);
    }));
  }
  assert.ok(service.keptBlockBytes >= 1024 * 1024, `blocks kept for reuse: ${service.keptBlockBytes}`);
  assert.ok(service.keptBlockBytes <= 32 * 1024 * 1024);
});

test('shm remote - the process that wrote a frame answers its reads; once it is gone, another process of its host does', async () => {
  // A second process of host A: its own pool (own reader token) on the same directory, its own service.
  const writerConn = await suiteConnection(server.url);
  const writer = ShmPool.open({ dir: dirs[0] })!;
  assert.equal(writer.domain, hostA.domain);
  assert.notEqual(writer.reader, hostA.reader);
  const writerService = serveShmReads(writerConn, writer);
  await writerConn.flush();
  // Who answered: the bytes each service's connection sent (a read is answered with the frame's bytes).
  const sent = () => ({ writer: writerConn.stats().outBytes, group: producerConn.stats().outBytes });
  try {
    const data = new Float32Array(300_000).map((_, i) => i);
    const ref = writer.writeFrame({ t: tensor('float32', [data.length], data) });
    assert.equal(readerOf(ref.name), writer.reader);
    let before = sent();
    assert.deepEqual((await fetchShmFrame(consumerConn, ref)).tensors.t!.data, data);
    let after = sent();
    assert.ok(after.writer - before.writer >= ref.bytes, 'the writer answered');
    assert.equal(after.group, before.group, 'the rest of the host was not asked');
    writerService.unsubscribe();
    await writerConn.flush();
    before = sent();
    assert.deepEqual((await fetchShmFrame(consumerConn, ref)).tensors.t!.data, data);
    after = sent();
    assert.ok(after.group - before.group >= ref.bytes, 'another process of the host answered');
    assert.equal(after.writer, before.writer);
    writer.release(ref);
  } finally {
    writerService.unsubscribe();
  }
});

test('shm remote - a frame of a host nobody answers for is NATS_UNAVAILABLE, named by its domain', async () => {
  const ref = hostB.writeFrame({ t: tensor('float32', [4], new Float32Array(4)) });
  await assert.rejects(fetchShmFrame(consumerConn, ref, 2000), (e: unknown) => isCode(ErrorCode.NATS_UNAVAILABLE)(e) && (e as Error).message.includes(hostB.domain));
});

test('shm remote - a frame whose file was recycled for another frame is FRAME_GONE, never the other frame', async () => {
  const first = hostA.writeFrame({ t: tensor('float32', [2 * 1024 * 1024], new Float32Array(2 * 1024 * 1024).fill(1)) });
  hostA.release(first);
  const reused = hostA.stats.reused;
  // The next frame claims the released file (same capacity class) under a new name and id.
  const second = hostA.writeFrame({ t: tensor('float32', [2 * 1024 * 1024 - 9], new Float32Array(2 * 1024 * 1024 - 9).fill(2)) });
  assert.equal(hostA.stats.reused, reused + 1);
  await assert.rejects(fetchShmFrame(consumerConn, first), isCode(ErrorCode.FRAME_GONE));
  const got = (await fetchShmFrame(consumerConn, second)).tensors.t!.data as Float32Array;
  assert.equal(got.length, 2 * 1024 * 1024 - 9);
  assert.ok(got.every((x) => x === 2));
  hostA.release(second);
});

test('shm remote - a malformed read is answered with BAD_MESSAGE, and the service keeps serving', async () => {
  const reply = await consumerConn.request(`cleave.shm.${hostA.domain}.read`, 'not json', { timeout: 2000 });
  assert.equal(reply.headers?.get('Cleave-Error-Code'), ErrorCode.BAD_MESSAGE);
  const bad = await consumerConn.request(`cleave.shm.${hostA.domain}.read`, JSON.stringify({ name: 'x', offset: -1, length: 4 }), { timeout: 2000 });
  assert.equal(bad.headers?.get('Cleave-Error-Code'), ErrorCode.BAD_MESSAGE);
  const ref = hostA.writeFrame({ t: tensor('float32', [4], new Float32Array([1, 2, 3, 4])) });
  assert.deepEqual(Array.from((await fetchShmFrame(consumerConn, ref)).tensors.t!.data as Float32Array), [1, 2, 3, 4]);
  hostA.release(ref);
});

test('shm remote - a producer\'s copy of a deployment follows the stage domains of its record', async () => {
  const d = { run: 'follow-test', epoch: 1, stages: [{ index: 0, executors: ['e1'], domains: ['A'] }, { index: 1, executors: ['e2'], domains: ['A'] }] } as unknown as Deployment;
  await saveDeployment(producerConn, d);
  const copy = await loadDeployment(consumerConn, d.run);
  const stop = followStageDomains(consumerConn, copy);
  try {
    d.stages[1]!.executors.push('e3');
    d.stages[1]!.domains = ['A', 'B'];
    await saveDeployment(producerConn, d);
    for (let i = 0; i < 100 && copy.stages[1]!.domains!.length < 2; i++) await sleep(20);
    assert.deepEqual(copy.stages.map((s) => s.domains), [['A'], ['A', 'B']]);
    assert.deepEqual(copy.stages[1]!.executors, ['e2'], 'only the domains are followed');
  } finally {
    stop();
  }
});
