// Plan requests end to end: normalise inputs, search, add spare executors as replicas, price the
// result with the one cost model, explain it, and diagnose infeasible requests into typed errors.
import { CleaveError, ErrorCode, isCleaveError } from '../../protocols/errors.js';
import type { PartitionGraph } from '../../protocols/graph.js';
import type { Constraints, ExecutorProfile, Link, LinkTable, Objective, Plan, PlanStage } from '../../protocols/plan.js';
import {
  evaluateStages, normaliseCluster, normaliseGraph, resolveConstraints,
  type Cluster, type Evaluation, type GraphInput, type PlannerGraph, type ResolvedConstraints, type StageAssignment,
} from './model.js';
import { search, type SearchProblem } from './search.js';
import { offerExecutors, oversubscribedHosts, usageCombinations } from './hosts.js';

export interface PlanRequest {
  graph: GraphInput | PartitionGraph;
  executors: ExecutorProfile[];
  /** A link table, or a plain list of links (pairs not listed use 1 GB/s and 0.2 ms). */
  links?: LinkTable | Link[];
  constraints?: Constraints;
  /** Default `throughput`. */
  objective?: Objective;
  /**
   * `spare` (default for throughput): executors the plan leaves out become replicas of the bottleneck
   * stage while that lowers it. `none`: one executor per stage (default for latency; replicas do not
   * shorten one request).
   */
  replicas?: 'none' | 'spare';
  /** FLOP/s of the host that measured nodes' `measuredSeconds`; when given those are used instead of flops. */
  measuredFlopsPerSec?: number;
  /** `auto` (exact when within budget, else local search), `exact`, `heuristic`, or a baseline. */
  algorithm?: 'auto' | 'exact' | 'heuristic' | 'greedy' | 'exo-memory-proportional';
  /** Element steps the exact search may spend before falling back to local search (default 2e7). */
  exactBudget?: number;
}

/** A request with its inputs normalised once (reuse it to plan the same inputs several ways). */
export interface PlanningProblem extends SearchProblem {
  objective: Objective;
}

export function definePlanningProblem(req: PlanRequest): PlanningProblem {
  const graph = normaliseGraph(req.graph, { measuredFlopsPerSec: req.measuredFlopsPerSec });
  const cluster = normaliseCluster(req.executors, req.links ?? {});
  const constraints = resolveConstraints(graph, cluster, req.constraints);
  const objective = req.objective ?? 'throughput';
  if (objective !== 'throughput' && objective !== 'latency') {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `objective '${String(objective)}' is not one of throughput, latency`);
  }
  return { graph, cluster, constraints, objective };
}

/** Plans a request: the optimal plan for its objective under its constraints (see docs in mod.ts). */
export function plan(req: PlanRequest): Plan {
  const groups = oversubscribedHosts(req.executors ?? []);
  if (groups.length === 0) return planOnce(req);
  // Executors of a host share its cores: plan with each number of them in use, priced at the share of
  // speed each then gets, and keep the best plan (the one with all of them is among the candidates).
  let best: { plan: Plan; left: string[]; counts: number[] } | undefined;
  let firstError: unknown;
  for (const counts of usageCombinations(groups).reverse()) {
    const { offered, left } = offerExecutors(req.executors, groups, counts);
    let candidate: Plan;
    try {
      candidate = planOnce({ ...req, executors: offered });
    } catch (e) {
      if (!isCleaveError(e, ErrorCode.PLAN_INFEASIBLE)) throw e;
      firstError ??= e;
      continue;
    }
    if (!best || better(candidate, best.plan, req.objective ?? 'throughput')) best = { plan: candidate, left, counts };
  }
  if (!best) throw firstError;
  const { plan: chosen, left, counts } = best;
  const shared = groups
    .map((g, i) => `${g.host} has ${g.cores} core(s) for ${g.members.length} executor(s): ${counts[i]} offered${counts[i]! < g.members.length ? ` (${g.members.slice(counts[i]).map((m) => m.id).join(', ')} held back)` : ''}`)
    .join('; ');
  return {
    ...chosen,
    ...(left.length || chosen.unusedExecutors?.length ? { unusedExecutors: [...(chosen.unusedExecutors ?? []), ...left] } : {}),
    explanation: `${chosen.explanation} Executors of one host share its cores (speeds priced at each one's share): ${shared}.`,
  };
}

/** Lower objective value; on a tie, fewer executors (less contention that the model does not see). */
function better(a: Plan, b: Plan, objective: Objective): boolean {
  const va = objective === 'latency' ? a.predicted.latencySeconds : a.predicted.bottleneckSeconds;
  const vb = objective === 'latency' ? b.predicted.latencySeconds : b.predicted.bottleneckSeconds;
  if (Math.abs(va - vb) > 1e-9 * Math.max(va, vb)) return va < vb;
  const used = (p: Plan) => p.stages.reduce((n, s) => n + (s.replicas ?? 1), 0);
  return used(a) < used(b);
}

function planOnce(req: PlanRequest): Plan {
  const p = definePlanningProblem(req);
  const algorithm = req.algorithm ?? 'auto';
  if (algorithm === 'greedy') return greedyPlan(p);
  if (algorithm === 'exo-memory-proportional') return exoMemoryProportionalPlan(p);
  const replicas = req.replicas ?? (p.objective === 'throughput' ? 'spare' : 'none');
  return planProblem(p, { method: algorithm, replicas, exactBudget: req.exactBudget });
}

export function planProblem(p: PlanningProblem, opts: { method?: 'auto' | 'exact' | 'heuristic'; replicas?: 'none' | 'spare'; exactBudget?: number } = {}): Plan {
  checkObviousInfeasibility(p);
  const r = search(p, { objective: p.objective, method: opts.method, exactBudget: opts.exactBudget });
  if (!r) throw diagnoseInfeasible(p, opts.method);
  let stages: StageAssignment[] = r.sequence.map((e, i) => ({
    executor: p.cluster.executors[e].id,
    nodes: p.graph.ids.slice(r.bounds[i], r.bounds[i + 1]),
  }));
  const replicaNotes: string[] = [];
  if ((opts.replicas ?? 'none') === 'spare' && p.objective === 'throughput') stages = addSpareReplicas(p, stages, replicaNotes);
  const why = r.method === 'exact'
    ? 'exact: optimal over every executor subset, order and cut position'
    : 'heuristic: local search over executor sequences, each with optimal cuts (too many executors for the exact search)';
  return buildPlan(p, stages, r.method, `${why}.`, replicaNotes);
}

/** A stage list priced and explained as a Plan. */
export function buildPlan(p: PlanningProblem, stages: StageAssignment[], algorithm: string, lead: string, notes: string[] = []): Plan {
  const ev = evaluateStages(p.graph, p.cluster, stages);
  const planStages: PlanStage[] = stages.map((s, i) => ({
    executor: s.executor,
    nodes: s.nodes,
    ...(s.replicaExecutors?.length ? { replicas: 1 + s.replicaExecutors.length, replicaExecutors: s.replicaExecutors } : {}),
    predicted: ev.stages[i],
  }));
  const usedIds = new Set(stages.flatMap((s) => [s.executor, ...(s.replicaExecutors ?? [])]));
  const unused = p.cluster.executors.filter((e) => !usedIds.has(e.id)).map((e) => e.id);
  return {
    version: 1,
    ...(p.graph.model ? { model: p.graph.model } : {}),
    objective: p.objective,
    algorithm,
    stages: planStages,
    predicted: {
      bottleneckSeconds: ev.bottleneckSeconds,
      latencySeconds: ev.latencySeconds,
      throughputPerSec: ev.bottleneckSeconds > 0 ? 1 / ev.bottleneckSeconds : Infinity,
      bottleneckStage: ev.bottleneckStage,
    },
    ...(unused.length ? { unusedExecutors: unused } : {}),
    explanation: explain(p, stages, ev, unused, lead, notes),
  };
}

/** Stage eligibility for executor e: memory and pins for every node of the stage. */
function canServe(p: PlanningProblem, e: number, nodes: string[], memoryBytes: number): boolean {
  const ex = p.cluster.executors[e];
  if (memoryBytes > ex.memory) return false;
  return nodes.every((id) => p.constraints.allowed[e][p.graph.index.get(id)!]);
}

/**
 * Spare executors as replicas: while some executor is unused, add to the bottleneck stage the one that
 * lowers that stage's time most (stage rate = Σ 1/time of its executors); stop when none lowers it.
 */
function addSpareReplicas(p: PlanningProblem, stages: StageAssignment[], notes: string[]): StageAssignment[] {
  const cur = stages.map((s) => ({ ...s, replicaExecutors: [...(s.replicaExecutors ?? [])] }));
  for (;;) {
    const ev = evaluateStages(p.graph, p.cluster, cur);
    const used = new Set(cur.flatMap((s) => [s.executor, ...s.replicaExecutors]));
    const b = ev.bottleneckStage;
    let bestId: string | undefined;
    let bestTime = ev.stages[b].stageSeconds;
    for (const ex of p.cluster.executors) {
      if (used.has(ex.id) || !canServe(p, ex.index, cur[b].nodes, ev.stages[b].memoryBytes)) continue;
      const trial = cur.map((s, i) => (i === b ? { ...s, replicaExecutors: [...s.replicaExecutors, ex.id] } : s));
      const t = evaluateStages(p.graph, p.cluster, trial).stages[b].stageSeconds;
      if (t < bestTime * (1 - 1e-9)) { bestTime = t; bestId = ex.id; }
    }
    if (!bestId) break;
    cur[b].replicaExecutors.push(bestId);
    notes.push(`${bestId} added as a replica of stage ${b} (${fmtS(ev.stages[b].stageSeconds)} → ${fmtS(bestTime)})`);
  }
  return cur.map((s) => (s.replicaExecutors.length ? s : { executor: s.executor, nodes: s.nodes }));
}

// ---------------------------------------------------------------------------------------------
// Baselines, priced by the same cost model.

/**
 * Seed-style greedy ("fill the best executor first"): executors by speed, fastest first; nodes in
 * order go to the current executor until its memory (or a pin, or a manual boundary) stops them, then
 * to the next fastest executor that can take the node.
 */
export function greedyPlan(p: PlanningProblem): Plan {
  const { graph: g, cluster: c, constraints: rc } = p;
  const order = c.executors.map((e) => e.index).sort((a, b) => c.executors[b].speed - c.executors[a].speed || a - b);
  const required = new Set(rc.boundaries);
  const stages: { e: number; from: number; to: number }[] = [];
  let oi = 0, params = 0, act = 0;
  for (let j = 0; j < g.ids.length; j++) {
    const cur = stages[stages.length - 1];
    const fitsCur = cur && !required.has(j) && rc.allowed[cur.e][j]
      && params + g.params[j] + Math.max(act, g.act[j]) <= c.executors[cur.e].memory;
    if (fitsCur) { cur.to = j + 1; params += g.params[j]; act = Math.max(act, g.act[j]); continue; }
    while (oi < order.length && !(rc.allowed[order[oi]][j] && g.params[j] + g.act[j] <= c.executors[order[oi]].memory)) oi++;
    if (oi >= order.length || stages.length >= rc.maxStages) {
      throw new CleaveError(ErrorCode.PLAN_INFEASIBLE, `greedy baseline ran out of executors at node '${g.ids[j]}'; the optimal planner may still find a plan`);
    }
    stages.push({ e: order[oi++], from: j, to: j + 1 });
    params = g.params[j]; act = g.act[j];
  }
  const assign = stages.map((s) => ({ executor: c.executors[s.e].id, nodes: g.ids.slice(s.from, s.to) }));
  return buildPlan(p, assign, 'greedy', 'greedy baseline: fill the fastest executor first, then the next.');
}

/**
 * exo-style: every executor, in descending memory order, gets a share of the nodes proportional to its
 * memory (exo's ring memory-weighted partitioning). Ignores speed, links, pins and memory caps.
 */
export function exoMemoryProportionalPlan(p: PlanningProblem): Plan {
  const { graph: g, cluster: c } = p;
  const n = g.ids.length;
  const order = c.executors.slice().sort((a, b) => b.memory - a.memory || a.index - b.index);
  const finite = order.map((e) => (Number.isFinite(e.memory) ? e.memory : 0));
  const total = finite.reduce((s, m) => s + m, 0);
  const weights = total > 0 ? finite.map((m) => m / total) : order.map(() => 1 / order.length);
  const stages: StageAssignment[] = [];
  let cum = 0, from = 0;
  order.forEach((e, i) => {
    cum += weights[i];
    const to = i === order.length - 1 ? n : Math.min(n, Math.round(cum * n));
    if (to > from) { stages.push({ executor: e.id, nodes: g.ids.slice(from, to) }); from = to; }
  });
  return buildPlan(p, stages, 'exo-memory-proportional', 'exo-style baseline: nodes in proportion to executor memory, in memory order.');
}

// ---------------------------------------------------------------------------------------------
// Infeasibility

function checkObviousInfeasibility(p: PlanningProblem): void {
  const { graph: g, cluster: c, constraints: rc } = p;
  const n = g.ids.length;
  const totalParams = g.paramPrefix[n];
  const totalMemory = c.executors.reduce((s, e) => s + e.memory, 0);
  if (totalParams > totalMemory) {
    throw new CleaveError(ErrorCode.PLAN_INFEASIBLE_MEMORY,
      `the model's parameters (${fmtB(totalParams)}) exceed the memory of all ${c.executors.length} executors together (${fmtB(totalMemory)}); add executors or memory, or quantise the model`,
      { details: { paramBytes: totalParams, memoryBytes: totalMemory } });
  }
  for (let j = 0; j < n; j++) {
    const need = g.params[j] + g.act[j];
    const homes = c.executors.filter((e) => rc.allowed[e.index][j]);
    if (!homes.some((e) => need <= e.memory)) {
      const most = Math.max(...homes.map((e) => e.memory));
      throw new CleaveError(ErrorCode.PLAN_INFEASIBLE_MEMORY,
        `node '${g.ids[j]}' alone needs ${fmtB(need)} (params ${fmtB(g.params[j])} + activations ${fmtB(g.act[j])}) but the largest executor allowed to run it has ${fmtB(most)}; add a larger executor${rc.pins.length ? ' or relax its pin' : ''}`,
        { details: { node: g.ids[j], needBytes: need, largestMemoryBytes: most } });
    }
  }
}

/** Re-runs the search with one constraint family lifted to name the one that makes the request infeasible. */
function diagnoseInfeasible(p: PlanningProblem, method?: 'auto' | 'exact' | 'heuristic'): CleaveError {
  const opts = { objective: p.objective, method } as const;
  const noMem = search({ ...p, ignoreMemory: true }, opts);
  if (noMem) {
    const totalNeed = p.graph.paramPrefix[p.graph.ids.length];
    return new CleaveError(ErrorCode.PLAN_INFEASIBLE_MEMORY,
      `no contiguous split fits the executors' memory${p.constraints.pins.length || p.constraints.boundaries.length ? ' under the given pins and boundaries' : ''} (model params ${fmtB(totalNeed)}, executors ${p.cluster.executors.map((e) => `${e.id}=${fmtB(e.memory)}`).join(', ')}${Number.isFinite(p.constraints.maxStages) ? `, at most ${p.constraints.maxStages} stages` : ''}); add memory or executors, or lift constraints`,
      { details: { paramBytes: totalNeed } });
  }
  if (p.constraints.pins.length > 0) {
    const noPins = search({ ...p, ignorePins: true, ignoreMemory: true }, opts);
    if (noPins) {
      const desc = p.constraints.pins.map((pin) => `${p.graph.ids[pin.from]}${pin.to > pin.from ? `..${p.graph.ids[pin.to]}` : ''} → [${pin.labels.join(', ')}] (${pin.executors.map((e) => p.cluster.executors[e].id).join(', ')})`).join('; ');
      return new CleaveError(ErrorCode.PLAN_INFEASIBLE_PIN,
        `the pins cannot all hold with stages as contiguous ranges of the node order, one executor each (${desc}); pin whole ranges to one label set or add executors with the needed labels`,
        { details: { pins: p.constraints.pins.map((pin) => ({ from: p.graph.ids[pin.from], to: p.graph.ids[pin.to], labels: pin.labels })) } });
    }
  }
  const k = p.cluster.executors.length;
  const need = p.constraints.boundaries.length + 1;
  if (need > k) {
    return new CleaveError(ErrorCode.PLAN_INFEASIBLE,
      `${need - 1} manual boundaries need ${need} stages but there are ${k} executors and each stage needs its own executor; add executors or drop boundaries`,
      { details: { stagesNeeded: need, executors: k } });
  }
  const cap = Number.isFinite(p.constraints.maxStages) ? `at most ${p.constraints.maxStages} stages, ` : '';
  return new CleaveError(ErrorCode.PLAN_INFEASIBLE,
    `no plan satisfies the constraints (${cap}${need - 1} manual boundaries, ${k} executors, each stage on its own executor); add executors, drop boundaries or raise maxStages`);
}

// ---------------------------------------------------------------------------------------------
// Explanation

function explain(p: PlanningProblem, stages: StageAssignment[], ev: Evaluation, unused: string[], lead: string, notes: string[]): string {
  const lines: string[] = [lead];
  const b = ev.bottleneckStage;
  const s = ev.stages[b];
  const st = stages[b];
  const link = s.transferInSeconds + s.transferOutSeconds;
  const bound = s.computeSeconds >= link ? 'compute' : 'link';
  lines.push(`${stages.length} stage${stages.length > 1 ? 's' : ''}; ${p.objective === 'latency' ? `latency ${fmtS(ev.latencySeconds)} end to end; ` : ''}bottleneck is stage ${b} on ${st.executor}${st.replicaExecutors?.length ? ` (+${st.replicaExecutors.length} replica${st.replicaExecutors.length > 1 ? 's' : ''})` : ''} at ${fmtS(s.stageSeconds)} per request (compute ${fmtS(s.computeSeconds)}, receive ${fmtS(s.transferInSeconds)}, send ${fmtS(s.transferOutSeconds)}): ${bound}-bound.`);
  // Memory binds when a neighbour of the bottleneck is full and could not take its nodes.
  for (const i of [b - 1, b + 1]) {
    if (i < 0 || i >= stages.length) continue;
    const ex = p.cluster.byId.get(stages[i].executor)!;
    if (ev.stages[i].memoryBytes >= 0.9 * ex.memory) {
      lines.push(`Memory also binds: stage ${i} on ${ex.id} uses ${fmtB(ev.stages[i].memoryBytes)} of ${fmtB(ex.memory)} and cannot take more of the bottleneck's nodes.`);
    }
  }
  for (const n of notes) lines.push(`Replica: ${n}.`);
  if (unused.length) {
    const reasons = unused.map((id) => {
      const e = p.cluster.byId.get(id)!;
      const smallest = Math.min(...p.graph.ids.map((_, j) => p.graph.params[j] + p.graph.act[j]));
      if (smallest > e.memory) return `${id} (memory ${fmtB(e.memory)} holds no node)`;
      if (stages.length >= p.constraints.maxStages) return `${id} (maxStages ${p.constraints.maxStages} reached)`;
      return `${id} (a stage on it would not lower the ${p.objective === 'latency' ? 'latency' : 'bottleneck'}: ${fmtFlops(e.speed)}, its links cost more than it saves)`;
    });
    lines.push(`Left out: ${reasons.join('; ')}.`);
  }
  return lines.join(' ');
}

export function fmtS(s: number): string {
  if (!Number.isFinite(s)) return String(s);
  if (s >= 1) return `${s.toFixed(3)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(3)} ms`;
  return `${(s * 1e6).toFixed(1)} µs`;
}

export function fmtB(b: number): string {
  if (!Number.isFinite(b)) return String(b);
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (b >= 1000 && i < u.length - 1) { b /= 1000; i++; }
  return `${b.toFixed(b >= 100 || i === 0 ? 0 : 1)} ${u[i]}`;
}

function fmtFlops(f: number): string {
  return `${fmtB(f).replace('B', 'FLOP')}/s`;
}

export type { Cluster, PlannerGraph, ResolvedConstraints };
