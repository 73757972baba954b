// Finding and connecting to the NATS server a deployment uses: NATS_URL, else the embedded one `cleave up` recorded.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
// Large messages are gathered into a buffer of their size, not regrown per socket read.
import './large-messages.js';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { dataDir } from '../paths.js';
import { isAlive } from './server.js';

/** What `cleave up` writes to `<dataDir>/run.json`: the embedded server and the processes it started. */
export interface RunFile {
  url: string;
  natsPid: number;
  storeDir: string;
  actors: { role: string; id: string; pid: number }[];
  startedAt: number;
}

export function runFilePath(): string {
  return join(dataDir(), 'run.json');
}

export function readRunFile(): RunFile | undefined {
  const p = runFilePath();
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as RunFile;
  } catch {
    return undefined;
  }
}

/** The server to use: `NATS_URL` (comma-separated for a cluster), else the live embedded server. */
export function resolveNatsServers(): string[] {
  const env = process.env.NATS_URL;
  if (env) return env.split(',').map((s) => s.trim()).filter(Boolean);
  const run = readRunFile();
  if (run && isAlive(run.natsPid)) return [run.url];
  throw new CleaveError(
    ErrorCode.NATS_UNAVAILABLE,
    'no NATS server to talk to: start one with `cleave up` (or `cleave up --detach`), or set NATS_URL to an existing server.',
  );
}

export async function connectNats(servers: string[] = resolveNatsServers(), name = 'cleave'): Promise<NatsConnection> {
  try {
    // noAsyncTraces: nats.js otherwise captures a stack (RequestError, TimeoutError) for every request,
    // every JetStream publish included: 4.7 % of an executor's main thread in a profile under load.
    // Cleave's own errors name the subject and what to do.
    return await connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 10_000, noAsyncTraces: true });
  } catch (e) {
    throw new CleaveError(ErrorCode.NATS_UNAVAILABLE, `cannot reach NATS at ${servers.join(',')}: ${(e as Error).message}. Is the server running?`, { cause: e });
  }
}
