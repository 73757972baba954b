import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jetstream, jetstreamManager, AckPolicy } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { suiteServer, suiteConnection } from './helpers/nats.js';
import { publishFrame, receiveFrame, releaseFrame, BLOB_HEADER, CHUNK_BYTES } from '../runtime/nats/frames.js';
import { ensureStreams } from '../runtime/nats/topology.js';
import { encodeFrame, decodeFrame, tensor } from '../protocols/tensor-codec.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

const server = await suiteServer();
const nc = await suiteConnection(server.url);
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: 'T', subjects: ['t.>'] });
await ensureStreams(jsm);

async function roundTrip(floats: number) {
  const data = new Float32Array(floats);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 1e3;
  const frame = encodeFrame({ tensors: { x: tensor('float32', [floats], data) }, meta: { id: `r${floats}` } });
  await publishFrame(nc, js, `t.${floats}`, frame, { msgID: `m-${floats}` });
  const m = await jsm.streams.getMessage('T', { last_by_subj: `t.${floats}` });
  const bytes = await receiveFrame(nc, m!.data, m!.header);
  const back = decodeFrame(bytes);
  assert.equal(back.meta?.id, `r${floats}`);
  assert.deepEqual(new Uint8Array((back.tensors.x!.data as Float32Array).buffer, (back.tensors.x!.data as Float32Array).byteOffset, data.byteLength), new Uint8Array(data.buffer));
  return m!;
}

test('frames transport - a frame up to the chunk size travels inline', async () => {
  const m = await roundTrip(1024 * 1024); // 4 MB
  assert.equal(m.header.get(BLOB_HEADER), '');
  assert.ok(m.data.byteLength > 4 * 1024 * 1024);
});

test('frames transport - a larger frame travels by reference as chunks in CLEAVE_BLOBS, then is released', async () => {
  const m = await roundTrip(10 * 1024 * 1024); // 40 MB: five 8 MB chunks
  const ref = m.header.get(BLOB_HEADER);
  const [id, chunks, bytes] = ref.split(';');
  assert.equal(Number(chunks), Math.ceil(Number(bytes) / CHUNK_BYTES));
  assert.equal(m.data.byteLength, 0);
  const blobs = async () => Object.keys((await jsm.streams.info('CLEAVE_BLOBS', { subjects_filter: `cleave.blob.${id}.>` })).state.subjects ?? {}).length;
  assert.equal(await blobs(), Number(chunks));
  await releaseFrame(nc, m.header);
  assert.equal(await blobs(), 0);
  await assert.rejects(receiveFrame(nc, m.data, m.header), (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.FRAME_GONE);
});

test('frames transport - a republished large frame (same dedup id) rewrites no chunk twice', async () => {
  const frame = encodeFrame({ tensors: { x: tensor('float32', [3 * 1024 * 1024], new Float32Array(3 * 1024 * 1024).fill(2)) } });
  await publishFrame(nc, js, 't.again', frame, { msgID: 'again-1' });
  await publishFrame(nc, js, 't.again', frame, { msgID: 'again-1' });
  const info = await jsm.streams.info('CLEAVE_BLOBS', { subjects_filter: 'cleave.blob.again-1.>' });
  assert.deepEqual(Object.values(info.state.subjects ?? {}), [1, 1]);
});

test('frames transport - a malformed blob reference is a BAD_MESSAGE, not a crash', async () => {
  const h = (await import('@nats-io/nats-core')).headers();
  h.set(BLOB_HEADER, '../x;zero;-1');
  await assert.rejects(receiveFrame(nc, new Uint8Array(0), h), (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.BAD_MESSAGE);
});

test('frames transport - a frame over the configured limit is refused with CODEC_TOO_LARGE before anything is sent', async () => {
  const frame = encodeFrame({ tensors: { x: tensor('float32', [1024], new Float32Array(1024)) } });
  await assert.rejects(publishFrame(nc, js, 't.big', frame, { maxFrameBytes: 1000 }), (e: unknown) => {
    assert.ok(e instanceof CleaveError);
    assert.equal(e.code, ErrorCode.CODEC_TOO_LARGE);
    assert.match(e.message, /exceeds the 1000-byte limit/);
    return true;
  });
  const info = await jsm.streams.info('T');
  assert.equal(info.state.subjects?.['t.big'], undefined);
});

test('frames transport - an inline frame pulled from JetStream arrives 8-aligned and decodes as views, whatever its other headers', async () => {
  await jsm.streams.add({ name: 'ALIGN', subjects: ['align.>'] });
  const n = 100_000; // 400 kB: spans socket reads, so it is gathered into a buffer of its own
  const data = new Float32Array(n).map((_, i) => Math.cos(i));
  // Header blocks of every length modulo 8 (and a reused headers object, padded once).
  const reused = headers();
  for (let k = 0; k < 8; k++) {
    const h = k === 7 ? reused : headers();
    h.set('Test', 'x'.repeat(k));
    const frame = encodeFrame({ tensors: { x: tensor('float32', [n], data) }, meta: { k } });
    await publishFrame(nc, js, `align.${k}`, frame, { headers: h, msgID: `align-${k}` });
    if (k === 7) await publishFrame(nc, js, 'align.again', frame, { headers: h, msgID: 'align-again' });
  }
  assert.equal(reused.values('Cleave-Pad').length, 1, 'padding replaced, not added, on reuse');
  await jsm.consumers.add('ALIGN', { durable_name: 'c', ack_policy: AckPolicy.Explicit });
  const c = await js.consumers.get('ALIGN', 'c');
  for (let k = 0; k < 9; k++) {
    const m = (await c.next({ expires: 5000 }))!;
    assert.equal(m.data.byteOffset % 8, 0, `message ${k}: payload at offset ${m.data.byteOffset}`);
    const back = decodeFrame(await receiveFrame(nc, m.data, m.headers));
    const x = back.tensors.x!.data as Float32Array;
    assert.equal(x.buffer, m.data.buffer, `message ${k}: a view of the received bytes, not a copy`);
    assert.deepEqual(x, data);
    m.ack();
  }
  await jsm.streams.delete('ALIGN');
});
