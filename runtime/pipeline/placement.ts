// Pure decisions of the Coordinator: executor profiles from the roster, the deployment record from a
// plan and its split, and which stage a newly arrived (or orphaned) executor should serve.
import type { ActorRecord } from '../../protocols/messages.js';
import type { ExecutorProfile, Link, LinkTable, Plan } from '../../protocols/plan.js';
import { forwardSets, type DeployedStage, type Deployment, type TensorSpec } from '../../protocols/deployment.js';

/** Assumed speed of an executor that has not measured its own (1 GFLOP/s, a slow core). */
export const DEFAULT_FLOPS_PER_SEC = 1e9;

export function profilesFromRoster(executors: ActorRecord[]): ExecutorProfile[] {
  return executors.map((e) => {
    const c = e.capabilities as { flopsPerSec?: number; freeMemoryBytes?: number; memoryBytes?: number; labels?: string[]; cores?: number; threads?: number };
    return {
      id: e.id,
      flopsPerSec: c.flopsPerSec && c.flopsPerSec > 0 ? c.flopsPerSec : DEFAULT_FLOPS_PER_SEC,
      memoryBytes: c.freeMemoryBytes ?? c.memoryBytes ?? 1024 ** 3,
      ...(c.labels ? { labels: c.labels } : {}),
      // Executors of one host share its cores: the planner prices that (runtime/planner/hosts.ts).
      ...(e.host && typeof c.cores === 'number' && c.cores > 0 ? { host: e.host, cores: c.cores, threads: typeof c.threads === 'number' && c.threads > 0 ? c.threads : 1 } : {}),
    };
  });
}

/**
 * The links the planner prices cuts with: NATS as measured (`nats`) between executors on different
 * hosts, and shared memory between executors of one host (same `shmDomain`), at the slower of the two
 * executors' measured shared-memory speeds; the reference still crosses NATS, so its latency stays.
 */
export function linksFromRoster(executors: ActorRecord[], nats: NonNullable<LinkTable['default']>): LinkTable {
  const links: Link[] = [];
  const shm = executors.map((e) => {
    const c = e.capabilities as { shmDomain?: unknown; shmBytesPerSec?: unknown };
    return typeof c.shmDomain === 'string' && typeof c.shmBytesPerSec === 'number' && c.shmBytesPerSec > 0 ? { id: e.id, domain: c.shmDomain, bps: c.shmBytesPerSec } : undefined;
  });
  for (let i = 0; i < shm.length; i++) {
    for (let j = i + 1; j < shm.length; j++) {
      const a = shm[i], b = shm[j];
      if (!a || !b || a.domain !== b.domain) continue;
      links.push({ from: a.id, to: b.id, bandwidthBytesPerSec: Math.min(a.bps, b.bps), latencySeconds: nats.latencySeconds });
    }
  }
  return { default: nats, ...(links.length ? { links } : {}) };
}

export interface SplitStage {
  index: number;
  artifact: string;
  artifactBytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export function buildDeployment(args: {
  run: string;
  epoch: number;
  model: string;
  modelArtifact: string;
  plan: Plan;
  split: { stages: SplitStage[]; inputs: TensorSpec[]; outputs: TensorSpec[] };
  ackWaitMs?: number;
  maxDeliver?: number;
}): Deployment {
  const { plan, split } = args;
  const forward = forwardSets(
    split.stages.map((s) => ({ inputs: s.inputs.map((t) => t.name), outputs: s.outputs.map((t) => t.name) })),
    split.inputs.map((t) => t.name),
    split.outputs.map((t) => t.name),
  );
  const stages: DeployedStage[] = split.stages.map((s, k) => ({
    index: k,
    artifact: s.artifact,
    artifactBytes: s.artifactBytes,
    inputs: s.inputs,
    outputs: s.outputs,
    forward: forward[k]!,
    executors: [plan.stages[k]!.executor, ...(plan.stages[k]!.replicaExecutors ?? [])],
    predicted: plan.stages[k]!.predicted,
  }));
  return {
    run: args.run,
    epoch: args.epoch,
    model: args.model,
    modelArtifact: args.modelArtifact,
    inputs: split.inputs,
    outputs: split.outputs,
    stages,
    plan,
    createdAt: Date.now(),
    ackWaitMs: args.ackWaitMs ?? 10_000,
    maxDeliver: args.maxDeliver ?? 5,
  };
}

/**
 * Sets each stage's `domains`: the shared-memory domains of its executors in `roster` (executors
 * without a pool, or not in the roster, add none). Returns true when any stage's list changed.
 */
export function setStageDomains(d: Deployment, roster: readonly ActorRecord[]): boolean {
  const domainOf = new Map<string, string>();
  for (const a of roster) {
    const dom = (a.capabilities as { shmDomain?: unknown }).shmDomain;
    if (typeof dom === 'string') domainOf.set(a.id, dom);
  }
  let changed = false;
  for (const s of d.stages) {
    const domains = [...new Set(s.executors.map((e) => domainOf.get(e)).filter((x): x is string => x !== undefined))].sort();
    if (JSON.stringify(domains) !== JSON.stringify(s.domains)) {
      s.domains = domains;
      changed = true;
    }
  }
  return changed;
}

/**
 * The stage an extra executor helps most: the one with the longest predicted time per request once
 * divided among its live executors; a stage left with no live executor comes first.
 */
export function stageForNewExecutor(d: Deployment, live: Set<string>): number {
  let best = -1;
  let bestLoad = -Infinity;
  for (const s of d.stages) {
    const serving = s.executors.filter((e) => live.has(e)).length;
    // One executor's time per request on this stage (the plan's stageSeconds already divides by replicas).
    const p = s.predicted;
    const perRequest = p ? p.computeSeconds + p.transferInSeconds + p.transferOutSeconds : 1;
    const load = serving === 0 ? Infinity : perRequest / serving;
    if (load > bestLoad) {
      bestLoad = load;
      best = s.index;
    }
  }
  return best;
}
