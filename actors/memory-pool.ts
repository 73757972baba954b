// MemoryPoolManager: the shared tensor pool across executors, with distributed locks and barriers.
// Domain handlers arrive with their issues; today the actor registers, heartbeats and answers ping/status.
import type { ActorFactory } from '../runtime/actor/host.js';

const actor: ActorFactory = (ctx) => {
  ctx.setState('ready');
  return {};
};
export default actor;
