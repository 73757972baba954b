import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  bruteForce, definePlanningProblem, evaluateStages, exoMemoryProportionalPlan, greedyPlan, planProblem, randomInstance, rng, search, validatePlan,
  type PlanRequest,
} from '../runtime/planner/mod.js';
import { isCleaveError } from '../protocols/errors.js';

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));

function value(p: { predicted: { bottleneckSeconds: number; latencySeconds: number } }, objective: 'throughput' | 'latency') {
  return objective === 'latency' ? p.predicted.latencySeconds : p.predicted.bottleneckSeconds;
}

/** Runs the planner and brute force on one request; asserts they agree (value, or both infeasible). */
function agree(req: PlanRequest, label: string): 'planned' | 'infeasible' {
  const p = definePlanningProblem(req);
  const objective = p.objective;
  const bf = bruteForce(p, objective);
  let planned;
  try {
    planned = planProblem(p, { replicas: 'none' });
  } catch (e) {
    assert.ok(isCleaveError(e), `${label}: non-Cleave error ${String(e)}`);
    assert.equal(bf, null, `${label}: planner said ${(e as Error).message} but brute force found ${bf?.value}`);
    return 'infeasible';
  }
  assert.ok(bf, `${label}: planner found a plan brute force did not`);
  const v = validatePlan(planned, p);
  assert.deepEqual(v.errors, [], `${label}: invalid plan`);
  assert.ok(close(value(planned, objective), bf.value), `${label}: planner ${value(planned, objective)} vs brute force ${bf.value}`);
  return 'planned';
}

test('planner exact - equals brute force on 300 seeded random chains and DAGs, both objectives', () => {
  const r = rng(20261124);
  const outcomes = { planned: 0, infeasible: 0 };
  for (let i = 0; i < 150; i++) {
    const n = 2 + Math.floor(r() * 10);
    const k = 1 + Math.floor(r() * 5);
    const tight = r() < 0.4;
    const inst = randomInstance(r, { nodes: n, executors: k, kind: r() < 0.5 ? 'chain' : 'dag', memoryFraction: tight ? [0.15, 0.7] : [0.3, 1.5] });
    if (tight) for (const e of inst.executors) e.memoryBytes -= 4e7;
    for (const objective of ['throughput', 'latency'] as const) outcomes[agree({ ...inst, objective }, `#${i} n=${n} k=${k} ${objective}`)]++;
  }
  // Both kinds are exercised: infeasible requests must be refused exactly when brute force finds nothing.
  assert.ok(outcomes.planned >= 150 && outcomes.infeasible >= 10, JSON.stringify(outcomes));
});

test('planner exact - equals brute force with pins, boundaries and maxStages (fast-check)', () => {
  const outcomes = { planned: 0, infeasible: 0 };
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 3, max: 10 }), fc.integer({ min: 2, max: 5 }),
    fc.constantFrom('throughput' as const, 'latency' as const),
    (seed, n, k, objective) => {
      const r = rng(seed);
      const inst = randomInstance(r, { nodes: n, executors: k });
      inst.executors.forEach((e, i) => { e.labels = i % 2 === 0 ? ['zone=a'] : { zone: 'b' }; });
      const at = Math.floor(r() * n);
      const to = Math.min(n - 1, at + Math.floor(r() * 3));
      const constraints = {
        pins: [{ nodes: [`n${at}`, `n${to}`] as [string, string], labels: [r() < 0.5 ? 'zone=a' : 'zone=b'] }],
        boundaries: r() < 0.5 ? [`n${Math.floor(r() * (n - 1))}`] : [],
        maxStages: 2 + Math.floor(r() * 3),
      };
      outcomes[agree({ ...inst, objective, constraints }, `seed=${seed} n=${n} k=${k} ${objective}`)]++;
    },
  ), { numRuns: 150, seed: 7 });
  assert.ok(outcomes.planned >= 75, JSON.stringify(outcomes));
});

test('planner exact - the local-search fallback is never better than exact and its plans are valid', () => {
  const r = rng(99);
  for (let i = 0; i < 40; i++) {
    const inst = randomInstance(r, { nodes: 6 + Math.floor(r() * 6), executors: 3 + Math.floor(r() * 3) });
    const p = definePlanningProblem(inst);
    const exact = search(p, { objective: 'throughput', method: 'exact' })!;
    const heur = search(p, { objective: 'throughput', method: 'heuristic' })!;
    assert.equal(exact.method, 'exact');
    assert.equal(heur.method, 'heuristic');
    assert.ok(exact.value <= heur.value * (1 + 1e-9));
    const plan = planProblem(p, { method: 'heuristic', replicas: 'none' });
    assert.deepEqual(validatePlan(plan, p).errors, []);
  }
});

test('planner exact - the search value is what the cost model prices the plan at', () => {
  const r = rng(5);
  for (let i = 0; i < 30; i++) {
    const inst = randomInstance(r, { nodes: 200, executors: 4, kind: 'dag' });
    for (const objective of ['throughput', 'latency'] as const) {
      const p = definePlanningProblem({ ...inst, objective });
      const s = search(p, { objective })!;
      const stages = s.sequence.map((e, j) => ({ executor: p.cluster.executors[e].id, nodes: p.graph.ids.slice(s.bounds[j], s.bounds[j + 1]) }));
      const ev = evaluateStages(p.graph, p.cluster, stages);
      assert.ok(Math.abs((objective === 'latency' ? ev.latencySeconds : ev.bottleneckSeconds) - s.value) <= 1e-9 * s.value);
    }
  }
});

test('planner exact - never worse than the greedy and exo-style baselines (when those are valid)', () => {
  const r = rng(1234);
  for (let i = 0; i < 60; i++) {
    const inst = randomInstance(r, { nodes: 30, executors: 2 + Math.floor(r() * 5), kind: 'dag' });
    const p = definePlanningProblem(inst);
    const best = planProblem(p, { replicas: 'none' }).predicted.bottleneckSeconds;
    for (const make of [greedyPlan, exoMemoryProportionalPlan]) {
      let base;
      try { base = make(p); } catch { continue; }
      if (!validatePlan(base, p).ok) continue;
      assert.ok(best <= base.predicted.bottleneckSeconds * (1 + 1e-9), `${make.name}: ${base.predicted.bottleneckSeconds} < planner ${best}`);
    }
  }
});

test('planner exact - the dominance memo never changes the optimum (medium instances, both objectives)', () => {
  const r = rng(77);
  for (let i = 0; i < 40; i++) {
    const inst = randomInstance(r, { nodes: 40 + Math.floor(r() * 200), executors: 4 + Math.floor(r() * 4), kind: 'dag', memoryFraction: [0.15, 1.2] });
    for (const objective of ['throughput', 'latency'] as const) {
      const p = definePlanningProblem({ ...inst, objective });
      const withMemo = search(p, { objective, method: 'exact' });
      const without = search(p, { objective, method: 'exact', memo: false });
      assert.equal(withMemo === null, without === null);
      if (withMemo && without) assert.ok(close(withMemo.value, without.value), `#${i} ${objective}: ${withMemo.value} vs ${without.value}`);
    }
  }
});
