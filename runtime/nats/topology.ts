// Creates (idempotently) the streams, KV buckets and object store every Cleave deployment has.
// Any actor may call it at start; identical configs make concurrent creation safe.
import { RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { Bucket, Stream, ACTOR_TTL_MS } from '../../protocols/subjects.js';

const nanos = (ms: number) => ms * 1_000_000;
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Stream configs. WORK and RESULTS live in memory: activations are transient and memory storage
 *  moves MB-sized messages ~1.7x faster than file storage here; EVENTS and PARKED are kept on disk. */
export const STREAMS: (Partial<StreamConfig> & { name: string })[] = [
  { name: Stream.INBOX, subjects: ['cleave.inbox.>'], retention: RetentionPolicy.Workqueue, storage: StorageType.File, max_age: nanos(DAY), duplicate_window: nanos(2 * MINUTE) },
  { name: Stream.WORK, subjects: ['cleave.work.>'], retention: RetentionPolicy.Workqueue, storage: StorageType.Memory, max_age: nanos(60 * MINUTE), duplicate_window: nanos(2 * MINUTE), max_bytes: 1024 * 1024 * 1024, discard: DiscardPolicy.New },
  { name: Stream.RESULTS, subjects: ['cleave.results.>'], retention: RetentionPolicy.Limits, storage: StorageType.Memory, max_age: nanos(30 * MINUTE), duplicate_window: nanos(2 * MINUTE), max_bytes: 512 * 1024 * 1024 },
  // Chunks of large frames: read by direct get (no consumer), purged by the reader once consumed; memory,
  // like the work they belong to. Full means refuse (the sender retries), never drop a blob in use.
  { name: Stream.BLOBS, subjects: ['cleave.blob.>'], retention: RetentionPolicy.Limits, storage: StorageType.Memory, max_age: nanos(60 * MINUTE), duplicate_window: nanos(2 * MINUTE), max_bytes: 1024 * 1024 * 1024, discard: DiscardPolicy.New, allow_direct: true },
  { name: Stream.EVENTS, subjects: ['cleave.events.>'], retention: RetentionPolicy.Limits, storage: StorageType.File, max_age: nanos(7 * DAY), max_bytes: 1024 * 1024 * 1024 },
  { name: Stream.METRICS, subjects: ['cleave.metrics.>'], retention: RetentionPolicy.Limits, storage: StorageType.Memory, max_age: nanos(60 * MINUTE), max_bytes: 256 * 1024 * 1024 },
  { name: Stream.PARKED, subjects: ['cleave.parked.>'], retention: RetentionPolicy.Limits, storage: StorageType.File, max_age: nanos(7 * DAY), max_bytes: 1024 * 1024 * 1024 },
];

export async function ensureStreams(jsm: JetStreamManager): Promise<void> {
  for (const cfg of STREAMS) {
    try {
      await jsm.streams.info(cfg.name!);
    } catch {
      try {
        await jsm.streams.add(cfg);
      } catch (e) {
        // Another actor created it between our look and our add.
        await jsm.streams.info(cfg.name!).catch(() => {
          throw e;
        });
      }
    }
  }
}

/** The live-actors bucket: one key per actor, gone when its heartbeats stop. */
export async function actorsBucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(Bucket.ACTORS, { ttl: ACTOR_TTL_MS, history: 1, storage: 'memory' });
}

export async function ensureTopology(nc: NatsConnection, jsm: JetStreamManager): Promise<void> {
  await ensureStreams(jsm);
  await actorsBucket(nc);
}
