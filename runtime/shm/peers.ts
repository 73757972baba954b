// Which host (shared-memory domain) each serving executor is on, from the live roster: a producer sends a
// stage's work through shared memory only when every executor serving that stage shares its domain.
// Kept current by a watch on the actors bucket; an entry whose heartbeats stopped counts as gone.
import type { NatsConnection } from '@nats-io/nats-core';
import type { ActorRecord } from '../../protocols/messages.js';
import { ACTOR_TTL_MS, Role } from '../../protocols/subjects.js';
import { actorsBucket } from '../nats/topology.js';

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

  static async watch(nc: NatsConnection): Promise<PeerDomains> {
    const p = new PeerDomains();
    const kv = await actorsBucket(nc);
    const it = await kv.watch({ key: `${Role.EXECUTOR}.>` });
    p.stopWatch = () => it.stop();
    void (async () => {
      for await (const e of it) {
        if (p.stopped) break;
        const id = e.key.slice(Role.EXECUTOR.length + 1);
        if (e.operation !== 'PUT') {
          p.peers.delete(id);
          continue;
        }
        try {
          const r = JSON.parse(e.string()) as ActorRecord;
          const c = r.capabilities ?? {};
          p.peers.set(id, {
            domain: typeof c.shmDomain === 'string' ? c.shmDomain : undefined,
            run: typeof c.run === 'string' ? c.run : undefined,
            epoch: typeof c.epoch === 'number' ? c.epoch : undefined,
            stage: typeof c.stage === 'number' ? c.stage : undefined,
            // Our clock, not the writer's: heartbeats arrive every HEARTBEAT_MS while the actor lives.
            updatedAt: Date.now(),
          });
        } catch {
          p.peers.delete(id);
        }
      }
    })().catch(() => {});
    return p;
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
