// The plan: what Planner emits and `cleave split` / the Coordinator consume (wire shapes, JSON-safe),
// plus the executor profiles, links and constraints a plan is made from.

/** What the planner minimises. */
export const Objective = {
  /** The bottleneck stage time (pipelined requests per second = 1 / bottleneck). */
  throughput: 'throughput',
  /** The end-to-end time of one request (sum of compute and of each link transfer once). */
  latency: 'latency',
} as const;
export type Objective = (typeof Objective)[keyof typeof Objective];

/** One executor as the planner sees it. */
export interface ExecutorProfile {
  id: string;
  /** Sustained FLOP/s on this model's kind of work. */
  flopsPerSec: number;
  /** Bytes a stage on this executor may use (params + peak activations). */
  memoryBytes: number;
  /** `["region=eu", "gpu"]` or `{ region: "eu" }` (a record becomes `key=value` strings). */
  labels?: string[] | Record<string, string>;
  /** The machine it runs on: executors of one host share its `cores` (runtime/planner/hosts.ts). */
  host?: string;
  /** Cores of that host. */
  cores?: number;
  /** Threads each of its runs uses (intra-op); default 1. */
  threads?: number;
}

/** A directed link; the reverse direction uses it too unless given separately. */
export interface Link {
  from: string;
  to: string;
  bandwidthBytesPerSec: number;
  latencySeconds: number;
}

/** Links between executors, with the values used for pairs not listed. */
export interface LinkTable {
  default?: { bandwidthBytesPerSec: number; latencySeconds: number };
  links?: Link[];
}

/** Nodes `from`..`to` (inclusive, ids in the graph's topological order) may run only on executors having every label. */
export interface Pin {
  /** One node id, or `[fromId, toId]`, or `{ from, to }`. */
  nodes: string | [string, string] | { from: string; to: string };
  labels: string[];
}

export interface Constraints {
  /** Node ranges allowed only on executors with given labels (data residency, accelerators). */
  pins?: Pin[];
  /**
   * Cuts the user requires: a stage boundary right after each listed node id (or after that many
   * nodes when a number). The planner adds others when that is better, unless `maxStages` forbids it.
   */
  boundaries?: (string | number)[];
  /** At most this many stages. */
  maxStages?: number;
}

export interface StagePrediction {
  /** Node compute on the stage's executor. */
  computeSeconds: number;
  /** Receiving the input cut from the previous stage's executor (0 for the first stage). */
  transferInSeconds: number;
  /** Sending the output cut to the next stage's executor (0 for the last stage). */
  transferOutSeconds: number;
  /** (compute + in + out) / replicas rate: the time between two requests leaving this stage. */
  stageSeconds: number;
  /** paramBytes + activationBytes: what the memory cap is checked against. */
  memoryBytes: number;
  paramBytes: number;
  /** Peak live activations: max over the stage's nodes of (bytes crossing into the node + its output). */
  activationBytes: number;
  inputBytes: number;
  outputBytes: number;
}

export interface PlanStage {
  executor: string;
  /** Node ids in execution order: a contiguous range of the graph's topological order. */
  nodes: string[];
  /** Executors serving this stage, the primary included (absent = 1). */
  replicas?: number;
  /** The extra executors serving this stage as replicas (same partition, one consumer). */
  replicaExecutors?: string[];
  predicted: StagePrediction;
}

export interface PlanPrediction {
  bottleneckSeconds: number;
  latencySeconds: number;
  throughputPerSec: number;
  /** Index into `stages`. */
  bottleneckStage: number;
}

export interface Plan {
  version: 1;
  model?: string;
  objective: Objective;
  /** Which algorithm made it, e.g. `exact`, `heuristic`, `greedy`, `exo-memory-proportional`, `manual`. */
  algorithm: string;
  stages: PlanStage[];
  predicted: PlanPrediction;
  /** Executors given but not in any stage. */
  unusedExecutors?: string[];
  /** Why: the bottleneck and what bounds it, what was left out and why. */
  explanation: string;
}
