// RepartitionWatcher: watches load, communication and progress and triggers a re-plan.
// Domain handlers arrive with their issues; today the actor registers, heartbeats and answers ping/status.
import type { ActorFactory } from '../runtime/actor/host.js';

const actor: ActorFactory = (ctx) => {
  ctx.setState('ready');
  return {};
};
export default actor;
