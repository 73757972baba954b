// Runs one actor in this process until SIGTERM/SIGINT: `cleave actor <role> [--id ID]`.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { loadActor } from '../../actors/index.js';
import { ActorHost } from './host.js';
import { isAlive } from '../nats/server.js';

export function defaultActorId(role: string): string {
  const h = hostname().replace(/[^A-Za-z0-9_-]/g, '').slice(0, 24) || 'host';
  return `${role === 'executor' ? 'ex' : role.split('-').map((w) => w[0]).join('')}-${h}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

export async function runActor(role: string, id?: string, servers?: string[]): Promise<ActorHost> {
  const { role: r, factory } = await loadActor(role);
  const host = await ActorHost.start(factory, { role: r, id: id ?? defaultActorId(role), servers, handleSignals: true });
  exitWithParent(host);
  return host;
}

/** An actor started by a foreground deployment drains and exits when that process is gone (even after
 *  a SIGKILL), instead of reconnecting to its vanished server forever. */
function exitWithParent(host: ActorHost): void {
  const parent = Number(process.env.CLEAVE_EXIT_WITH_PARENT);
  if (!parent) return;
  const timer = setInterval(() => {
    if (isAlive(parent)) return;
    clearInterval(timer);
    host.log.warn(`the process that launched this actor (pid ${parent}) is gone: draining`);
    void host.stop().finally(() => process.exit(0));
  }, 1000);
  timer.unref();
}
