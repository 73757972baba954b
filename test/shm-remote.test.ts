// Frames of one host's shared memory read from "another host" over a real nats-server (two pools on
// two directories are two domains), and the roster rule that decides when shared memory is used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { suiteServer, suiteConnection, onCleanup } from './helpers/nats.js';
import { ShmPool } from '../runtime/shm/pool.js';
import { fetchShmFrame, releaseRemoteShm, serveShmReads } from '../runtime/shm/remote.js';
import { allServersIn, PeerDomains } from '../runtime/shm/peers.js';
import { actorsBucket } from '../runtime/nats/topology.js';
import { tensor } from '../protocols/tensor-codec.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { ACTOR_TTL_MS } from '../protocols/subjects.js';

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

test('shm remote - a frame of a host nobody answers for is NATS_UNAVAILABLE, named by its domain', async () => {
  const ref = hostB.writeFrame({ t: tensor('float32', [4], new Float32Array(4)) });
  await assert.rejects(fetchShmFrame(consumerConn, ref, 2000), (e: unknown) => isCode(ErrorCode.NATS_UNAVAILABLE)(e) && (e as Error).message.includes(hostB.domain));
});

test('shm remote - shared memory only toward a stage whose every live server is on this host', () => {
  const now = 1_000_000;
  const p = (domain: string | undefined, stage: number, age = 0) => ({ domain, run: 'r', epoch: 1, stage, updatedAt: now - age });
  assert.equal(allServersIn([p('A', 1), p('A', 1)], 'A', 'r', 1, 1, now), true);
  assert.equal(allServersIn([p('A', 1), p('B', 1)], 'A', 'r', 1, 1, now), false, 'a replica elsewhere: inline');
  assert.equal(allServersIn([p(undefined, 1)], 'A', 'r', 1, 1, now), false, 'a server without shared memory: inline');
  assert.equal(allServersIn([p('B', 0)], 'A', 'r', 1, 1, now), false, 'nobody serves the stage yet: inline');
  assert.equal(allServersIn([p('A', 1), p('B', 1, ACTOR_TTL_MS + 1)], 'A', 'r', 1, 1, now), true, 'a server whose heartbeats stopped does not count');
  assert.equal(allServersIn([p('A', 1)], 'A', 'r', 2, 1, now), false, 'another epoch');
});

test('shm remote - PeerDomains follows the roster: a replica registering on another host turns shared memory off', async () => {
  const kv = await actorsBucket(producerConn);
  const record = (id: string, domain: string) => JSON.stringify({ role: 'executor', id, host: 'h', pid: 1, state: 'serving', startedAt: 0, updatedAt: 0, version: 't', capabilities: { shmDomain: domain, run: 'rp', epoch: 1, stage: 0 } });
  const peers = await PeerDomains.watch(consumerConn);
  onCleanup(() => peers.stop());
  await kv.put('executor.pa', record('pa', hostA.domain));
  for (let i = 0; i < 100 && !peers.allIn(hostA.domain, 'rp', 1, 0); i++) await sleep(20);
  assert.equal(peers.allIn(hostA.domain, 'rp', 1, 0), true);
  await kv.put('executor.pb', record('pb', hostB.domain));
  for (let i = 0; i < 100 && peers.allIn(hostA.domain, 'rp', 1, 0); i++) await sleep(20);
  assert.equal(peers.allIn(hostA.domain, 'rp', 1, 0), false);
  await kv.delete('executor.pb');
  for (let i = 0; i < 100 && !peers.allIn(hostA.domain, 'rp', 1, 0); i++) await sleep(20);
  assert.equal(peers.allIn(hostA.domain, 'rp', 1, 0), true, 'back to shared memory once it is gone');
  await kv.delete('executor.pa');
});
