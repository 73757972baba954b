// Test harness: a real nats-server per suite (OS-chosen ports, temp JetStream dir, removed on every path).
// Call these at a test file's top level (top-level await): cleanup is registered with the file's `after`
// (inside a `before` hook node:test would run it as soon as the hook ends). Register your own with onCleanup.
import { after } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { startNatsServer, startNatsCluster, type NatsServer, type NatsCluster, type NatsServerOptions } from '../../runtime/nats/server.js';

// Cleanups run last-registered first, so what was started on a server is stopped before the server.
const cleanups: (() => Promise<unknown> | unknown)[] = [];
let registered = false;

/** Runs `fn` after the file's tests, before the cleanups registered earlier (LIFO). */
export function onCleanup(fn: () => Promise<unknown> | unknown): void {
  cleanups.push(fn);
  if (registered) return;
  registered = true;
  after(async () => {
    while (cleanups.length) {
      const f = cleanups.pop()!;
      await Promise.resolve()
        .then(f)
        .catch((e) => console.error('cleanup failed:', e));
    }
  });
}

/** Starts a server for the current test file and stops it after everything started on it. */
export async function suiteServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const server = await startNatsServer(options);
  onCleanup(() => server.stop(1000));
  return server;
}

export async function suiteCluster(size = 3): Promise<NatsCluster> {
  const cluster = await startNatsCluster(size);
  onCleanup(() => cluster.stop());
  return cluster;
}

/** Publishes `data` on `subject`, with a `Test: <header>` header when `header` is given. */
export function publishTagged(nc: NatsConnection, subject: string, data: Uint8Array, header?: string): void {
  if (header === undefined) return nc.publish(subject, data);
  const h = natsHeaders();
  h.set('Test', header);
  nc.publish(subject, data, { headers: h });
}

/** A client connection closed after the suite (before the server it talks to). */
export async function suiteConnection(servers: string | string[]): Promise<NatsConnection> {
  const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  onCleanup(() => nc.close().catch(() => {}));
  return nc;
}
