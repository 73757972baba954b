// Executors of one host share its cores: the planner prices that and does not put more busy executor
// threads on a host than pay off (pure, no NATS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ExecutorProfile } from '../protocols/plan.js';
import { coreShare, offerExecutors, oversubscribedHosts, plan, usageCombinations, type GraphInput } from '../runtime/planner/mod.js';

/** A chain of n equal nodes of 1 GFLOP each, small cuts. */
function chain(n: number): GraphInput {
  return {
    nodes: Array.from({ length: n }, (_, i) => ({ id: `n${i}`, flops: 1e9, paramBytes: 1e6, outputBytes: 1e3 })),
    edges: Array.from({ length: n - 1 }, (_, i) => ({ from: `n${i}`, to: `n${i + 1}`, bytes: 1e3 })),
  };
}
const exec = (id: string, host: string, cores: number, flops = 1e9): ExecutorProfile => ({ id, flopsPerSec: flops, memoryBytes: 1e12, host, cores, threads: 1 });
const links = { default: { bandwidthBytesPerSec: 1e12, latencySeconds: 0 } };

test('planner hosts - a busy host gives each executor its share of the cores', () => {
  const execs = [exec('a', 'h1', 2), exec('b', 'h1', 2), exec('c', 'h1', 2), exec('d', 'h2', 4)];
  const share = coreShare(execs, new Set(['a', 'b', 'c', 'd']));
  assert.equal(share.get('a'), 2 / 3);
  assert.equal(share.get('d'), 1);
  assert.equal(coreShare(execs, new Set(['a', 'b'])).get('a'), 1);
  // Executors that say nothing of their host are taken at their measured speed.
  assert.equal(coreShare([{ id: 'x', flopsPerSec: 1, memoryBytes: 1 }], new Set(['x'])).get('x'), 1);
  const groups = oversubscribedHosts(execs);
  assert.deepEqual(groups.map((g) => [g.host, g.members.length]), [['h1', 3]]);
  assert.deepEqual(usageCombinations(groups), [[1], [2], [3]]);
  const { offered, left } = offerExecutors(execs, groups, [2]);
  assert.deepEqual(left, ['c']);
  assert.deepEqual(offered.map((e) => [e.id, e.flopsPerSec]), [['a', 1e9], ['b', 1e9], ['d', 1e9]]);
});

test('planner hosts - three one-thread executors on two cores: two stages, priced at full speed, beat three at two thirds', () => {
  const execs = [exec('a', 'h', 2), exec('b', 'h', 2), exec('c', 'h', 2)];
  const p = plan({ graph: chain(6), executors: execs, links, replicas: 'none' });
  assert.equal(p.stages.length, 2);
  assert.ok(Math.abs(p.predicted.bottleneckSeconds - 3) < 1e-6, `bottleneck ${p.predicted.bottleneckSeconds}`);
  assert.deepEqual(p.unusedExecutors, ['c']);
  assert.match(p.explanation, /h has 2 core\(s\) for 3 executor\(s\): 2 offered \(c held back\)/);
  // Blind to hosts, the same executors would make three stages predicted at 2 s each: 3 s in truth.
  const blind = plan({ graph: chain(6), executors: execs.map(({ host, cores, threads, ...e }) => e), links, replicas: 'none' });
  assert.equal(blind.stages.length, 3);
  assert.ok(Math.abs(blind.predicted.bottleneckSeconds - 2) < 1e-6);
});

test('planner hosts - required cuts are still honoured, and the prediction counts the shared cores', () => {
  const execs = [exec('a', 'h', 2), exec('b', 'h', 2), exec('c', 'h', 2)];
  const p = plan({ graph: chain(6), executors: execs, links, replicas: 'none', constraints: { boundaries: ['n1', 'n3'] } });
  assert.equal(p.stages.length, 3);
  // 2 GFLOP per stage at 2/3 of 1 GFLOP/s.
  assert.ok(Math.abs(p.predicted.bottleneckSeconds - 3) < 1e-6, `bottleneck ${p.predicted.bottleneckSeconds}`);
});

test('planner hosts - executors on hosts of their own all work; a faster host keeps its executor', () => {
  const apart = plan({ graph: chain(6), executors: [exec('a', 'h1', 2), exec('b', 'h2', 2), exec('c', 'h3', 2)], links, replicas: 'none' });
  assert.equal(apart.stages.length, 3);
  assert.ok(Math.abs(apart.predicted.bottleneckSeconds - 2) < 1e-6);
  // Two on a one-core host (each at half speed) and a fast one elsewhere: the fast one takes a share
  // of the work it can do, and of the busy host only its fastest executor is kept.
  const mixed = plan({ graph: chain(8), executors: [exec('slow1', 'small', 1), exec('slow2', 'small', 1, 0.9e9), exec('fast', 'big', 8, 3e9)], links, replicas: 'none' });
  assert.deepEqual(mixed.stages.map((s) => s.executor).sort(), ['fast', 'slow1']);
  assert.deepEqual(mixed.unusedExecutors, ['slow2']);
});

test('planner hosts - spare executors become replicas only when the host has cores for them', () => {
  const tight = plan({ graph: chain(4), executors: [exec('a', 'h', 1), exec('b', 'h', 1)], links, replicas: 'spare' });
  // One core: a second executor (stage or replica) only halves both; one executor serves everything.
  assert.equal(tight.stages.reduce((n, s) => n + (s.replicas ?? 1), 0), 1);
  const roomy = plan({ graph: chain(4), executors: [exec('a', 'h', 2), exec('b', 'h', 2)], links, replicas: 'spare' });
  assert.equal(roomy.stages.reduce((n, s) => n + (s.replicas ?? 1), 0), 2);
});
