// `cleave bench planner [--json] [--instances N] [--seed S]`: the planner against brute force on small
// random instances, against the exo-style and greedy baselines, and its planning time on big graphs.
import { parseCommandArgs } from '../runtime/cli/args.js';
import { usageOf } from '../runtime/cli/usage.js';
import { median, round } from './stats.js';
import { isCleaveError } from '../protocols/errors.js';
import type { Plan } from '../protocols/plan.js';
import {
  bruteForce, definePlanningProblem, exoMemoryProportionalPlan, greedyPlan, plan, planProblem, randomInstance, rng, validatePlan,
  type PlanningProblem,
} from '../runtime/planner/mod.js';

const REL = 1e-9;

interface Ratios { median: number; p95: number; min: number; instances: number; baselineInvalid: number }

export default async function benchPlanner(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(usageOf('bench'), {
    args: argv,
    options: {
      json: { type: 'boolean' },
      instances: { type: 'string', default: '1000' },
      medium: { type: 'string', default: '200' },
      seed: { type: 'string', default: '20261124' },
    },
  });
  const instances = Number(values.instances);
  const seed = Number(values.seed);
  const r = rng(seed);
  const t0 = performance.now();

  // 1. Small instances: planner vs brute force (both objectives) and vs baselines (throughput).
  let exactMatches = 0, feasible = 0, infeasibleAgreed = 0, latencyMatches = 0, latencyFeasible = 0, heuristicPlans = 0;
  const mismatches: { instance: number; objective: string; planner: number | null; bruteForce: number | null }[] = [];
  const exoRatios: number[] = [], greedyRatios: number[] = [];
  let exoInvalid = 0, greedyInvalid = 0;
  for (let i = 0; i < instances; i++) {
    const inst = randomInstance(r, {
      nodes: 4 + Math.floor(r() * 9), executors: 2 + Math.floor(r() * 5),
      kind: i % 2 === 0 ? 'chain' : 'dag', memoryFraction: [0.2, 1.2],
    });
    for (const objective of ['throughput', 'latency'] as const) {
      const p = definePlanningProblem({ ...inst, objective });
      const bf = bruteForce(p, objective);
      const mine = tryPlan(p);
      if (mine && mine.algorithm !== 'exact') heuristicPlans++;
      if (mine && !validatePlan(mine, p).ok) throw new Error(`instance ${i}: planner produced an invalid plan: ${validatePlan(mine, p).errors.join('; ')}`);
      const v = mine ? (objective === 'latency' ? mine.predicted.latencySeconds : mine.predicted.bottleneckSeconds) : null;
      const match = bf === null ? v === null : v !== null && Math.abs(v - bf.value) <= REL * bf.value;
      if (objective === 'throughput') {
        if (bf === null) { if (match) infeasibleAgreed++; } else { feasible++; if (match) exactMatches++; }
      } else if (bf !== null) { latencyFeasible++; if (match) latencyMatches++; }
      if (!match) mismatches.push({ instance: i, objective, planner: v, bruteForce: bf?.value ?? null });
      if (objective === 'throughput' && mine) {
        const ex = baselineRatio(p, mine, exoMemoryProportionalPlan);
        if (ex === null) exoInvalid++; else exoRatios.push(ex);
        const gr = baselineRatio(p, mine, greedyPlan);
        if (gr === null) greedyInvalid++; else greedyRatios.push(gr);
      }
    }
  }
  const smallMs = performance.now() - t0;

  // 2. Medium instances (50–200 nodes): baselines only (too big for brute force).
  const medExo: number[] = [], medGreedy: number[] = [];
  let medExoInvalid = 0, medGreedyInvalid = 0;
  const mediumCount = Number(values.medium);
  for (let i = 0; i < mediumCount; i++) {
    const inst = randomInstance(r, { nodes: 50 + Math.floor(r() * 151), executors: 2 + Math.floor(r() * 5), kind: 'dag', memoryFraction: [0.2, 1.2] });
    const p = definePlanningProblem(inst);
    const mine = tryPlan(p);
    if (!mine) continue;
    const ex = baselineRatio(p, mine, exoMemoryProportionalPlan);
    if (ex === null) medExoInvalid++; else medExo.push(ex);
    const gr = baselineRatio(p, mine, greedyPlan);
    if (gr === null) medGreedyInvalid++; else medGreedy.push(gr);
  }

  // 3. Planning time, end to end (normalise + search + replicas + explanation), 6 heterogeneous executors.
  const timing: Record<string, number | string> = {};
  for (const [nodes, executors] of [[1000, 6], [10000, 6], [10000, 8]] as const) {
    const inst = randomInstance(rng(seed + nodes + executors), { nodes, executors, kind: 'dag', memoryFraction: [0.2, 1.2] });
    plan(inst); // warm-up
    const times: number[] = [];
    let algorithm = '';
    for (let rep = 0; rep < 3; rep++) {
      const s = performance.now();
      algorithm = plan(inst).algorithm;
      times.push(performance.now() - s);
    }
    const key = `nodes${nodes}${executors === 6 ? '' : `k${executors}`}`;
    timing[`${key}Ms`] = round(median(times), 1);
    timing[`${key}Algorithm`] = algorithm;
  }

  const report = {
    instances,
    seed,
    exactMatches,
    exactFraction: round(exactMatches / Math.max(1, feasible), 4),
    feasibleInstances: feasible,
    infeasibleAgreed,
    latency: { exactMatches: latencyMatches, feasibleInstances: latencyFeasible, exactFraction: round(latencyMatches / Math.max(1, latencyFeasible), 4) },
    heuristicPlans,
    mismatches: mismatches.slice(0, 10),
    vsExo: ratios(exoRatios, exoInvalid),
    vsGreedy: ratios(greedyRatios, greedyInvalid),
    medium: { instances: mediumCount, vsExo: ratios(medExo, medExoInvalid), vsGreedy: ratios(medGreedy, medGreedyInvalid) },
    timing,
    smallInstancesSeconds: round(smallMs / 1000, 1),
  };
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(`planner vs brute force: ${exactMatches}/${feasible} throughput optima (${(100 * report.exactFraction).toFixed(1)}%), ${latencyMatches}/${latencyFeasible} latency optima; ${infeasibleAgreed} infeasible instances refused by both`);
    console.log(`bottleneck ratio baseline / planner (small): exo median ${report.vsExo.median} p95 ${report.vsExo.p95}; greedy median ${report.vsGreedy.median} p95 ${report.vsGreedy.p95}`);
    console.log(`bottleneck ratio baseline / planner (50–200 nodes): exo median ${report.medium.vsExo.median} p95 ${report.medium.vsExo.p95}; greedy median ${report.medium.vsGreedy.median} p95 ${report.medium.vsGreedy.p95}`);
    console.log(`planning time: ${Object.entries(timing).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  }
  return mismatches.length === 0 ? 0 : 1;
}

function tryPlan(p: PlanningProblem): Plan | null {
  try {
    return planProblem(p, { replicas: 'none' });
  } catch (e) {
    if (isCleaveError(e) && e.code.startsWith('PLAN_INFEASIBLE')) return null;
    throw e;
  }
}

/** Baseline bottleneck / planner bottleneck, or null when the baseline has no valid plan (e.g. memory overflow). */
function baselineRatio(p: PlanningProblem, mine: Plan, make: (p: PlanningProblem) => Plan): number | null {
  let base: Plan;
  try { base = make(p); } catch { return null; }
  if (!validatePlan(base, p).ok) return null;
  return base.predicted.bottleneckSeconds / mine.predicted.bottleneckSeconds;
}

function ratios(xs: number[], invalid: number): Ratios {
  const s = xs.slice().sort((a, b) => a - b);
  const q = (f: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(f * s.length))] : NaN);
  return { median: round(q(0.5), 3), p95: round(q(0.95), 3), min: round(s[0] ?? NaN, 3), instances: s.length, baselineInvalid: invalid };
}

