// Planner: assigns partitions to executors from their measured speed, memory and links (runtime/planner).
import type { ActorFactory } from '../runtime/actor/host.js';
import { plan, type PlanRequest } from '../runtime/planner/mod.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

const actor: ActorFactory = (ctx) => {
  ctx.setState('ready');
  return {
    control: {
      plan(req) {
        if (!req.graph || !Array.isArray(req.executors)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'plan needs `graph` (a PartitionGraph) and `executors` (profiles)');
        return plan(req as unknown as PlanRequest);
      },
    },
  };
};
export default actor;
