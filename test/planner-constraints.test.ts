import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CleaveError, ErrorCode, isCleaveError } from '../protocols/errors.js';
import type { ExecutorProfile, Plan } from '../protocols/plan.js';
import { definePlanningProblem, plan, randomInstance, rng, validatePlan, type GraphInput, type PlanRequest } from '../runtime/planner/mod.js';

const graph = JSON.parse(readFileSync(new URL('../examples/graph.small.json', import.meta.url), 'utf8')) as GraphInput;
const executors = JSON.parse(readFileSync(new URL('../examples/executors.3.json', import.meta.url), 'utf8')) as ExecutorProfile[];
const links = JSON.parse(readFileSync(new URL('../examples/links.3.json', import.meta.url), 'utf8'));

/** A chain of n equal nodes. */
function chain(n: number, o: { flops?: number; params?: number; out?: number } = {}): GraphInput {
  return {
    nodes: Array.from({ length: n }, (_, i) => ({ id: `n${i}`, flops: o.flops ?? 1e9, paramBytes: o.params ?? 1e6, outputBytes: o.out ?? 1e3 })),
    edges: Array.from({ length: n - 1 }, (_, i) => ({ from: `n${i}`, to: `n${i + 1}`, bytes: o.out ?? 1e3 })),
  };
}

function expectCode(fn: () => unknown, code: ErrorCode, match?: RegExp): CleaveError {
  try {
    fn();
  } catch (e) {
    assert.ok(isCleaveError(e, code), `expected ${code}, got ${e instanceof CleaveError ? e.code : ''} ${String(e)}`);
    if (match) assert.match(e.message, match);
    return e;
  }
  assert.fail(`expected ${code}, nothing thrown`);
}

const stageOf = (p: Plan, id: string) => p.stages.findIndex((s) => s.nodes.includes(id));

test('planner constraints - every stage fits its executors\' memory on tight random instances', () => {
  const r = rng(31);
  let planned = 0;
  for (let i = 0; i < 80; i++) {
    const inst = randomInstance(r, { nodes: 40, executors: 2 + Math.floor(r() * 4), memoryFraction: [0.2, 0.8] });
    const req: PlanRequest = { ...inst };
    let p: Plan;
    try { p = plan(req); } catch (e) { assert.ok(isCleaveError(e, ErrorCode.PLAN_INFEASIBLE_MEMORY), String(e)); continue; }
    planned++;
    const byId = new Map(inst.executors.map((e) => [e.id, e]));
    for (const s of p.stages) {
      for (const id of [s.executor, ...(s.replicaExecutors ?? [])]) assert.ok(s.predicted.memoryBytes <= byId.get(id)!.memoryBytes);
    }
    assert.deepEqual(validatePlan(p, definePlanningProblem(req)).errors, []);
  }
  assert.ok(planned > 20);
});

test('planner constraints - pinned nodes run only on executors with the labels (string[] and record labels)', () => {
  const p = plan({ graph, executors, links, constraints: { pins: [{ nodes: ['b3.conv1', 'head'], labels: ['region=us'] }, { nodes: 'stem', labels: ['gpu'] }] } });
  const byId = new Map(executors.map((e) => [e.id, e]));
  for (const id of ['b3.conv1', 'b3.conv2', 'b3.add', 'b4.conv1', 'b4.conv2', 'b4.add', 'head']) {
    const s = p.stages[stageOf(p, id)];
    for (const ex of [s.executor, ...(s.replicaExecutors ?? [])]) assert.notEqual(ex, 'slow-eu', `${id} ran on ${ex}`);
  }
  assert.equal(p.stages[stageOf(p, 'stem')].executor, 'fast-a');
  assert.ok(byId.get('mid-b'));
  const eu = plan({ graph, executors, links, constraints: { pins: [{ nodes: { from: 'stem', to: 'b1.add' }, labels: ['region=eu'] }] } });
  assert.equal(eu.stages[0].executor, 'slow-eu');
  assert.ok(eu.stages[0].nodes.includes('b1.add'));
});

test('planner constraints - infeasible requests give typed errors naming the constraint', () => {
  // Model larger than all memory together: totals in the message and details.
  const big = expectCode(() => plan({ graph: chain(4, { params: 1e9 }), executors: [{ id: 'a', flopsPerSec: 1e9, memoryBytes: 1e9 }, { id: 'b', flopsPerSec: 1e9, memoryBytes: 2e9 }] }),
    ErrorCode.PLAN_INFEASIBLE_MEMORY, /4\.0 GB.*3\.0 GB/);
  assert.equal(big.details.paramBytes, 4e9);
  assert.equal(big.details.memoryBytes, 3e9);
  // One node bigger than any executor.
  const node = expectCode(() => plan({ graph: chain(3, { params: 5e8 }), executors: ['a', 'b', 'c', 'd'].map((id) => ({ id, flopsPerSec: 1e9, memoryBytes: 4e8 })) }),
    ErrorCode.PLAN_INFEASIBLE_MEMORY, /node 'n0' alone needs/);
  assert.equal(node.details.node, 'n0');
  // Enough memory in total, but no contiguous split with the stage limit fits.
  expectCode(() => plan({ graph: chain(4, { params: 1e9 }), executors: ['a', 'b', 'c', 'd'].map((id) => ({ id, flopsPerSec: 1e9, memoryBytes: 1.5e9 })), constraints: { maxStages: 2 } }),
    ErrorCode.PLAN_INFEASIBLE_MEMORY, /no contiguous split fits/);
  // A pin no executor satisfies: names node and labels.
  const pin = expectCode(() => plan({ graph, executors, constraints: { pins: [{ nodes: 'b2.conv1', labels: ['region=eu', 'gpu'] }] } }),
    ErrorCode.PLAN_INFEASIBLE_PIN, /'b2\.conv1'.*region=eu, gpu/);
  assert.deepEqual(pin.details.labels, ['region=eu', 'gpu']);
  // Pins that contradict contiguity: a, b, a along a chain with one executor per label.
  expectCode(() => plan({
    graph: chain(3),
    executors: [{ id: 'x', flopsPerSec: 1e9, memoryBytes: 1e12, labels: ['zone=a'] }, { id: 'y', flopsPerSec: 1e9, memoryBytes: 1e12, labels: { zone: 'b' } }],
    constraints: { pins: [{ nodes: 'n0', labels: ['zone=a'] }, { nodes: 'n1', labels: ['zone=b'] }, { nodes: 'n2', labels: ['zone=a'] }] },
  }), ErrorCode.PLAN_INFEASIBLE_PIN, /contiguous/);
  // More manual boundaries than executors can serve.
  expectCode(() => plan({ graph: chain(3), executors: [{ id: 'x', flopsPerSec: 1e9, memoryBytes: 1e12 }], constraints: { boundaries: ['n0'] } }),
    ErrorCode.PLAN_INFEASIBLE, /own executor/);
  expectCode(() => plan({ graph: chain(3), executors: [{ id: 'x', flopsPerSec: 1e9, memoryBytes: 1e12 }], constraints: { boundaries: ['n0', 'n1'], maxStages: 2 } }),
    ErrorCode.PLAN_INFEASIBLE, /maxStages/);
  expectCode(() => plan({ graph: chain(3), executors: [{ id: 'x', flopsPerSec: 1e9, memoryBytes: 1e12 }], constraints: { pins: [{ nodes: 'nope', labels: [] }] } }),
    ErrorCode.PLAN_INVALID, /'nope'/);
});

test('planner constraints - manual boundaries are honoured and maxStages caps the stage count', () => {
  const fast = ['a', 'b', 'c', 'd'].map((id, i) => ({ id, flopsPerSec: 1e9 * (i + 1), memoryBytes: 1e12 }));
  const p = plan({ graph: chain(10), executors: fast, constraints: { boundaries: ['n1', 7] }, replicas: 'none' });
  const ends = p.stages.map((s) => s.nodes[s.nodes.length - 1]);
  assert.ok(ends.includes('n1') && ends.includes('n6'), ends.join(','));
  const capped = plan({ graph: chain(10), executors: fast, constraints: { maxStages: 2 }, replicas: 'none' });
  assert.equal(capped.stages.length, 2);
  assert.deepEqual(validatePlan(capped, definePlanningProblem({ graph: chain(10), executors: fast, constraints: { maxStages: 2 } })).errors, []);
});

test('planner constraints - latency and throughput objectives choose different plans where they should', () => {
  const twins = [{ id: 'a', flopsPerSec: 1e10, memoryBytes: 1e12 }, { id: 'b', flopsPerSec: 1e10, memoryBytes: 1e12 }];
  const thr = plan({ graph: chain(8), executors: twins, objective: 'throughput', replicas: 'none' });
  const lat = plan({ graph: chain(8), executors: twins, objective: 'latency' });
  assert.equal(thr.stages.length, 2, 'pipelining halves the bottleneck');
  assert.equal(lat.stages.length, 1, 'a second stage only adds a transfer to one request');
  assert.ok(thr.predicted.bottleneckSeconds < lat.predicted.bottleneckSeconds);
  assert.ok(lat.predicted.latencySeconds < thr.predicted.latencySeconds);
  assert.match(lat.explanation, /Left out: b/);
});

test('planner constraints - spare executors become replicas of the bottleneck stage', () => {
  const three = ['a', 'b', 'c'].map((id) => ({ id, flopsPerSec: 1e9, memoryBytes: 1e12 }));
  const one = chain(1, { flops: 3e9 });
  const solo = plan({ graph: one, executors: three, replicas: 'none' });
  assert.equal(solo.stages.length, 1);
  assert.deepEqual(solo.unusedExecutors?.length, 2);
  const rep = plan({ graph: one, executors: three });
  assert.equal(rep.stages[0].replicas, 3);
  assert.equal(rep.stages[0].replicaExecutors?.length, 2);
  assert.ok(Math.abs(rep.predicted.bottleneckSeconds - 1) < 1e-9, String(rep.predicted.bottleneckSeconds));
  assert.equal(rep.unusedExecutors, undefined);
  assert.match(rep.explanation, /replica/);
});

test('planner constraints - measuredSeconds are scaled by executor speed relative to the measuring host', () => {
  const g: GraphInput = { nodes: [{ id: 'x', flops: 1, paramBytes: 0, outputBytes: 0, measuredSeconds: 0.5 }], edges: [] };
  const ex = [{ id: 'twice-as-fast', flopsPerSec: 2e9, memoryBytes: 1e9 }];
  assert.equal(plan({ graph: g, executors: ex, measuredFlopsPerSec: 1e9 }).stages[0].predicted.computeSeconds, 0.25);
  assert.equal(plan({ graph: g, executors: ex }).stages[0].predicted.computeSeconds, 0.5e-9);
});

test('planner constraints - validatePlan catches tampered plans independently of the planner', () => {
  const req: PlanRequest = { graph, executors, links, replicas: 'none' };
  const p = plan(req);
  const prob = definePlanningProblem(req);
  assert.deepEqual(validatePlan(p, prob).errors, []);
  const clone = () => JSON.parse(JSON.stringify(p)) as Plan;
  const dropped = clone(); dropped.stages[0].nodes.pop();
  assert.match(validatePlan(dropped, prob).errors.join(), /nodes in no stage/);
  const reordered = clone(); reordered.stages.reverse();
  assert.match(validatePlan(reordered, prob).errors.join(), /runs before its input/);
  const dup = clone(); dup.stages[1].executor = dup.stages[0].executor;
  assert.match(validatePlan(dup, prob).errors.join(), /serves stage 0 and stage 1/);
  const all = clone(); all.stages = [{ ...all.stages[0], nodes: all.stages.flatMap((s) => s.nodes), executor: 'mid-b' }];
  assert.match(validatePlan(all, prob).errors.join(), /stage 0 needs \d+ bytes .* but 'mid-b' has/);
  const stale = clone(); stale.predicted.bottleneckSeconds *= 0.5;
  assert.match(validatePlan(stale, prob).errors.join(), /stale/);
  const pinned = definePlanningProblem({ ...req, constraints: { pins: [{ nodes: 'head', labels: ['region=eu'] }] } });
  assert.match(validatePlan(p, pinned).errors.join(), /'head' is pinned to \[region=eu\]/);
});
