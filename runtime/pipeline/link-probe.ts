// Measures what a hop through this deployment's NATS actually moves (bytes/s at 1 MB messages) and its
// round trip, so the planner prices cuts with this machine's link instead of a guess.
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import type { LinkTable } from '../../protocols/plan.js';

/** Best of three short probes: a probe slowed by a neighbour's burst measures the burst, not the link. */
export async function measureNatsLink(nc: NatsConnection): Promise<NonNullable<LinkTable['default']>> {
  const probes = [];
  for (let i = 0; i < 3; i++) probes.push(await probeOnce(nc));
  return {
    bandwidthBytesPerSec: Math.max(...probes.map((p) => p.bandwidthBytesPerSec)),
    latencySeconds: Math.min(...probes.map((p) => p.latencySeconds)),
  };
}

async function probeOnce(nc: NatsConnection): Promise<NonNullable<LinkTable['default']>> {
  const bandwidthBytesPerSec = await coreThroughput(nc, nc, 8 * 1024 * 1024, 1024 * 1024);
  const rtts: number[] = [];
  for (let i = 0; i < 5; i++) rtts.push(await nc.rtt());
  rtts.sort((a, b) => a - b);
  return { bandwidthBytesPerSec, latencySeconds: rtts[2]! / 1000 / 2 };
}

/** `count` publishes of `payload`, with a flush (a round trip to the server) after every fourth. */
export async function publishPaced(pub: NatsConnection, subject: string, payload: Uint8Array, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    pub.publish(subject, payload);
    if (i % 4 === 3) await pub.flush();
  }
}

/** Bytes/s of core NATS pub/sub from `pub` to `sub` (they may be one connection), in `chunkBytes` messages. */
export async function coreThroughput(pub: NatsConnection, sub: NatsConnection, totalBytes: number, chunkBytes: number): Promise<number> {
  const subject = `cleave.probe.${randomBytes(6).toString('hex')}`;
  const count = Math.max(1, Math.floor(totalBytes / chunkBytes));
  const payload = new Uint8Array(chunkBytes).fill(1);
  let got = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const s = sub.subscribe(subject, {
    callback: () => {
      if (++got === count) resolveAll();
    },
  });
  try {
    await sub.flush();
    const t0 = performance.now();
    await publishPaced(pub, subject, payload, count);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, 30_000)))]);
    clearTimeout(timer);
    return (got * chunkBytes) / Math.max((performance.now() - t0) / 1000, 1e-6);
  } finally {
    s.unsubscribe();
  }
}
