// Planner: partition graph + executor profiles + links + constraints → Plan (stages as contiguous
// ranges of the node order, executors, replicas, predicted times, explanation). Pure; no I/O.
//
// Cost model (see docs/PLANNER.md):
// - node time on executor e = work / e.flopsPerSec; work = flops, or measuredSeconds × measuredFlopsPerSec
//   when the request gives the measuring host's speed;
// - stage time = compute + receive of its input cut + send of its output cut, each transfer
//   latency + bytes / bandwidth of the link between consecutive stages' executors; tensors crossing
//   several cuts are relayed by every stage in between; graph inputs and outputs are not priced;
// - bottleneck = max stage time (replicas: stage rate = Σ 1/time over its executors);
//   latency = Σ compute + each inter-stage transfer once;
// - memory of a stage = its params + max over its nodes of (bytes live across the node's cut + its output).
export {
  assertValidPlan, validatePlan,
} from './validate.js';
export {
  buildPlan, definePlanningProblem, exoMemoryProportionalPlan, greedyPlan, plan, planProblem,
} from './planner.js';
export {
  DEFAULT_LINK, crossingBytes, evaluateStages, labelSet, normaliseCluster, normaliseGraph, resolveConstraints, transferSeconds,
} from './model.js';
export { search } from './search.js';
export { agrees, cutAlternatives, measuredBottleneck, refineByTiming, rescaleToStageTimes, REFINE_ROUNDS, REFINE_TOLERANCE } from './refine.js';
export type { CutAlternativeOptions, RefineDeps } from './refine.js';
export { bruteForce } from './bruteforce.js';
export { coreShare, offerExecutors, oversubscribedHosts, usageCombinations } from './hosts.js';

export type { PlanRequest, PlanningProblem } from './planner.js';
export type { PlanValidation } from './validate.js';
export type {
  Cluster, CrossingUnit, Evaluation, GraphInput, NormaliseOptions, PlannerExecutor, PlannerGraph, ResolvedConstraints, StageAssignment,
} from './model.js';
export type { SearchOptions, SearchProblem, SearchResult } from './search.js';
export type { BruteForceResult } from './bruteforce.js';
export { randomInstance, rng } from './random.js';
export type { RandomInstance, RandomInstanceOptions } from './random.js';
