import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { context, trace } from '@opentelemetry/api';
import { suiteServer, suiteConnection, onCleanup } from './helpers/nats.js';
import { ActorHost, type InboxMessage } from '../runtime/actor/host.js';
import { controlRequest, listActors, sendToInbox } from '../runtime/actor/client.js';
import { initTracing, tracer } from '../runtime/tracing.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { Header, Role, Stream, Subject } from '../protocols/subjects.js';
import { decodeFrame } from '../protocols/tensor-codec.js';
import { projectRoot } from '../runtime/paths.js';

const spans = new InMemorySpanExporter();
initTracing('cleave-test', {}, [new SimpleSpanProcessor(spans)]);

const handled: InboxMessage[] = [];

// Suite resources at top level: helpers register their cleanup with the file's root `after`.
const server = await suiteServer();
const host = await ActorHost.start(
  () => ({
    control: { echo: (req) => ({ echoed: req.value }) },
    inbox: {
      analyze: async (m) => {
        handled.push(m);
      },
      flaky: async () => {
        throw new CleaveError(ErrorCode.INTERNAL, 'always fails');
      },
    },
  }),
  { role: Role.PLANNER, id: 'p-test', servers: [server.url], maxDeliver: 3 },
);
onCleanup(() => host.stop());
const nc = await suiteConnection(server.url);

async function parked(count: number): Promise<{ reason: string; code: string; subject: string }[]> {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const info = await jsm.streams.info(Stream.PARKED);
    if (info.state.messages >= count) break;
    await sleep(50);
  }
  const out = [];
  const info = await jsm.streams.info(Stream.PARKED);
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(Stream.PARKED, { seq });
    out.push({ reason: m!.header.get(Header.PARK_REASON), code: m!.header.get(Header.ERROR_CODE), subject: m!.header.get(Header.PARK_SUBJECT) });
  }
  return out;
}

test('actor runtime - registers in the actors bucket and answers ping with its identity', async () => {
  const actors = await listActors(nc);
  const me = actors.find((a) => a.id === 'p-test');
  assert.ok(me);
  assert.equal(me.role, 'planner');
  assert.equal(me.pid, process.pid);
  const pong = await controlRequest<{ role: string; id: string; pid: number }>(nc, Role.PLANNER, 'p-test', { type: 'ping' });
  assert.deepEqual([pong.role, pong.id, pong.pid], ['planner', 'p-test', process.pid]);
  const any = await controlRequest<{ echoed: number }>(nc, Role.PLANNER, undefined, { type: 'echo', value: 42 });
  assert.equal(any.echoed, 42);
});

test('actor runtime - an unknown control request is a typed error carried in a header, and the actor lives on', async () => {
  await assert.rejects(controlRequest(nc, Role.PLANNER, 'p-test', { type: 'explode' }), (e: unknown) => {
    assert.ok(e instanceof CleaveError);
    assert.equal(e.code, ErrorCode.UNKNOWN_CONTROL);
    assert.match(e.message, /answers: ping, status, echo/);
    return true;
  });
  const raw = await nc.request(Subject.control(Role.PLANNER, 'p-test'), new TextEncoder().encode('not a frame'), { timeout: 2000 });
  assert.equal(raw.headers?.get(Header.ERROR_CODE), ErrorCode.BAD_MESSAGE);
  const pong = await controlRequest<{ id: string }>(nc, Role.PLANNER, 'p-test', { type: 'ping' });
  assert.equal(pong.id, 'p-test');
});

test('actor runtime - no actor of a role gives a clear error, not a hang', async () => {
  await assert.rejects(controlRequest(nc, Role.MEMORY_POOL, undefined, { type: 'ping' }, 1000), (e: unknown) => {
    assert.ok(e instanceof CleaveError);
    assert.equal(e.code, ErrorCode.NATS_UNAVAILABLE);
    assert.match(e.message, /cleave actor memory-pool/);
    return true;
  });
});

test('actor runtime - survives poison messages: garbage and unknown types are parked with a reason, good work still flows', async () => {
  const js = jetstream(nc);
  await js.publish(Subject.inbox(Role.PLANNER, 'analyze'), new Uint8Array([0xc1, 0xff, 0x00, 0x13]));
  await sendToInbox(js, Role.PLANNER, 'no-such-type', { x: 1 });
  await sendToInbox(js, Role.PLANNER, 'analyze', { model: 'det.onnx' });
  const p = await parked(2);
  assert.equal(p.length >= 2, true);
  const garbage = p.find((x) => x.subject === 'cleave.inbox.planner.analyze')!;
  assert.match(garbage.reason, /malformed message/);
  assert.match(garbage.code, /^CODEC_/);
  const unknown = p.find((x) => x.subject === 'cleave.inbox.planner.no-such-type')!;
  assert.equal(unknown.code, ErrorCode.UNKNOWN_MESSAGE);
  assert.match(unknown.reason, /handles: analyze, flaky/);
  const deadline = Date.now() + 5000;
  while (handled.length === 0 && Date.now() < deadline) await sleep(20);
  assert.equal(handled.length, 1);
  assert.equal(handled[0]!.meta.model, 'det.onnx');
  const pong = await controlRequest<{ id: string }>(nc, Role.PLANNER, 'p-test', { type: 'ping' });
  assert.equal(pong.id, 'p-test');
});

test('actor runtime - a handler that keeps failing is retried, then parked after max deliveries', async () => {
  const js = jetstream(nc);
  await sendToInbox(js, Role.PLANNER, 'flaky', { n: 1 });
  const deadline = Date.now() + 15_000;
  let found;
  while (!found && Date.now() < deadline) {
    found = (await parked(0)).find((x) => x.subject === 'cleave.inbox.planner.flaky');
    if (!found) await sleep(100);
  }
  assert.ok(found, 'the failing message was parked');
  assert.match(found.reason, /failed 3 times, last: always fails/);
  assert.equal(found.code, ErrorCode.INTERNAL);
});

test('actor runtime - trace context travels in headers: the actor continues the caller trace', async () => {
  spans.reset();
  const parent = tracer().startSpan('caller');
  await context.with(trace.setSpan(context.active(), parent), () => controlRequest(nc, Role.PLANNER, 'p-test', { type: 'ping' }));
  parent.end();
  const all = spans.getFinishedSpans();
  const consumer = all.find((s) => s.name === `process ${Subject.control(Role.PLANNER, 'p-test')}`);
  const producer = all.find((s) => s.name === `send ${Subject.control(Role.PLANNER, 'p-test')}`);
  assert.ok(consumer && producer);
  assert.equal(consumer.spanContext().traceId, parent.spanContext().traceId);
  assert.equal(consumer.parentSpanContext?.spanId, producer.spanContext().spanId);
});

test('actor runtime - events are kept in CLEAVE_EVENTS for replay', async () => {
  const jsm = await jetstreamManager(nc);
  const m = await jsm.streams.getMessage(Stream.EVENTS, { last_by_subj: Subject.event(Role.PLANNER, 'started') });
  const ev = decodeFrame(m!.data).meta as Record<string, unknown>;
  assert.equal(ev.actor, 'p-test');
  assert.equal(ev.type, 'started');
  assert.ok(m!.header.get('traceparent'));
});

test('actor runtime - a separate actor process drains on SIGTERM: exits 0, deregisters, records stopped', async (t) => {
  const child = spawn(process.execPath, ['bin/cleave.js', 'actor', 'executor', '--id', 'ex-sig'], {
    cwd: projectRoot(),
    env: { ...process.env, NATS_URL: server.url },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 20_000;
  let me;
  // Registered first as `joining`; its lifecycle then reaches `idle`.
  while (me?.state !== 'idle' && Date.now() < deadline) {
    me = (await listActors(nc)).find((a) => a.id === 'ex-sig');
    if (me?.state !== 'idle') await sleep(100);
  }
  assert.ok(me, `executor registered (stderr: ${stderr})`);
  assert.equal(me.pid, child.pid);
  assert.equal(me.state, 'idle');
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, stderr);
  assert.equal((await listActors(nc)).some((a) => a.id === 'ex-sig'), false);
  const jsm = await jetstreamManager(nc);
  const m = await jsm.streams.getMessage(Stream.EVENTS, { last_by_subj: Subject.event(Role.EXECUTOR, 'stopped') });
  assert.equal((decodeFrame(m!.data).meta as Record<string, unknown>).actor, 'ex-sig');
  assert.match(stderr, /SIGTERM: draining/);
});
