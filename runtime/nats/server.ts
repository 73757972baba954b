// The one nats-server launcher: the embedded server of `cleave up`, and every test's server and cluster.
// Starts `nats-server -c nats.conf` with OS-chosen ports read back from its ports file, waits for health.
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, openSync, closeSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join, delimiter } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { projectRoot } from '../paths.js';

export interface NatsServerOptions {
  /** Base config; default the project's nats.conf. */
  configFile?: string;
  /** JetStream store directory; default a fresh temp directory removed on stop. */
  storeDir?: string;
  /** Client port; -1 (default) lets the OS choose. */
  port?: number;
  serverName?: string;
  /** Join a cluster: its name, this node's cluster port, and routes to every node (itself included is fine). */
  cluster?: { name: string; port: number; routes: string[] };
  /** Keep running after this process exits (`cleave up --detach`). Default false: a watchdog kills
   *  the server when this process dies, even by SIGKILL, so no orphan is left. */
  detached?: boolean;
  /** Where the server's log goes; default a file in the server's work directory. */
  logFile?: string;
  /** How long to wait for readiness. */
  readyTimeoutMs?: number;
  /** The server's GOMAXPROCS; default natsServerProcs(). */
  procs?: number;
}

/**
 * How many OS threads the Go runtime of a server started here may run Go code on at once: the
 * user's CLEAVE_NATS_PROCS or GOMAXPROCS when set (nonsense is ignored), else half the cores, at
 * least one. The server shares its host with the executors; on 2 vCPUs one thread beat two in every
 * pair measured (figures in docs/ARCHITECTURE.md, Processes).
 */
export function natsServerProcs(env: NodeJS.ProcessEnv = process.env, cores = availableParallelism()): number {
  for (const v of [env.CLEAVE_NATS_PROCS, env.GOMAXPROCS]) {
    const n = Number(v);
    if (v && Number.isInteger(n) && n > 0) return n;
  }
  return Math.max(1, Math.floor(cores / 2));
}

export interface NatsServerPorts {
  nats: string[];
  monitoring?: string[];
  cluster?: string[];
}

export class NatsServer {
  constructor(
    readonly pid: number,
    readonly ports: NatsServerPorts,
    readonly workDir: string,
    readonly storeDir: string,
    readonly logFile: string,
    private readonly child: ChildProcess | undefined,
    private readonly ownsStore: boolean,
  ) {}

  get url(): string {
    return this.ports.nats[0]!;
  }
  get monitorUrl(): string | undefined {
    return this.ports.monitoring?.[0];
  }
  get clusterUrl(): string | undefined {
    return this.ports.cluster?.[0];
  }

  /** SIGTERM (graceful: JetStream flushes), SIGKILL after a grace period; removes temp dirs it made. */
  async stop(graceMs = 3000): Promise<void> {
    await killAndWait(this.pid, graceMs);
    this.child?.stdin?.destroy();
    if (this.ownsStore) rmSync(this.workDir, { recursive: true, force: true });
  }

  /** Hard kill, as a crash would: for tests of recovery. */
  async kill(): Promise<void> {
    await killAndWait(this.pid, 0);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Locates nats-server on PATH or the sbin folders Debian installs it to; typed error with the fix otherwise. */
export function findNatsServerBinary(): string {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, 'nats-server');
    if (existsSync(p)) return p;
  }
  throw new CleaveError(
    ErrorCode.NATS_SERVER_MISSING,
    'nats-server is not installed. Run `npm run bootstrap` (as root it installs it), or `sudo apt-get install nats-server`, ' +
      'or set NATS_SERVER_BIN to its path, or NATS_URL to use a running server.',
  );
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  // Checked before anything is spawned or created: Go would take 0 or garbage as "every core".
  if (options.procs !== undefined && !(Number.isInteger(options.procs) && options.procs > 0)) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `procs must be a positive integer (the server's GOMAXPROCS), not ${options.procs}; leave it out for half the cores`);
  }
  const procs = options.procs ?? natsServerProcs();
  const bin = findNatsServerBinary();
  const configFile = options.configFile ?? join(projectRoot(), 'nats.conf');
  const ownsStore = options.storeDir === undefined;
  const workDir = ownsStore ? mkdtempSync(join(tmpdir(), 'cleave-nats-')) : options.storeDir!;
  mkdirSync(workDir, { recursive: true });
  const storeDir = ownsStore ? join(workDir, 'js') : workDir;
  const portsDir = mkdtempSync(join(tmpdir(), 'cleave-ports-'));
  const logFile = options.logFile ?? join(workDir, 'nats-server.log');

  const args = ['-c', configFile, '-p', String(options.port ?? -1), '-m', '-1', '-sd', storeDir, '--ports_file_dir', portsDir];
  if (options.serverName) args.push('-n', options.serverName);
  if (options.cluster) {
    args.push('--cluster_name', options.cluster.name, '--cluster', `nats://127.0.0.1:${options.cluster.port}`);
    if (options.cluster.routes.length > 0) args.push('--routes', options.cluster.routes.join(','));
  }

  const logFd = openSync(logFile, 'a');
  const env = { ...process.env, GOMAXPROCS: String(procs) };
  let child: ChildProcess | undefined;
  try {
    if (options.detached) {
      child = spawn(bin, args, { cwd: projectRoot(), env, detached: true, stdio: ['ignore', logFd, logFd] });
      child.unref();
    } else {
      // Watchdog: a shell holds the server's pid and kills it when our end of its stdin closes,
      // which happens however this process ends.
      // (A background list's stdin is /dev/null, hence the copy to fd 3.)
      const script = 'exec 3<&0; "$0" "$@" & pid=$!; (read _ <&3; kill -TERM $pid 2>/dev/null) & wait $pid';
      child = spawn('/bin/sh', ['-c', script, bin, ...args], { cwd: projectRoot(), env, stdio: ['pipe', logFd, logFd] });
      // The pipe must not keep our event loop alive.
      (child.stdin as unknown as { unref?: () => void })?.unref?.();
      child.unref();
    }
  } finally {
    closeSync(logFd);
  }

  const deadline = Date.now() + (options.readyTimeoutMs ?? 15_000);
  let ports: NatsServerPorts | undefined;
  let pid = 0;
  while (Date.now() < deadline) {
    const file = readdirSync(portsDir).find((f) => f.endsWith('.ports'));
    if (file) {
      try {
        ports = JSON.parse(readFileSync(join(portsDir, file), 'utf8')) as NatsServerPorts;
        pid = Number(/_(\d+)\.ports$/.exec(file)?.[1]);
        break;
      } catch {
        // partially written; read again
      }
    }
    if (child!.exitCode !== null) break;
    await sleep(20);
  }
  rmSync(portsDir, { recursive: true, force: true });
  if (!ports || !pid) {
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
    child!.kill("SIGKILL");
    throw new CleaveError(ErrorCode.NATS_SERVER_START, `nats-server did not start (see ${logFile}):\n${log}`);
  }
  if (options.cluster) ports.cluster = [`nats://127.0.0.1:${options.cluster.port}`];
  const server = new NatsServer(pid, ports, workDir, storeDir, logFile, child, ownsStore);
  await waitHealthy(server, deadline);
  return server;
}

async function waitHealthy(server: NatsServer, deadline: number): Promise<void> {
  const mon = server.monitorUrl;
  if (!mon) return;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${mon}/healthz?js-enabled-only=true`);
      if (res.ok) return;
      last = await res.text();
    } catch (e) {
      last = String(e);
    }
    await sleep(25);
  }
  await server.stop(0);
  throw new CleaveError(ErrorCode.NATS_SERVER_START, `nats-server started but never reported healthy: ${last}`);
}

/** True while the process runs (a zombie awaiting its reaper counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !isZombie(pid);
}

export async function killAndWait(pid: number, graceMs: number): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
      await sleep(20);
      if (!isAlive(pid)) return;
    }
    await sleep(20);
  }
}

function isZombie(pid: number): boolean {
  try {
    return /^\d+ \([^)]*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** A JetStream cluster of `size` nodes on loopback; resolves once every node agrees on the meta leader. */
export async function startNatsCluster(size = 3, name = 'cleave-test'): Promise<NatsCluster> {
  // A JetStream cluster needs its routes at start, so the cluster ports are asked of the OS first.
  const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`);
  const started = await Promise.allSettled(
    clusterPorts.map((port, i) => startNatsServer({ serverName: `${name}-${i}`, cluster: { name, port, routes } })),
  );
  const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  try {
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const cluster = new NatsCluster(servers);
    await cluster.waitForMetaLeader();
    return cluster;
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop(0)));
    throw e;
  }
}

export class NatsCluster {
  constructor(readonly servers: NatsServer[]) {}

  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /** The meta leader every node names, once all agree and the meta group has every peer. */
  async waitForMetaLeader(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const leaders = await Promise.all(
        this.servers.map(async (s) => {
          try {
            const res = await fetch(`${s.monitorUrl}/jsz`);
            const j = (await res.json()) as { meta_cluster?: { leader?: string; cluster_size?: number } };
            return j.meta_cluster?.leader && (j.meta_cluster.cluster_size ?? 0) >= this.servers.length ? j.meta_cluster.leader : '';
          } catch {
            return '';
          }
        }),
      );
      if (leaders[0] && leaders.every((l) => l === leaders[0])) return leaders[0];
      await sleep(100);
    }
    throw new CleaveError(ErrorCode.TIMEOUT, `cluster of ${this.servers.length} nodes elected no meta leader in ${timeoutMs} ms`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A port the OS says is free now (bind to 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolvePort(port));
    });
  });
}

/** The version nats-server reports, for status and error messages. */
export function natsServerVersion(): string | undefined {
  try {
    return execFileSync(findNatsServerBinary(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}
