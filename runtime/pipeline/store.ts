// Where deployments live: stage artifacts in the `cleave-artifacts` object store by sha256 (verified on
// every load), deployment records in the `cleave-plans` KV bucket (`<run>.<epoch>` and `<run>.current`).
import { createHash } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/nats-core';
import type { ObjectStore } from '@nats-io/obj';
import { objectStore } from '../nats/objects.js';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Bucket, ObjectStoreName } from '../../protocols/subjects.js';
import type { Deployment } from '../../protocols/deployment.js';

const planBuckets = new WeakMap<NatsConnection, Promise<KV>>();

export function artifactStore(nc: NatsConnection): Promise<ObjectStore> {
  return objectStore(nc, ObjectStoreName.ARTIFACTS);
}

export function plansBucket(nc: NatsConnection): Promise<KV> {
  let b = planBuckets.get(nc);
  if (!b) {
    b = new Kvm(nc).create(Bucket.PLANS, { history: 5 });
    planBuckets.set(nc, b);
  }
  return b;
}

export function sha256Key(bytes: Uint8Array): string {
  return `sha256-${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Stores bytes under their sha256 (once: identical artifacts share one object). */
export async function putArtifact(nc: NatsConnection, bytes: Uint8Array): Promise<string> {
  const key = sha256Key(bytes);
  const os = await artifactStore(nc);
  const info = await os.info(key);
  if (!info || info.deleted) await os.putBlob({ name: key, options: { max_chunk_size: 4 * 1024 * 1024 } }, bytes);
  return key;
}

/** Loads an artifact and checks its bytes against the sha256 in its key. */
export async function getArtifact(nc: NatsConnection, key: string): Promise<Uint8Array> {
  const os = await artifactStore(nc);
  const bytes = await os.getBlob(key);
  if (!bytes) throw new CleaveError(ErrorCode.ARTIFACT_INTEGRITY, `artifact ${key} is not in ${ObjectStoreName.ARTIFACTS}; deploy the model again`);
  const actual = sha256Key(bytes);
  if (actual !== key) throw new CleaveError(ErrorCode.ARTIFACT_INTEGRITY, `artifact ${key} has the wrong content (sha256 ${actual.slice(7, 19)}…); it was corrupted in the store: deploy again`);
  return bytes;
}

export async function saveDeployment(nc: NatsConnection, d: Deployment): Promise<void> {
  const kv = await plansBucket(nc);
  await kv.put(`${d.run}.${d.epoch}`, JSON.stringify(d));
  await kv.put(`${d.run}.current`, String(d.epoch));
}

export async function loadDeployment(nc: NatsConnection, run: string, epoch?: number): Promise<Deployment> {
  const kv = await plansBucket(nc);
  let e = epoch;
  if (e === undefined) {
    const cur = await kv.get(`${run}.current`);
    if (!cur || cur.operation !== 'PUT') throw new CleaveError(ErrorCode.BAD_ARGUMENT, `no deployment of run '${run}'; deploy it first (cleave infer deploys one)`);
    e = Number(cur.string());
  }
  const entry = await kv.get(`${run}.${e}`);
  if (!entry || entry.operation !== 'PUT') throw new CleaveError(ErrorCode.BAD_ARGUMENT, `run '${run}' has no epoch ${e}`);
  return JSON.parse(entry.string()) as Deployment;
}

/**
 * Keeps the `domains` of `d`'s stages up to date with its deployment record (executors join and leave
 * while a deployment runs; producers choose how to send by them, see runtime/shm/route.ts): a KV watch
 * of the record, so a change arrives when it is saved and nothing is read while nothing changes. If the
 * watch fails the last known lists stay. Returns a function that stops it.
 */
export function followStageDomains(nc: NatsConnection, d: Deployment): () => void {
  let stopped = false;
  let watcher: QueuedIterator<KvWatchEntry> | undefined;
  void (async () => {
    try {
      const kv = await plansBucket(nc);
      if (stopped) return;
      watcher = await kv.watch({ key: `${d.run}.${d.epoch}`, ignoreDeletes: true });
      if (stopped) return watcher.stop();
      for await (const e of watcher) {
        if (e.operation !== 'PUT') continue;
        const fresh = JSON.parse(e.string()) as Deployment;
        for (const s of d.stages) {
          const domains = fresh.stages[s.index]?.domains;
          if (domains) s.domains = domains;
        }
      }
    } catch {
      // A closed connection or a lost watch: the lists known last stay (either route is correct).
    }
  })();
  return () => {
    stopped = true;
    watcher?.stop();
  };
}
