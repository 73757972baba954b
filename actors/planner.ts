// Planner: assigns partitions to executors from their measured speed, memory and links (runtime/planner).
import type { ActorFactory } from '../runtime/actor/host.js';
import { cutAlternatives, plan, type CutAlternativeOptions, type PlanRequest } from '../runtime/planner/mod.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import type { Plan } from '../protocols/plan.js';

const actor: ActorFactory = (ctx) => {
  ctx.setState('ready');
  const request = (req: Record<string, unknown>, what: string): PlanRequest => {
    if (!req.graph || !Array.isArray(req.executors)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${what} needs \`graph\` (a PartitionGraph) and \`executors\` (profiles)`);
    return req as unknown as PlanRequest;
  };
  return {
    control: {
      plan(req) {
        return plan(request(req, 'plan'));
      },
      /** Plans that move one cut of `plan` to carry fewer bytes, for the coordinator to measure. */
      alternatives(req) {
        const base = req.plan as Plan | undefined;
        if (!base || !Array.isArray(base.stages)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'alternatives needs `plan` (a Plan of this graph) beside the plan request');
        return { plans: cutAlternatives(request(req, 'alternatives'), base, (req.options ?? {}) as CutAlternativeOptions) };
      },
    },
  };
};
export default actor;
