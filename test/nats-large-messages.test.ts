// Large NATS messages are received whole and exact with the parser's gather buffer sized up front
// (runtime/nats/large-messages.ts), over a real nats-server, in every size around Node's 64 KiB socket
// reads, with and without headers, interleaved with small ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headers as natsHeaders, type Msg } from '@nats-io/nats-core';
import { suiteServer, suiteConnection } from './helpers/nats.js';
import { largeMessagePatch } from '../runtime/nats/large-messages.js';
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
      if (header) {
        const h = natsHeaders();
        h.set('Test', header);
        pub.publish('big', data, { headers: h });
      } else pub.publish('big', data);
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
