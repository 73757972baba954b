// The transfer measurements `cleave bench pipeline` proves its transfer goal with (bench/transfer.ts),
// over a real nats-server: a hop and raw core NATS, with the consumer in this process and in a peer
// process of its own, complete, count every frame, and leave no stream or pool file behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { suiteServer, suiteConnection, onCleanup } from './helpers/nats.js';
import { ShmPool } from '../runtime/shm/pool.js';
import { hopMBps, rawCoreMBps, TransferPeer } from '../bench/transfer.js';

const server = await suiteServer();
const nc = await suiteConnection(server.url);
const dir = mkdtempSync(join(tmpdir(), 'cleave-bench-shm-'));
onCleanup(() => rmSync(dir, { recursive: true, force: true }));
const pool = ShmPool.open({ dir })!;
const peer = await TransferPeer.start();
onCleanup(() => peer.stop());

const streams = async () => {
  const jsm = await jetstreamManager(nc);
  const names: string[] = [];
  for await (const s of jsm.streams.list()) names.push(s.config.name);
  return names.filter((n) => n.startsWith('BENCH_HOP_'));
};

test('bench transfer - raw core NATS and every hop path measure a throughput, consumer here or in a peer process', async () => {
  const count = 12;
  const got: Record<string, number> = {};
  for (const where of ['here', 'peer'] as const) {
    const p = where === 'peer' ? peer : undefined;
    got[`raw ${where}`] = await rawCoreMBps(server.url, 1, p, count);
    got[`stored ${where}`] = await hopMBps(nc, 1, { count, ...(p ? { peer: p } : {}) });
    got[`same host ${where}`] = await hopMBps(nc, 1, { count, pool, ...(p ? { peer: p } : {}) });
    got[`fetched ${where}`] = await hopMBps(nc, 1, { count, pool, remote: true, ...(p ? { peer: p } : {}) });
  }
  for (const [k, v] of Object.entries(got)) assert.ok(Number.isFinite(v) && v > 0, `${k}: ${v} MB/s`);
  assert.deepEqual(await streams(), [], 'every measurement deleted its stream');
  // Frames the consumers were done with went back to the pool's free list (none left live).
  assert.deepEqual(readdirSync(join(dir, 'live')), []);
});

test('bench transfer - a hop that fails rejects rather than hangs (its peer consumer is cancelled), and the peer serves the next one', async () => {
  // A pool whose directory is gone: the producer fails on its first frame, the peer is waiting.
  const missing = ShmPool.open({ dir: mkdtempSync(join(tmpdir(), 'cleave-bench-gone-')) })!;
  rmSync(missing.dir, { recursive: true, force: true });
  await assert.rejects(hopMBps(nc, 1, { count: 4, pool: missing, peer }));
  assert.ok((await hopMBps(nc, 1, { count: 4, peer })) > 0);
});
