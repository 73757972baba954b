import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AckPolicy, RetentionPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { suiteServer, suiteConnection } from './helpers/nats.js';
import { PullWindow } from '../runtime/nats/pull-window.js';
import { SlotPuller, parseAckSubject, type PulledMsg } from '../runtime/nats/pull.js';
import { seededRandom } from '../runtime/random.js';

// ---------------------------------------------------------------- the window, without NATS

test('pull window - asks once per free slot and never more than its slots', () => {
  const w = new PullWindow(2);
  assert.equal(w.toRequest(), 2);
  assert.equal(w.toRequest(), 0, 'both slots are already asked for');
  assert.equal(w.onMessage(), true);
  assert.equal(w.toRequest(), 0, 'one message in hand and one request out fill two slots');
  assert.equal(w.onSettled(true), true, 'a successful ack asks for the next one');
  assert.deepEqual(w.state, { slots: 2, outstanding: 2, inHand: 0, stopped: false });
  w.onRequestEnded();
  assert.equal(w.toRequest(), 1, 'an expired request is replaced');
  assert.equal(w.onMessage(), true);
  assert.equal(w.onSettled(false), false, 'a nak does not ask for more itself');
  assert.equal(w.toRequest(), 1);
});

test('pull window - once stopped it asks for nothing, hands arriving messages back and knows when it is drained', () => {
  const w = new PullWindow(3);
  w.toRequest();
  w.onMessage();
  w.stop();
  assert.equal(w.toRequest(), 0);
  assert.equal(w.onSettled(true), false, 'no ack-next while stopping');
  assert.equal(w.drained, false, 'two requests may still bring messages');
  assert.equal(w.onMessage(), false, 'a message on an old request goes back');
  w.onRequestEnded();
  assert.equal(w.drained, true);
});

test('pull window - random event sequences keep outstanding + in hand within the slots', () => {
  const rand = seededRandom('pull-window');
  for (let round = 0; round < 200; round++) {
    const slots = 1 + Math.floor(rand() * 4);
    const w = new PullWindow(slots);
    w.toRequest();
    for (let step = 0; step < 200; step++) {
      const s = w.state;
      const r = rand();
      if (r < 0.35 && s.outstanding > 0) w.onMessage();
      else if (r < 0.5 && s.outstanding > 0) w.onRequestEnded();
      else if (r < 0.85 && s.inHand > 0) w.onSettled(rand() < 0.8);
      else if (r < 0.87) w.forgetRequests();
      w.toRequest();
      const t = w.state;
      assert.ok(t.outstanding >= 0 && t.inHand >= 0);
      assert.ok(t.outstanding + t.inHand <= slots, `round ${round} step ${step}: ${JSON.stringify(t)}`);
      assert.equal(t.outstanding + t.inHand, slots, 'every slot is busy or asked for after a top-up');
    }
  }
});

test('pull window - ack subjects parse in the old and the domain form', () => {
  const a = parseAckSubject('$JS.ACK.S.C.3.17.12.1796423413427680032.5');
  assert.deepEqual([a.stream, a.consumer, a.deliveryCount, a.redelivered, a.streamSequence, a.deliverySequence, a.pending], ['S', 'C', 3, true, 17, 12, 5]);
  const b = parseAckSubject('$JS.ACK.dom.hash.S.C.1.2.3.1796423413427680032.0.xyz');
  assert.deepEqual([b.stream, b.consumer, b.deliveryCount, b.redelivered], ['S', 'C', 1, false]);
  assert.throws(() => parseAckSubject('_INBOX.abc'));
});

// ---------------------------------------------------------------- the puller, against a real nats-server

const server = await suiteServer();
const nc = await suiteConnection(server.url);
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: 'PULL', subjects: ['pull.>'], retention: RetentionPolicy.Workqueue });

async function durable(name: string, ackWaitMs = 30_000): Promise<void> {
  await jsm.consumers.add('PULL', { durable_name: name, filter_subject: `pull.${name}`, ack_policy: AckPolicy.Explicit, ack_wait: ackWaitMs * 1_000_000, max_deliver: 5 });
}

async function publish(name: string, n: number, from = 0): Promise<void> {
  for (let i = from; i < from + n; i++) await js.publish(`pull.${name}`, new TextEncoder().encode(String(i)));
}

const until = async (ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('slot puller - every message once, never more in hand than its slots, acks asking for the next', async () => {
  await durable('a');
  await publish('a', 60);
  const seen: number[] = [];
  let inHand = 0;
  let maxInHand = 0;
  const p = new SlotPuller(nc, 'PULL', 'a', {
    slots: 3,
    onMessage: async (m: PulledMsg) => {
      inHand++;
      maxInHand = Math.max(maxInHand, inHand);
      await new Promise((r) => setTimeout(r, 2 + Math.random() * 5));
      seen.push(Number(new TextDecoder().decode(m.data)));
      inHand--;
      m.ack();
    },
  });
  p.start();
  await until(() => seen.length === 60);
  await p.drain();
  assert.deepEqual([...seen].sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i));
  assert.ok(maxInHand <= 3, `held ${maxInHand}`);
  assert.ok(maxInHand >= 2, 'slots work in parallel');
  // Three initial pulls; after that nearly every message came on an ack-next.
  assert.ok(p.counts.ackNexts >= 55, JSON.stringify(p.counts));
  assert.ok(p.counts.pulls <= 3 + 5, JSON.stringify(p.counts));
  const info = await jsm.consumers.info('PULL', 'a');
  assert.equal(info.num_ack_pending, 0);
  assert.equal(info.num_pending, 0);
});

test('slot puller - two replicas share a consumer without hoarding: a slow one holds no more than its slots', async () => {
  await durable('b');
  await publish('b', 40);
  const got = { slow: 0, fast: 0 };
  const mk = (who: 'slow' | 'fast', ms: number) =>
    new SlotPuller(nc, 'PULL', 'b', {
      slots: 1,
      onMessage: async (m) => {
        await new Promise((r) => setTimeout(r, ms));
        got[who]++;
        m.ack();
      },
    });
  const slow = mk('slow', 200);
  const fast = mk('fast', 5);
  slow.start();
  fast.start();
  await until(() => got.slow + got.fast === 40);
  await Promise.all([slow.drain(), fast.drain()]);
  assert.ok(got.fast >= 30, `fast ${got.fast}, slow ${got.slow}`);
});

test('slot puller - nak and term settle, unsettled messages come back, and a handler error frees its slot', async () => {
  await durable('c', 1000);
  await publish('c', 4);
  const deliveries = new Map<string, number>();
  const p = new SlotPuller(nc, 'PULL', 'c', {
    slots: 2,
    onMessage: async (m) => {
      const v = new TextDecoder().decode(m.data);
      deliveries.set(v, m.info.deliveryCount);
      if (v === '0' && m.info.deliveryCount === 1) return m.nak(50);
      if (v === '1') return m.term('bad');
      if (v === '2' && m.info.deliveryCount === 1) return; // left unsettled: back after ack_wait
      if (v === '3' && m.info.deliveryCount === 1) throw new Error('handler bug');
      m.ack();
    },
  });
  p.start();
  await until(async () => (await jsm.consumers.info('PULL', 'c')).num_ack_pending === 0 && deliveries.get('2') === 2 && deliveries.get('3') === 2 && deliveries.get('0') === 2, 15_000);
  await p.drain();
  assert.equal(deliveries.get('1'), 1, 'terminated, not redelivered');
  const info = await jsm.consumers.info('PULL', 'c');
  assert.equal(info.num_pending + info.num_ack_pending, 0);
});

test('slot puller - drain finishes the messages in hand and hands back what arrives after, so a sibling gets it at once', async () => {
  await durable('d', 60_000);
  const done: string[] = [];
  const first = new SlotPuller(nc, 'PULL', 'd', {
    slots: 2,
    onMessage: async (m) => {
      await new Promise((r) => setTimeout(r, 300));
      done.push(`first:${new TextDecoder().decode(m.data)}`);
      m.ack();
    },
  });
  first.start();
  await publish('d', 1);
  await until(() => first.busy === 1);
  const draining = first.drain();
  // Arrives on the request still out: must be nak'ed (ack_wait is a minute), not held.
  await publish('d', 1, 1);
  await draining;
  assert.deepEqual(done, ['first:0']);
  const second = new SlotPuller(nc, 'PULL', 'd', {
    slots: 1,
    onMessage: async (m) => {
      done.push(`second:${new TextDecoder().decode(m.data)}`);
      m.ack();
    },
  });
  const t0 = Date.now();
  second.start();
  await until(() => done.length === 2, 5000);
  await second.drain();
  assert.deepEqual(done, ['first:0', 'second:1'], 'the message that arrived while draining went to the sibling');
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(first.counts.returned <= 1);
});

test('slot puller - idle pulls expire and are renewed, and work published later is still taken', async () => {
  await durable('e');
  const seen: string[] = [];
  const p = new SlotPuller(nc, 'PULL', 'e', {
    slots: 1,
    expiresMs: 1000,
    onMessage: async (m) => {
      seen.push(new TextDecoder().decode(m.data));
      m.ack();
    },
  });
  p.start();
  await new Promise((r) => setTimeout(r, 2600));
  assert.ok(p.counts.statuses >= 2, `expired requests: ${JSON.stringify(p.counts)}`);
  assert.ok(p.counts.pulls >= 3);
  await publish('e', 2);
  await until(() => seen.length === 2);
  await p.drain();
});

