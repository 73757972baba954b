import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, fromPromise, initialTransition, transition, waitFor, SimulatedClock } from 'xstate';
import { executorLifecycle, type PartitionAssignment } from '../protocols/machines/executor-lifecycle.js';

const A: PartitionAssignment = { run: 'r1', epoch: 1, stage: 0, artifact: 'sha256-aa' };
const B: PartitionAssignment = { run: 'r1', epoch: 2, stage: 1, artifact: 'sha256-bb' };

test('executor lifecycle - pure: joining → idle → loading starts the loader with the assignment', () => {
  let [s, actions] = initialTransition(executorLifecycle, {});
  assert.equal(s.value, 'joining');
  assert.equal(actions.length, 0);
  [s] = transition(executorLifecycle, s, { type: 'REGISTERED' });
  assert.equal(s.value, 'idle');
  [s, actions] = transition(executorLifecycle, s, { type: 'ASSIGN', assignment: A });
  assert.equal(s.value, 'loading');
  assert.deepEqual(s.context.assignment, A);
  assert.equal(s.context.loadAttempts, 1);
  const spawn = actions.find((a) => a.type === 'xstate.spawnChild');
  assert.ok(spawn, 'entering loading spawns the loadPartition invocation');
  assert.equal((spawn!.params as { src: string }).src, 'loadPartition');
});

test('executor lifecycle - pure: events that do not apply leave the state unchanged', () => {
  let [s] = initialTransition(executorLifecycle, {});
  [s] = transition(executorLifecycle, s, { type: 'START' });
  assert.equal(s.value, 'joining');
  [s] = transition(executorLifecycle, s, { type: 'REGISTERED' });
  [s] = transition(executorLifecycle, s, { type: 'DRAINED' });
  assert.equal(s.value, 'idle');
  [s] = transition(executorLifecycle, s, { type: 'DRAIN' });
  assert.equal(s.value, 'idle');
});

test('executor lifecycle - pure: draining lasts until the runtime reports DRAINED, then idle without its partition', () => {
  const machine = executorLifecycle.provide({ actors: { loadPartition: fromPromise(async () => {}) } });
  let [s] = initialTransition(machine, {});
  // Skip the invocation by forcing serving through a resolved snapshot: resolveState keeps it pure.
  s = machine.resolveState({ value: 'serving', context: { ...s.context, assignment: A } });
  [s] = transition(machine, s, { type: 'DRAIN' });
  assert.equal(s.value, 'draining');
  assert.deepEqual(s.context.assignment, A, 'the partition is kept while work in hand finishes');
  // A new assignment or a second drain does not cut the drain short.
  [s] = transition(machine, s, { type: 'DRAIN' });
  [s] = transition(machine, s, { type: 'START' });
  assert.equal(s.value, 'draining');
  [s] = transition(machine, s, { type: 'DRAINED' });
  assert.equal(s.value, 'idle');
  assert.equal(s.context.assignment, undefined);
});

test('executor lifecycle - pure: a failure while draining is recorded', () => {
  let [s] = initialTransition(executorLifecycle, {});
  s = executorLifecycle.resolveState({ value: 'draining', context: { ...s.context, assignment: A } });
  [s] = transition(executorLifecycle, s, { type: 'FAIL', error: 'inference thread died' });
  assert.equal(s.value, 'failed');
  assert.equal(s.context.error, 'inference thread died');
});

test('executor lifecycle - pure: failure records the reason; ASSIGN from failed retries', () => {
  let [s] = initialTransition(executorLifecycle, {});
  s = executorLifecycle.resolveState({ value: 'serving', context: { ...s.context, assignment: A } });
  [s] = transition(executorLifecycle, s, { type: 'FAIL', error: 'worker crashed' });
  assert.equal(s.value, 'failed');
  assert.equal(s.context.error, 'worker crashed');
  [s] = transition(executorLifecycle, s, { type: 'ASSIGN', assignment: B });
  assert.equal(s.value, 'loading');
  assert.equal(s.context.error, undefined);
  assert.deepEqual(s.context.assignment, B);
});

test('executor lifecycle - pure: STOP ends the machine from any state', () => {
  for (const value of ['joining', 'idle', 'ready', 'serving', 'failed'] as const) {
    let [s] = initialTransition(executorLifecycle, {});
    s = executorLifecycle.resolveState({ value, context: s.context });
    [s] = transition(executorLifecycle, s, { type: 'STOP' });
    assert.equal(s.value, 'stopped');
    assert.equal(s.status, 'done');
  }
});

test('executor lifecycle - pure: persisted snapshot round-trips', () => {
  let [s] = initialTransition(executorLifecycle, {});
  s = executorLifecycle.resolveState({ value: 'serving', context: { ...s.context, assignment: A, loadAttempts: 7 } });
  const persisted = JSON.parse(JSON.stringify(executorLifecycle.getPersistedSnapshot(s)));
  const restored = executorLifecycle.resolveState(persisted);
  assert.equal(restored.value, 'serving');
  assert.equal(restored.context.loadAttempts, 7);
  assert.deepEqual(restored.context.assignment, A);
});

test('executor lifecycle - live: a real loader takes it to ready, then serving', async () => {
  const loaded: PartitionAssignment[] = [];
  const machine = executorLifecycle.provide({
    actors: { loadPartition: fromPromise<void, PartitionAssignment>(async ({ input }) => { loaded.push(input); }) },
  });
  const actor = createActor(machine, { input: {} }).start();
  actor.send({ type: 'REGISTERED' });
  actor.send({ type: 'ASSIGN', assignment: A });
  await waitFor(actor, (s) => s.matches('ready'), { timeout: 2000 });
  actor.send({ type: 'START' });
  assert.equal(actor.getSnapshot().value, 'serving');
  assert.deepEqual(loaded, [A]);
  actor.stop();
});

test('executor lifecycle - live: a failing loader leads to failed with its message', async () => {
  const machine = executorLifecycle.provide({
    actors: { loadPartition: fromPromise<void, PartitionAssignment>(async () => { throw new Error('artifact sha256 mismatch'); }) },
  });
  const actor = createActor(machine, { input: {} }).start();
  actor.send({ type: 'REGISTERED' });
  actor.send({ type: 'ASSIGN', assignment: A });
  const s = await waitFor(actor, (x) => x.matches('failed'), { timeout: 2000 });
  assert.equal(s.context.error, 'artifact sha256 mismatch');
  actor.stop();
});

test('executor lifecycle - simulated clock: a load that never finishes times out', () => {
  const clock = new SimulatedClock();
  const machine = executorLifecycle.provide({
    actors: { loadPartition: fromPromise(() => new Promise<void>(() => {})) },
  });
  const actor = createActor(machine, { input: { loadTimeoutMs: 5000 }, clock }).start();
  actor.send({ type: 'REGISTERED' });
  actor.send({ type: 'ASSIGN', assignment: A });
  clock.increment(4999);
  assert.equal(actor.getSnapshot().value, 'loading');
  clock.increment(1);
  assert.equal(actor.getSnapshot().value, 'failed');
  assert.equal(actor.getSnapshot().context.error, 'partition load timed out');
  actor.stop();
});

test('executor lifecycle - simulated clock: a drain the runtime never reports done fails after its timeout', () => {
  const clock = new SimulatedClock();
  const actor = createActor(executorLifecycle, { input: { drainTimeoutMs: 1000 }, clock, snapshot: undefined }).start();
  const s0 = actor.getSnapshot();
  actor.stop();
  const serving = executorLifecycle.resolveState({ value: 'serving', context: { ...s0.context, drainTimeoutMs: 1000, assignment: A } });
  const live = createActor(executorLifecycle, { snapshot: serving, clock, input: {} }).start();
  live.send({ type: 'DRAIN' });
  clock.increment(999);
  assert.equal(live.getSnapshot().value, 'draining');
  clock.increment(1);
  assert.equal(live.getSnapshot().value, 'failed');
  live.stop();
});


