// Runs one actor in this process until SIGTERM/SIGINT: `cleave actor <role> [--id ID]`.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { loadActor } from '../../actors/index.js';
import { ActorHost } from './host.js';

export function defaultActorId(role: string): string {
  const h = hostname().replace(/[^A-Za-z0-9_-]/g, '').slice(0, 24) || 'host';
  return `${role === 'executor' ? 'ex' : role.split('-').map((w) => w[0]).join('')}-${h}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

export async function runActor(role: string, id?: string, servers?: string[]): Promise<ActorHost> {
  const { role: r, factory } = await loadActor(role);
  return ActorHost.start(factory, { role: r, id: id ?? defaultActorId(role), servers, handleSignals: true });
}
