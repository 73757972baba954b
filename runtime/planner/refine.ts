// Measured-stage refinement: node times profiled on an unoptimised model misjudge stages as onnxruntime
// really runs them (optimisation speeds some ops up far more than others, and adds layout reorders at
// cuts). The coordinator plans, times the planned stages as executors run them, corrects the node
// times stage by stage with these pure functions, and plans again until prediction and measurement agree.
import type { PartitionGraph } from '../../protocols/graph.js';
import type { Plan } from '../../protocols/plan.js';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { crossingInOrder, evaluateStages, transferSeconds, type StageAssignment } from './model.js';
import { coreShare } from './hosts.js';
import { buildPlan, definePlanningProblem, type PlanRequest } from './planner.js';
import { validatePlan } from './validate.js';

/** Relative error below which a stage's measured time counts as agreeing with its prediction. */
export const REFINE_TOLERANCE = 0.1;

/**
 * The graph with every profiled node of stage i rescaled by measured_i / predicted_i, predicted_i being
 * the sum of the stage's profiled node times (same host, same seconds). Nodes without a profiled time,
 * and stages with none, are left as they are (their factor is 1).
 */
export function rescaleToStageTimes(graph: PartitionGraph, stages: readonly (readonly string[])[], measuredSeconds: readonly number[]): { graph: PartitionGraph; factors: number[] } {
  const stageOf = new Map<string, number>();
  stages.forEach((ids, i) => ids.forEach((id) => stageOf.set(id, i)));
  const predicted = stages.map(() => 0);
  for (const n of graph.nodes) {
    const i = stageOf.get(n.id);
    if (i !== undefined && n.measuredSeconds !== undefined) predicted[i] += n.measuredSeconds;
  }
  const factors = predicted.map((p, i) => (p > 0 && measuredSeconds[i]! > 0 ? measuredSeconds[i]! / p : 1));
  const nodes = graph.nodes.map((n) => {
    const i = stageOf.get(n.id);
    return i === undefined || n.measuredSeconds === undefined ? n : { ...n, measuredSeconds: n.measuredSeconds * factors[i]! };
  });
  return { graph: { ...graph, nodes }, factors };
}

/** True when every stage's measured time is within REFINE_TOLERANCE of its prediction. */
export function agrees(factors: readonly number[]): boolean {
  return factors.every((f) => Math.abs(f - 1) <= REFINE_TOLERANCE);
}

/**
 * The bottleneck a plan would have with its stages' measured compute (in the measuring host's seconds,
 * scaled to each stage's executor like the planner scales node times) and its predicted transfers.
 */
export function measuredBottleneck(plan: Plan, measuredSeconds: readonly number[], measuringFlopsPerSec: number, executorFlopsPerSec: ReadonlyMap<string, number>): number {
  return Math.max(...plan.stages.map((s, i) => {
    const speed = executorFlopsPerSec.get(s.executor) ?? measuringFlopsPerSec;
    const compute = (measuredSeconds[i]! * measuringFlopsPerSec) / speed;
    const replicas = s.replicas ?? 1;
    return (compute + s.predicted.transferInSeconds + s.predicted.transferOutSeconds) / replicas;
  }));
}

export interface CutAlternativeOptions {
  /** At most this many plans (default 4). */
  count?: number;
  /** Predicted bottleneck at most (1 + slack) × the plan's (default 0.15: about what a prediction from
   *  corrected node times still misses by). */
  slack?: number;
  /** A moved cut must carry at most (1 − this) × the bytes of the cut it replaces (default 0.2). */
  minByteSaving?: number;
}

/**
 * Plans that move one cut of `base` to a place that carries clearly fewer bytes, with the same
 * executors and replicas, whose predicted bottleneck stays within `slack` of base's: the candidates a
 * measurement should decide between. Node times corrected stage by stage predict a moved cut only to
 * ~10 %, and a cut's real price is more than the link model says (the producer's output copy and pool
 * write, the consumer's read, every one on the cores the stages share): on PP-OCRv4 det the planner
 * put a 9.2 MB cut where a 2.6 MB one 0.5 ms away measured 2-4 ms faster. Per cut, the candidates on
 * the Pareto front of (bytes, predicted bottleneck), spread along it; cuts taken in turn. Executors
 * are priced at the share of their host's cores they get with the base plan's executors busy; plans
 * that break a memory cap, pin or stage limit are left out. Pure.
 */
export function cutAlternatives(req: PlanRequest, base: Plan, opts: CutAlternativeOptions = {}): Plan[] {
  const count = opts.count ?? 4;
  const slack = opts.slack ?? 0.15;
  const saving = opts.minByteSaving ?? 0.2;
  if (base.stages.length < 2 || count <= 0) return [];
  const used = new Set(base.stages.flatMap((s) => [s.executor, ...(s.replicaExecutors ?? [])]));
  const share = coreShare(req.executors, used);
  const executors = req.executors.map((e) => (share.get(e.id)! < 1 ? { ...e, flopsPerSec: e.flopsPerSec * share.get(e.id)! } : e));
  const p = definePlanningProblem({ ...req, executors });
  const ids = base.stages.flatMap((s) => s.nodes);
  const order = ids.map((id) => p.graph.index.get(id));
  if (order.some((j) => j === undefined) || order.length !== p.graph.ids.length) {
    throw new CleaveError(ErrorCode.PLAN_INVALID, 'the plan does not cover this graph node for node; give the graph it was planned on');
  }
  const cross = crossingInOrder(p.graph, order as number[]);
  const bounds = [0];
  for (const s of base.stages) bounds.push(bounds[bounds.length - 1]! + s.nodes.length);
  const assign = (b: readonly number[]): StageAssignment[] => base.stages.map((s, i) => ({
    executor: s.executor,
    nodes: ids.slice(b[i], b[i + 1]),
    ...(s.replicaExecutors?.length ? { replicaExecutors: s.replicaExecutors } : {}),
  }));
  const baseEval = evaluateStages(p.graph, p.cluster, assign(bounds));
  const limit = baseEval.bottleneckSeconds * (1 + slack);
  // Moving cut i changes only stages i-1 and i: they are priced here as evaluateStages prices them
  // (compute from a work prefix along the plan's order, the transfers of the cuts at their ends, rate
  // summed over replicas), the others keep their time; buildPlan prices the chosen plans in full.
  const work = new Float64Array(ids.length + 1);
  (order as number[]).forEach((j, k) => { work[k + 1] = work[k]! + p.graph.work[j]!; });
  const exec = (id: string) => p.cluster.byId.get(id)!;
  const stageSeconds = (si: number, from: number, to: number): number => {
    const s = base.stages[si]!;
    const prev = si > 0 ? exec(base.stages[si - 1]!.executor) : undefined;
    const next = si < base.stages.length - 1 ? exec(base.stages[si + 1]!.executor) : undefined;
    let rate = 0;
    for (const id of [s.executor, ...(s.replicaExecutors ?? [])]) {
      const e = exec(id);
      const t = (work[to]! - work[from]!) / e.speed
        + (prev ? transferSeconds(p.cluster, prev.index, e.index, cross[from]!) : 0)
        + (next ? transferSeconds(p.cluster, e.index, next.index, cross[to]!) : 0);
      rate += 1 / t;
    }
    return 1 / rate;
  };
  const perCut: number[][][] = [];
  for (let i = 1; i < base.stages.length; i++) {
    let others = 0;
    baseEval.stages.forEach((st, si) => { if (si !== i - 1 && si !== i) others = Math.max(others, st.stageSeconds); });
    const found: { b: number[]; bytes: number; bottleneck: number }[] = [];
    for (let q = bounds[i - 1]! + 1; q < bounds[i + 1]!; q++) {
      if (q === bounds[i] || !(cross[q]! <= (1 - saving) * cross[bounds[i]!]!) || cross[bounds[i]!] === 0) continue;
      const bottleneck = Math.max(others, stageSeconds(i - 1, bounds[i - 1]!, q), stageSeconds(i, q, bounds[i + 1]!));
      if (bottleneck > limit) continue;
      const b = [...bounds];
      b[i] = q;
      found.push({ b, bytes: cross[q]!, bottleneck });
    }
    // Pareto front: fewer bytes first; keep one only when it predicts better than all with fewer bytes.
    found.sort((x, y) => x.bytes - y.bytes || x.bottleneck - y.bottleneck);
    const front: typeof found = [];
    for (const f of found) if (front.length === 0 || f.bottleneck < front[front.length - 1]!.bottleneck) front.push(f);
    perCut.push(spread(front, count).map((f) => f.b));
  }
  const mb = (x: number) => `${(x / 1e6).toFixed(2)} MB`;
  const out: Plan[] = [];
  for (let k = 0; out.length < count && perCut.some((c) => k < c.length); k++) {
    for (const [ci, c] of perCut.entries()) {
      if (k >= c.length || out.length >= count) continue;
      const b = c[k]!;
      const why = `${base.algorithm}: the cut after stage ${ci} moved to carry ${mb(cross[b[ci + 1]!]!)} instead of ${mb(cross[bounds[ci + 1]!]!)} (a candidate to measure).`;
      const plan = buildPlan(p, assign(b), base.algorithm, why);
      if (validatePlan(plan, p).ok) out.push(plan);
    }
  }
  return out;
}

/** Up to `k` items of `xs` evenly spaced along it, both ends included. */
function spread<T>(xs: readonly T[], k: number): T[] {
  if (xs.length <= k) return [...xs];
  if (k === 1) return [xs[0]!];
  return Array.from({ length: k }, (_, i) => xs[Math.round((i * (xs.length - 1)) / (k - 1))]!);
}
