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

/**
 * Relative error below which a stage's measured time counts as agreeing with its prediction. The
 * planner balances predicted stages, so this is also how far apart the measured stages may end up
 * (two stages: up to ~2x this): 10 % left PP-OCRv4 det's two stages 44 / 47 ms apart where a cut ~1.5
 * ms earlier balances them. A stage's timing (best of 7) repeats to ~1-3 % here.
 */
export const REFINE_TOLERANCE = 0.03;
/** Plan-and-time rounds at most (each times every planned stage once: about a second on PP-OCRv4 det). */
export const REFINE_ROUNDS = 5;
/** Refined plans timed within this of the best are timed again beside it before one is chosen. */
export const FINALIST_MARGIN = 0.03;

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
export function agrees(factors: readonly number[], tolerance = REFINE_TOLERANCE): boolean {
  return factors.every((f) => Math.abs(f - 1) <= tolerance);
}

/** What refineByTiming needs from the cluster: a planner, a timer of plans, a pricing of measured stages. */
export interface RefineDeps {
  /** A plan for the graph (node times as given). */
  plan(graph: PartitionGraph): Promise<Plan>;
  /** Plans near `base` whose cuts carry fewer bytes (cutAlternatives), for the throughput objective. */
  alternatives?(graph: PartitionGraph, base: Plan): Promise<Plan[]>;
  /** Seconds per stage of every plan, timed side by side as executors run them: seconds[plan][stage]. */
  time(plans: readonly Plan[]): Promise<number[][]>;
  /** The bottleneck a plan has with these measured stage seconds (measuredBottleneck, priced for its hosts). */
  bottleneck(plan: Plan, seconds: readonly number[]): number;
  log?(msg: string, fields: Record<string, unknown>, level?: 'info' | 'warn'): void;
  rounds?: number;
  tolerance?: number;
  /** Refined plans within FINALIST_MARGIN of the best, at most this many, timed again beside it (default 2). */
  finalists?: number;
}

/**
 * Plans, times the planned stages as executors will run them, corrects node times stage by stage and
 * plans again, until prediction and measurement agree within `tolerance`, the planner comes back to a
 * plan already timed, or `rounds` run out: profiled node times come from an unoptimised run and
 * misjudge optimised stages by up to 2x. Then the best refined plans (by measured bottleneck) and, for
 * throughput, cuts near the best that carry clearly fewer bytes are timed again side by side (timings
 * of separate rounds do not compare fairly on a noisy host: a burst lands on one) and the smallest
 * measured bottleneck wins. Without profiled times there is nothing to correct; a timing that fails
 * keeps the best plan so far.
 */
export async function refineByTiming(graph: PartitionGraph, deps: RefineDeps): Promise<Plan> {
  const rounds = deps.rounds ?? REFINE_ROUNDS;
  const tolerance = deps.tolerance ?? REFINE_TOLERANCE;
  const log = deps.log ?? (() => {});
  const ms = (x: number) => Math.round(x * 1e4) / 10;
  let plan = await deps.plan(graph);
  if (!graph.profile?.flopsPerSec || plan.stages.length < 2) return plan;
  const key = (p: Plan) => JSON.stringify(p.stages.map((s) => [s.executor, ...(s.replicaExecutors ?? []), '|', ...[...s.nodes].sort()]));
  const timed: { plan: Plan; bottleneck: number; graph: PartitionGraph }[] = [];
  const seen = new Set([key(plan)]);
  const bestOf = () => timed.reduce((a, b) => (b.bottleneck < a.bottleneck ? b : a));
  for (let round = 1; round <= rounds; round++) {
    let seconds: number[];
    try {
      seconds = (await deps.time([plan]))[0]!;
    } catch (e) {
      log('could not time the planned stages; keeping the best plan so far', { error: String(e) }, 'warn');
      return timed.length ? bestOf().plan : plan;
    }
    const { graph: corrected, factors } = rescaleToStageTimes(graph, plan.stages.map((s) => s.nodes), seconds);
    timed.push({ plan, bottleneck: deps.bottleneck(plan, seconds), graph: corrected });
    log('timed the planned stages', { round, measuredMs: seconds.map(ms), factors: factors.map((f) => Math.round(f * 100) / 100) });
    if (agrees(factors, tolerance)) break;
    graph = corrected;
    const next = await deps.plan(graph);
    if (seen.has(key(next))) break;
    seen.add(key(next));
    plan = next;
  }
  const best = bestOf();
  // Earlier plans close enough to the best that a round's noise may have ranked them wrongly.
  const finalists = timed
    .filter((t) => t !== best && t.bottleneck <= best.bottleneck * (1 + FINALIST_MARGIN))
    .sort((a, b) => a.bottleneck - b.bottleneck)
    .slice(0, deps.finalists ?? 2)
    .map((t) => t.plan);
  try {
    const alternatives = best.plan.objective === 'throughput' && deps.alternatives ? await deps.alternatives(best.graph, best.plan) : [];
    const candidates = [best.plan, ...finalists, ...alternatives];
    if (candidates.length === 1) return best.plan;
    const seconds = await deps.time(candidates);
    const measured = candidates.map((p, i) => deps.bottleneck(p, seconds[i]!));
    const winner = measured.indexOf(Math.min(...measured));
    log('timed the best refined plans and cuts that carry fewer bytes side by side', {
      cutMB: candidates.map((p) => p.stages.slice(1).map((s) => Math.round(s.predicted.inputBytes / 1e4) / 100)),
      measuredMs: seconds.map((s) => s.map(ms)),
      measuredBottleneckMs: measured.map(ms),
      refined: 1 + finalists.length,
      chosen: winner,
    });
    if (winner === 0) return best.plan;
    const chosen = candidates[winner]!;
    const what = winner <= finalists.length ? 'an earlier refined plan' : 'a cut that carries fewer bytes';
    return { ...chosen, explanation: `${chosen.explanation} Chosen (${what}) by timing it beside the best refined plan: bottleneck ${ms(measured[winner]!)} ms against ${ms(measured[0]!)} ms.` };
  } catch (e) {
    log('could not time the final candidates side by side; keeping the best refined plan', { error: String(e) }, 'warn');
    return best.plan;
  }
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
