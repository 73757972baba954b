// The six roles, each a thin shell in its own file; loaded lazily so a process pays only for its role.
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { ROLES, isRole, type Role } from '../protocols/subjects.js';
import type { ActorFactory } from '../runtime/actor/host.js';

const LOADERS: Record<Role, () => Promise<{ default: ActorFactory }>> = {
  'graph-analyzer': () => import('./graph-analyzer.js'),
  planner: () => import('./planner.js'),
  coordinator: () => import('./coordinator.js'),
  executor: () => import('./executor.js'),
  'memory-pool': () => import('./memory-pool.js'),
  'repartition-watcher': () => import('./repartition-watcher.js'),
};

export async function loadActor(role: string): Promise<{ role: Role; factory: ActorFactory }> {
  if (!isRole(role)) {
    throw new CleaveError(ErrorCode.UNKNOWN_ROLE, `unknown role '${role}'; choose one of: ${ROLES.join(', ')}`);
  }
  return { role, factory: (await LOADERS[role]()).default };
}
