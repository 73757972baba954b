// Large NATS messages are received whole and exact with the parser's gather buffer sized up front
// (runtime/nats/large-messages.ts), over a real nats-server, in every size around Node's 64 KiB socket
// reads, with and without headers, interleaved with small ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Msg } from '@nats-io/nats-core';
import { suiteServer, suiteConnection, publishTagged } from './helpers/nats.js';
import { gatherInto, largeMessagePatch } from '../runtime/nats/large-messages.js';
import { seededBytes } from '../runtime/random.js';

const server = await suiteServer();
const pub = await suiteConnection(server.url);
const sub = await suiteConnection(server.url);

const payload = seededBytes;

test('nats large messages - the patch is in place on this nats.js', () => {
  assert.equal(largeMessagePatch(), 'on');
});

test('nats large messages - every size around the 64 KiB socket reads arrives whole and exact, headers or not, between small messages', async () => {
  const sizes = [0, 1, 100, 65_535, 65_536, 65_537, 131_072, 200_003, 1_000_000, 1_048_576 + 7, 3_000_001, 7_999_999];
  const sent: { data: Uint8Array; header?: string }[] = [];
  const got: Msg[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const s = sub.subscribe('big', { callback: (_e, m) => { got.push(m); if (got.length === sent.length) done(); } });
  await sub.flush();
  sizes.forEach((n, i) => {
    for (const withHeader of [false, true]) {
      const data = payload(n, i * 2 + Number(withHeader));
      const header = withHeader ? `h${i}-${'x'.repeat(i * 40)}` : undefined;
      sent.push({ data, ...(header ? { header } : {}) });
      publishTagged(pub, 'big', data, header);
      sent.push({ data: payload(17, 1000 + i) });
      pub.publish('big', sent.at(-1)!.data);
    }
  });
  await pub.flush();
  await all;
  s.unsubscribe();
  assert.equal(got.length, sent.length);
  got.forEach((m, k) => {
    assert.equal(m.data.byteLength, sent[k]!.data.byteLength, `message ${k}: length`);
    assert.ok(Buffer.from(m.data).equals(Buffer.from(sent[k]!.data)), `message ${k} (${sent[k]!.data.byteLength} bytes): content`);
    assert.equal(m.headers?.get('Test') ?? undefined, sent[k]!.header, `message ${k}: header`);
  });
  // A message gathered across reads is a view of a buffer made for it, from offset 0 (the sized
  // gather), where nats.js would have handed on a view into a buffer grown by doubling.
  const gathered = got.find((m) => m.data.byteLength === 3_000_001 && !m.headers)!;
  assert.equal(gathered.data.byteOffset, 0);
  assert.equal(gathered.data.buffer.byteLength, 3_000_001);
});

test('nats large messages - a subscription with a sink (gatherInto) gets messages that span reads gathered in place, others as before', async () => {
  const sizes = [100, 65_537, 1_048_576, 3_000_001];
  const dest = new Uint8Array(sizes.reduce((a, n) => a + n, 0) + 1000);
  let at = 0;
  const asked: number[] = [];
  const got: Msg[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  // Headers, a message larger than the sink wants and one the sink declines keep buffers of their own.
  const total = sizes.length + 3;
  const s = sub.subscribe('sunk', { callback: (_e, m) => { got.push(m); if (!m.headers && m.data.buffer === dest.buffer) at += m.data.byteLength; if (got.length === total) done(); } });
  gatherInto(s, (size) => {
    asked.push(size);
    return size === 2_000_000 ? undefined : dest.subarray(at, at + size);
  });
  await sub.flush();
  sizes.forEach((n, i) => pub.publish('sunk', payload(n, 50 + i)));
  publishTagged(pub, 'sunk', payload(1_500_000, 60), 'with headers');
  pub.publish('sunk', payload(2_000_000, 61));
  pub.publish('sunk', payload(17, 62));
  await pub.flush();
  await all;
  s.unsubscribe();
  const sent = [...sizes.map((n, i) => payload(n, 50 + i)), payload(1_500_000, 60), payload(2_000_000, 61), payload(17, 62)];
  got.forEach((m, k) => assert.ok(Buffer.from(m.data).equals(Buffer.from(sent[k]!)), `message ${k}: content`));
  // Only messages spanning reads, without headers, were offered to the sink, each at its size.
  assert.ok(!asked.includes(100) && !asked.includes(17) && !asked.includes(1_500_000), `sink asked for ${asked.join(', ')}`);
  assert.ok(asked.includes(1_048_576) && asked.includes(3_000_001) && asked.includes(2_000_000));
  let offset = 0;
  for (const [k, n] of sizes.entries()) {
    if (asked.includes(n)) {
      assert.equal(got[k]!.data.buffer, dest.buffer, `message of ${n} bytes: gathered in the sink's memory`);
      assert.equal(got[k]!.data.byteOffset, offset);
      offset += n;
    }
  }
  assert.notEqual(got[sizes.length + 1]!.data.buffer, dest.buffer, 'declined by the sink: a buffer of its own');
});

test('nats large messages - a sink no longer live drops the rest of a message rather than write into memory given back', async () => {
  const dest = new Uint8Array(3_000_000);
  // Live when the gather starts and for its first write, then given up (a fetch that timed out).
  let checks = 0;
  let done!: (m: Msg) => void;
  const arrived = new Promise<Msg>((r) => (done = r));
  const s = sub.subscribe('abandoned', { callback: (_e, m) => done(m) });
  gatherInto(s, Object.assign((size: number) => dest.subarray(0, size), { live: () => ++checks <= 2 }));
  await sub.flush();
  const sent = payload(3_000_000, 70);
  pub.publish('abandoned', sent);
  await pub.flush();
  const m = await arrived;
  s.unsubscribe();
  assert.equal(m.data.byteLength, 3_000_000, 'the message is still delivered whole in length');
  assert.ok(checks > 2, 'the gather kept asking');
  const first = dest.findIndex((b, i) => b !== sent[i]);
  assert.ok(first > 0 && first < 3_000_000, `what came before it stopped was written (${first} bytes)`);
  assert.ok(dest.subarray(first).every((b) => b === 0), 'nothing was written after');
});
