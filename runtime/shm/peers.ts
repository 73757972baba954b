// Which host (shared-memory domain) each serving executor is on, from the live roster: a producer sends a
// stage's work through shared memory only when every executor serving that stage shares its domain.
// Kept current by a watch on the actors bucket; an entry whose heartbeats stopped counts as gone.
import type { NatsConnection } from '@nats-io/nats-core';
import type { ActorRecord } from '../../protocols/messages.js';
import { ACTOR_TTL_MS, Role } from '../../protocols/subjects.js';
import { actorsBucket } from '../nats/topology.js';
import { listActors } from '../actor/client.js';

interface Peer {
  domain?: string;
  run?: string;
  epoch?: number;
  stage?: number;
  updatedAt: number;
}

/** The pure rule: shared memory only to a stage whose every known server is in `domain`. */
export function allServersIn(peers: Iterable<Peer>, domain: string, run: string, epoch: number, stage: number, now = Date.now()): boolean {
  let any = false;
  for (const p of peers) {
    if (p.run !== run || p.epoch !== epoch || p.stage !== stage || now - p.updatedAt > ACTOR_TTL_MS) continue;
    if (p.domain !== domain) return false;
    any = true;
  }
  return any;
}

export class PeerDomains {
  private readonly peers = new Map<string, Peer>();
  private stopped = false;
  private stopWatch: (() => void) | undefined;

  private constructor() {}

  /** Starts following the roster; resolves once the executors registered now are known. */
  static async watch(nc: NatsConnection): Promise<PeerDomains> {
    const p = new PeerDomains();
    const kv = await actorsBucket(nc);
    const it = await kv.watch({ key: `${Role.EXECUTOR}.>` });
    p.stopWatch = () => it.stop();
    void (async () => {
      for await (const e of it) {
        if (p.stopped) break;
        const id = e.key.slice(Role.EXECUTOR.length + 1);
        if (e.operation !== 'PUT') p.peers.delete(id);
        else p.update(id, e.string());
      }
    })().catch(() => {});
    // The watch delivers what is there now asynchronously: take a snapshot too, so a client opened
    // right after a deployment uses shared memory from its first request.
    for (const r of await listActors(nc)) if (r.role === Role.EXECUTOR) p.update(r.id, JSON.stringify(r));
    return p;
  }

  private update(id: string, json: string): void {
    try {
      const c = (JSON.parse(json) as ActorRecord).capabilities ?? {};
      this.peers.set(id, {
        domain: typeof c.shmDomain === 'string' ? c.shmDomain : undefined,
        run: typeof c.run === 'string' ? c.run : undefined,
        epoch: typeof c.epoch === 'number' ? c.epoch : undefined,
        stage: typeof c.stage === 'number' ? c.stage : undefined,
        // Our clock, not the writer's: heartbeats arrive every HEARTBEAT_MS while the actor lives.
        updatedAt: Date.now(),
      });
    } catch {
      this.peers.delete(id);
    }
  }

  /** True when every executor serving (run, epoch, stage) is in `domain` (and at least one is). */
  allIn(domain: string | undefined, run: string, epoch: number, stage: number): boolean {
    return domain !== undefined && allServersIn(this.peers.values(), domain, run, epoch, stage);
  }

  stop(): void {
    this.stopped = true;
    this.stopWatch?.();
  }
}
