// Plan validation, independent of the algorithm that made the plan: coverage, order, executors,
// memory (by simulating live tensors), pins, boundaries, stage count, and stale predictions.
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { Plan } from '../../protocols/plan.js';
import { evaluateStages } from './model.js';
import type { PlanningProblem } from './planner.js';

export interface PlanValidation {
  ok: boolean;
  /** One line per broken rule, naming the stage, node or executor. */
  errors: string[];
}

export function validatePlan(plan: Plan, p: PlanningProblem): PlanValidation {
  const errors: string[] = [];
  const g = p.graph;
  const n = g.ids.length;
  if (!plan || !Array.isArray(plan.stages) || plan.stages.length === 0) return { ok: false, errors: ['plan has no stages'] };
  if (plan.stages.length > p.constraints.maxStages) errors.push(`plan has ${plan.stages.length} stages; maxStages is ${p.constraints.maxStages}`);

  const stageOf = new Int32Array(n).fill(-1);
  const pos = new Int32Array(n).fill(-1);
  const order: number[] = [];
  plan.stages.forEach((s, si) => {
    if (!s.nodes?.length) errors.push(`stage ${si} has no nodes`);
    for (const id of s.nodes ?? []) {
      const j = g.index.get(id);
      if (j === undefined) { errors.push(`stage ${si} lists unknown node '${id}'`); continue; }
      if (stageOf[j] >= 0) { errors.push(`node '${id}' is in stage ${stageOf[j]} and stage ${si}`); continue; }
      stageOf[j] = si;
      pos[j] = order.length;
      order.push(j);
    }
  });
  const missing = g.ids.filter((_, j) => stageOf[j] < 0);
  if (missing.length) errors.push(`nodes in no stage: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` (+${missing.length - 5})` : ''}`);
  if (errors.length) return { ok: false, errors };

  for (const e of g.edges) {
    if (pos[e.from] >= pos[e.to]) errors.push(`node '${g.ids[e.to]}' (stage ${stageOf[e.to]}) runs before its input '${g.ids[e.from]}' (stage ${stageOf[e.from]})`);
  }

  const seen = new Map<string, number>();
  plan.stages.forEach((s, si) => {
    for (const id of [s.executor, ...(s.replicaExecutors ?? [])]) {
      const ex = p.cluster.byId.get(id);
      if (!ex) { errors.push(`stage ${si} uses unknown executor '${id}'`); continue; }
      if (seen.has(id)) errors.push(`executor '${id}' serves stage ${seen.get(id)} and stage ${si}; an executor runs one partition`);
      seen.set(id, si);
      for (const nodeId of s.nodes) {
        const j = g.index.get(nodeId)!;
        if (!p.constraints.allowed[ex.index][j]) {
          const pin = p.constraints.pins.find((q) => q.from <= j && j <= q.to && !q.executors.includes(ex.index));
          errors.push(`node '${nodeId}' is pinned to [${pin?.labels.join(', ')}] but stage ${si} runs it on '${id}'`);
          break;
        }
      }
    }
    if (s.replicas !== undefined && s.replicas !== 1 + (s.replicaExecutors?.length ?? 0)) {
      errors.push(`stage ${si} says replicas=${s.replicas} but lists ${1 + (s.replicaExecutors?.length ?? 0)} executors`);
    }
  });

  // Memory: params plus peak live activations, by walking the plan order with per-tensor reader counts.
  const remaining = g.units.map((u) => u.consumers.length);
  const producedBy = new Map<number, number[]>();
  const readBy = new Map<number, number[]>();
  g.units.forEach((u, ui) => {
    producedBy.set(u.producer, [...(producedBy.get(u.producer) ?? []), ui]);
    for (const c of u.consumers) readBy.set(c, [...(readBy.get(c) ?? []), ui]);
  });
  let live = 0;
  const need = plan.stages.map(() => ({ params: 0, peak: 0 }));
  for (const j of order) {
    const st = need[stageOf[j]];
    st.params += g.params[j];
    st.peak = Math.max(st.peak, live + g.outputBytes[j]);
    for (const ui of readBy.get(j) ?? []) if (--remaining[ui] === 0) live -= g.units[ui].bytes;
    for (const ui of producedBy.get(j) ?? []) if (remaining[ui] > 0) live += g.units[ui].bytes;
  }
  plan.stages.forEach((s, si) => {
    const bytes = need[si].params + need[si].peak;
    for (const id of [s.executor, ...(s.replicaExecutors ?? [])]) {
      const ex = p.cluster.byId.get(id);
      if (ex && bytes > ex.memory * (1 + 1e-12)) errors.push(`stage ${si} needs ${bytes} bytes (params ${need[si].params} + activations ${need[si].peak}) but '${id}' has ${ex.memory}`);
    }
  });

  for (const k of p.constraints.boundaries) {
    const before = g.ids[k - 1], after = g.ids[k];
    const sb = stageOf[k - 1], sa = stageOf[k];
    if (sb === sa || plan.stages[sb].nodes[plan.stages[sb].nodes.length - 1] !== before) {
      errors.push(`manual boundary after '${before}' is not a stage boundary (it and '${after}' are in stage ${sb}${sa !== sb ? ` and ${sa}` : ''})`);
    }
  }

  if (errors.length === 0 && plan.predicted) {
    const ev = evaluateStages(g, p.cluster, plan.stages);
    const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b), 1e-12);
    if (!close(ev.bottleneckSeconds, plan.predicted.bottleneckSeconds) || !close(ev.latencySeconds, plan.predicted.latencySeconds)) {
      errors.push(`predicted times are stale: bottleneck ${plan.predicted.bottleneckSeconds} s / latency ${plan.predicted.latencySeconds} s, the cost model gives ${ev.bottleneckSeconds} s / ${ev.latencySeconds} s`);
    }
    plan.stages.forEach((s, si) => {
      if (!close(ev.stages[si].memoryBytes, need[si].params + need[si].peak)) errors.push(`stage ${si}: memory accounting disagrees (${ev.stages[si].memoryBytes} vs ${need[si].params + need[si].peak})`);
    });
  }
  return { ok: errors.length === 0, errors };
}

/** validatePlan, throwing PLAN_INVALID with every broken rule when the plan is not valid. */
export function assertValidPlan(plan: Plan, p: PlanningProblem): void {
  const v = validatePlan(plan, p);
  if (!v.ok) {
    throw new CleaveError(ErrorCode.PLAN_INVALID, `plan is not valid for this graph, executors and constraints: ${v.errors.join('; ')}; re-plan with \`cleave plan\``, { details: { errors: v.errors } });
  }
}
