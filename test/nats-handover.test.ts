// Handed-over buffers go to the socket as they are (runtime/nats/handover.ts), over a real nats-server:
// they arrive exact among messages that are packed as before, with and without headers, through core
// NATS and JetStream; a buffer not handed over is still copied, so its owner may reuse it at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { suiteServer, suiteConnection, publishTagged } from './helpers/nats.js';
import { handOver, handOverPatch, HANDOVER_MIN_BYTES, setHandOver } from '../runtime/nats/handover.js';
import { keptFrameBytes, publishWork } from '../runtime/nats/frames.js';
import { decodeFrame, tensor } from '../protocols/tensor-codec.js';
import { seededBytes } from '../runtime/random.js';

const server = await suiteServer();
const pub = await suiteConnection(server.url);
const sub = await suiteConnection(server.url);

const payload = seededBytes;

/** Records what `nc` hands its socket, for the duration of `fn`. */
async function written(nc: NatsConnection, fn: () => Promise<void>): Promise<Uint8Array[]> {
  // transport-node's send() goes through _send(), which the patch calls itself for buffers with onWritten.
  const transport = (nc as unknown as { protocol: { transport: { _send(b: Uint8Array): Promise<void> } } }).protocol.transport;
  const send = transport._send;
  const frames: Uint8Array[] = [];
  transport._send = function (b: Uint8Array) {
    frames.push(b);
    return send.call(this, b);
  };
  try {
    await fn();
  } finally {
    transport._send = send;
  }
  return frames;
}

test('nats hand-over - the patch is in place on this nats.js', () => {
  assert.equal(handOverPatch(), 'on');
});

test('nats hand-over - handed-over buffers are written uncopied and arrive exact between packed messages, headers or not', async () => {
  const sizes = [HANDOVER_MIN_BYTES - 1, HANDOVER_MIN_BYTES, 200_003, 1_048_576 + 7, 3_000_001];
  const sent: { data: Uint8Array; header?: string }[] = [];
  const handed: Uint8Array[] = [];
  const got: Msg[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const s = sub.subscribe('ho', { callback: (_e, m) => { got.push(m); if (got.length === sent.length) done(); } });
  await sub.flush();
  const frames = await written(pub, async () => {
    sizes.forEach((n, i) => {
      for (const withHeader of [false, true]) {
        const data = handOver(payload(n, i * 2 + Number(withHeader)));
        if (n >= HANDOVER_MIN_BYTES) handed.push(data);
        const header = withHeader ? `h${i}` : undefined;
        sent.push({ data, ...(header ? { header } : {}) });
        publishTagged(pub, 'ho', data, header);
        // Small ones and a large one not handed over, queued in the same flush.
        for (const small of [payload(17, 100 + i), payload(70_000, 200 + i)]) {
          sent.push({ data: small });
          pub.publish('ho', small);
        }
      }
    });
    await pub.flush();
  });
  await all;
  s.unsubscribe();
  got.forEach((m, k) => {
    assert.ok(Buffer.from(m.data).equals(Buffer.from(sent[k]!.data)), `message ${k} (${sent[k]!.data.byteLength} bytes): content`);
    assert.equal(m.headers?.get('Test') ?? undefined, sent[k]!.header, `message ${k}: header`);
  });
  assert.equal(got.length, sent.length);
  for (const h of handed) assert.ok(frames.includes(h), `a handed-over ${h.byteLength}-byte buffer went to the socket as it is`);
  assert.ok(!frames.some((f) => f.byteLength === 70_000), 'a buffer not handed over is packed with its neighbours');
});

test('nats hand-over - a buffer not handed over is copied when the connection flushes: its owner may overwrite it from then on', async () => {
  const data = payload(500_000, 7);
  const original = Uint8Array.from(data);
  const got = new Promise<Msg>((r) => { const s = sub.subscribe('reuse', { max: 1, callback: (_e, m) => r(m) }); void s; });
  await sub.flush();
  pub.publish('reuse', data);
  // nats.js flushes in a microtask queued by the publish (before this one); a large socket write is
  // still pending then, so only a copy keeps the bytes.
  await new Promise<void>((r) => queueMicrotask(r));
  data.fill(0);
  await pub.flush();
  assert.ok(Buffer.from((await got).data).equals(Buffer.from(original)));
});

test('nats hand-over - a work frame published to JetStream is handed over and stored exact', async () => {
  const jsm = await jetstreamManager(pub);
  await jsm.streams.add({ name: 'HO', subjects: ['ho.work'], retention: RetentionPolicy.Limits, storage: StorageType.Memory });
  const js = jetstream(pub);
  const values = new Float32Array(300_000).map((_, i) => Math.sin(i));
  const frames = await written(pub, async () => {
    const ack = await publishWork(pub, js, 'ho.work', { i: 1 }, { tensors: { t: tensor('float32', [300_000], values) } });
    assert.equal(ack.seq, 1);
  });
  assert.ok(frames.some((f) => f.byteLength > 1_200_000 && f.byteLength < 1_201_000), 'the encoded frame went to the socket on its own');
  const m = await jsm.streams.getMessage('HO', { seq: 1 });
  const t = decodeFrame(m!.data).tensors.t!;
  assert.deepEqual(t.data, values);
  await jsm.streams.delete('HO');
});

test('nats hand-over - a buffer is reported written once the socket has it: reused from then on, what arrives is what was sent', async () => {
  // Two 4 MB buffers recycled through 24 messages, each refilled as soon as its write is reported:
  // every message must arrive with its own content (4 MB is more than a loopback socket takes at
  // once, so writes are still in flight when a refill reported too early would land).
  const n = 4 * 1_048_576;
  const count = 24;
  const got: Msg[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const s = sub.subscribe('recycle', { callback: (_e, m) => { got.push(m); if (got.length === count) done(); } });
  await sub.flush();
  const free = [new Uint8Array(n), new Uint8Array(n)];
  const waiting: (() => void)[] = [];
  let reported = 0;
  for (let i = 0; i < count; i++) {
    while (free.length === 0) await new Promise<void>((r) => waiting.push(r));
    const b = free.pop()!;
    b.set(payload(n, 1000 + i));
    pub.publish('recycle', handOver(b, () => {
      reported++;
      free.push(b);
      waiting.shift()?.();
    }));
  }
  await pub.flush();
  await all;
  s.unsubscribe();
  got.forEach((m, i) => assert.ok(Buffer.from(m.data).equals(Buffer.from(payload(n, 1000 + i))), `message ${i}`));
  assert.equal(reported, count);
});

test('nats hand-over - no written report for a buffer that was not handed over (too small, or handing over off)', async () => {
  const calls: string[] = [];
  pub.publish('nobody', handOver(payload(HANDOVER_MIN_BYTES - 1, 1), () => calls.push('small')));
  setHandOver(false);
  try {
    pub.publish('nobody', handOver(payload(300_000, 2), () => calls.push('off')));
  } finally {
    setHandOver(true);
  }
  pub.publish('nobody', handOver(payload(300_000, 3), () => calls.push('on')));
  await pub.flush();
  assert.deepEqual(calls, ['on']);
});

test('nats hand-over - work frames published one after another reuse their encoded memory and are stored exact', async () => {
  const jsm = await jetstreamManager(pub);
  await jsm.streams.add({ name: 'HO_RECYCLE', subjects: ['ho.recycle'], retention: RetentionPolicy.Limits, storage: StorageType.Memory });
  const js = jetstream(pub);
  const n = 262_144; // 1 MB of float32
  const values = (i: number) => new Float32Array(n).map((_, k) => Math.cos(k + i));
  // Four in flight at a time, as a producer's window does.
  for (let at = 0; at < 32; at += 4) {
    await Promise.all([0, 1, 2, 3].map((j) => publishWork(pub, js, 'ho.recycle', { i: at + j }, { tensors: { t: tensor('float32', [n], values(at + j)) } })));
  }
  assert.ok(keptFrameBytes() >= 1_048_576, `encoded frames kept for reuse: ${keptFrameBytes()}`);
  for (let seq = 1; seq <= 32; seq++) {
    const f = decodeFrame((await jsm.streams.getMessage('HO_RECYCLE', { seq }))!.data);
    assert.deepEqual(f.tensors.t!.data, values(f.meta.i as number), `message ${seq}`);
  }
  await jsm.streams.delete('HO_RECYCLE');
});
