// Measured-stage refinement: node times profiled on an unoptimised model misjudge stages as onnxruntime
// really runs them (optimisation speeds some ops up far more than others, and adds layout reorders at
// cuts). The coordinator plans, times the planned stages as executors run them, corrects the node
// times stage by stage with these pure functions, and plans again until prediction and measurement agree.
import type { PartitionGraph } from '../../protocols/graph.js';
import type { Plan } from '../../protocols/plan.js';

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
