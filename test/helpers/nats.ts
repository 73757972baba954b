// Test harness: a real nats-server per suite (OS-chosen ports, temp JetStream dir, removed on every path).
// Call these at a test file's top level (top-level await): cleanup is registered with the file's `after`;
// inside a `before` hook node:test would run that cleanup as soon as the hook ends.
import { after } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, startNatsCluster, type NatsServer, type NatsCluster, type NatsServerOptions } from '../../runtime/nats/server.js';

/** Starts a server for the current test file and stops it (and closes connections made here) after it. */
export async function suiteServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const server = await startNatsServer(options);
  after(async () => {
    await server.stop(1000);
  });
  return server;
}

export async function suiteCluster(size = 3): Promise<NatsCluster> {
  const cluster = await startNatsCluster(size);
  after(async () => {
    await cluster.stop();
  });
  return cluster;
}

/** A client connection closed after the suite. */
export async function suiteConnection(servers: string | string[]): Promise<NatsConnection> {
  const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  after(async () => {
    await nc.close().catch(() => {});
  });
  return nc;
}
