// A whole deployment on this host: embedded nats-server (unless NATS_URL is set) plus one process per actor.
// Used by `cleave up`, `npm start`, `cleave infer` and the multi-process tests.
import { withTensorMalloc } from './malloc.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/nats-core';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { ROLES, Role } from '../protocols/subjects.js';
import type { ActorRecord } from '../protocols/messages.js';
import { startNatsServer, killAndWait, isAlive, type NatsServer } from './nats/server.js';
import { connectNats, runFilePath, type RunFile } from './nats/connect.js';
import { listActors } from './actor/client.js';
import { dataDir, projectRoot } from './paths.js';

export interface LocalDeploymentOptions {
  executors?: number;
  /** Roles to start besides executors; default every role. */
  roles?: Role[];
  /** Processes and server outlive this process (`cleave up --detach`). */
  detached?: boolean;
  /** Use this server instead of starting one (else NATS_URL, else embedded). */
  servers?: string[];
  /** Data directory for the embedded server's store and actor logs. */
  dataDir?: string;
  /** Write run.json so that other commands find this deployment (default true). */
  writeRunFile?: boolean;
  /** Extra environment for actor processes. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface ActorProcess {
  role: Role;
  id: string;
  pid: number;
  child: ChildProcess;
  logFile: string;
}

export class LocalDeployment {
  private stopped = false;
  constructor(
    readonly servers: string[],
    readonly server: NatsServer | undefined,
    readonly actors: ActorProcess[],
    readonly nc: NatsConnection,
    private readonly options: LocalDeploymentOptions,
  ) {}

  get url(): string {
    return this.servers[0]!;
  }

  /**
   * Launches one more actor process (how a user scales a stage: one more executor). `env` adds to the
   * deployment's environment for this process only (e.g. CLEAVE_SHM_DIR: another shared-memory
   * domain, as an executor on another host has).
   */
  async addActor(role: Role, id: string, env: Record<string, string> = {}): Promise<ActorProcess> {
    const p = spawnActor(role, id, this.servers, { ...this.options, env: { ...this.options.env, ...env } });
    this.actors.push(p);
    await waitForActors(this.nc, [{ role, id }], this.options.readyTimeoutMs ?? 30_000, [p]);
    return p;
  }

  async roster(): Promise<ActorRecord[]> {
    return listActors(this.nc);
  }

  /** SIGTERM every actor (they drain), then the server; idempotent. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.actors.map((a) => killAndWait(a.pid, graceMs)));
    await this.nc.close().catch(() => {});
    await this.server?.stop();
    if (this.options.writeRunFile !== false) rmSync(runFilePath(), { force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

export async function startLocalDeployment(options: LocalDeploymentOptions = {}): Promise<LocalDeployment> {
  const dir = options.dataDir ?? dataDir();
  mkdirSync(join(dir, 'logs'), { recursive: true });
  let server: NatsServer | undefined;
  let servers = options.servers ?? (process.env.NATS_URL ? process.env.NATS_URL.split(',') : undefined);
  if (!servers) {
    server = await startNatsServer({ storeDir: join(dir, 'nats'), detached: options.detached, logFile: join(dir, 'logs', 'nats-server.log') });
    servers = [server.url];
  }
  const roles = options.roles ?? ROLES.filter((r) => r !== Role.EXECUTOR);
  const wanted: { role: Role; id: string }[] = [
    ...roles.map((role) => ({ role, id: `${role}-1` })),
    ...Array.from({ length: options.executors ?? 3 }, (_, i) => ({ role: Role.EXECUTOR, id: `executor-${i + 1}` })),
  ];
  const opts = { ...options, dataDir: dir };
  const actors = wanted.map((w) => spawnActor(w.role, w.id, servers!, opts));
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats(servers, 'cleave-up');
    await waitForActors(nc, wanted, options.readyTimeoutMs ?? 60_000, actors);
  } catch (e) {
    await Promise.all(actors.map((a) => killAndWait(a.pid, 2000)));
    await nc?.close().catch(() => {});
    await server?.stop();
    throw e;
  }
  const dep = new LocalDeployment(servers, server, actors, nc, opts);
  if (options.writeRunFile !== false) {
    const run: RunFile = {
      url: servers[0]!,
      natsPid: server?.pid ?? 0,
      storeDir: server?.storeDir ?? '',
      actors: actors.map((a) => ({ role: a.role, id: a.id, pid: a.pid })),
      startedAt: Date.now(),
    };
    writeFileSync(runFilePath(), JSON.stringify(run, null, 2));
  }
  return dep;
}

function spawnActor(role: Role, id: string, servers: string[], options: LocalDeploymentOptions): ActorProcess {
  const dir = options.dataDir ?? dataDir();
  const logFile = join(dir, 'logs', `${id}.log`);
  const fd = openSync(logFile, 'a');
  try {
    // CLEAVE_ACTOR_NODE_ARGS passes node flags to every actor process (e.g. `--cpu-prof --cpu-prof-dir=DIR`).
    const nodeArgs = (process.env.CLEAVE_ACTOR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, join(projectRoot(), 'bin', 'cleave.js'), 'actor', role, '--id', id], {
      cwd: projectRoot(),
      env: withTensorMalloc({ ...process.env, ...options.env, NATS_URL: servers.join(','), ...(options.detached ? {} : { CLEAVE_EXIT_WITH_PARENT: String(process.pid) }) }),
      stdio: ['ignore', fd, fd],
      detached: options.detached ?? false,
    });
    if (options.detached) child.unref();
    return { role, id, pid: child.pid!, child, logFile };
  } finally {
    closeSync(fd);
  }
}

/** Resolves when every wanted actor is in the roster; fails early, with its log, if one exits. */
export async function waitForActors(nc: NatsConnection, wanted: { role: Role; id: string }[], timeoutMs: number, procs: ActorProcess[] = []): Promise<ActorRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = await listActors(nc).catch(() => [] as ActorRecord[]);
    // Registered and settled: an executor is `joining` until its lifecycle reaches idle.
    const missing = wanted.filter((w) => !live.some((a) => a.role === w.role && a.id === w.id && a.state !== 'starting' && a.state !== 'joining'));
    if (missing.length === 0) return live;
    const dead = procs.find((p) => missing.some((m) => m.id === p.id) && (p.child.exitCode !== null || !isAlive(p.pid)));
    if (dead) {
      throw new CleaveError(ErrorCode.INTERNAL, `actor ${dead.role} '${dead.id}' exited during start; see ${dead.logFile}`);
    }
    if (Date.now() > deadline) {
      throw new CleaveError(ErrorCode.TIMEOUT, `actors did not register within ${timeoutMs} ms: ${missing.map((m) => `${m.role}/${m.id}`).join(', ')}`);
    }
    await sleep(100);
  }
}
