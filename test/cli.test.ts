import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { projectRoot } from '../runtime/paths.js';
import { isAlive } from '../runtime/nats/server.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

const run = promisify(execFile);
const cleave = (args: string[], env: Record<string, string>) =>
  run(process.execPath, [join(projectRoot(), 'bin', 'cleave.js'), ...args], { cwd: projectRoot(), env: { ...process.env, ...env }, timeout: 120_000 });

function freshHome(): Record<string, string> {
  const home = mkdtempSync(join(tmpdir(), 'cleave-home-'));
  const env: Record<string, string> = { CLEAVE_HOME: home };
  delete process.env.NATS_URL;
  return env;
}

test('cli - up --detach, status --json, down: six roles in six distinct processes, nothing left behind', async () => {
  const env = freshHome();
  try {
    const upOut = await cleave(['up', '--detach', '--executors', '1'], env);
    assert.match(upOut.stdout, /running in the background/);
    const { stdout } = await cleave(['status', '--json'], env);
    const status = JSON.parse(stdout) as { actors: { role: string; id: string; host: string; pid: number; state: string }[] };
    const roles = new Set(status.actors.map((a) => a.role));
    assert.deepEqual([...roles].sort(), ['coordinator', 'executor', 'graph-analyzer', 'memory-pool', 'planner', 'repartition-watcher']);
    const pids = new Set(status.actors.map((a) => a.pid));
    assert.equal(pids.size, status.actors.length, 'each actor in its own process');
    assert.ok(!pids.has(process.pid));
    for (const a of status.actors) {
      assert.equal(typeof a.host, 'string');
      assert.ok(isAlive(a.pid));
      assert.ok(['ready', 'idle'].includes(a.state), `${a.role} is ${a.state}`);
    }
    const down = await cleave(['down'], env);
    assert.match(down.stdout, /stopped 6 actors and nats-server/);
    for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} still alive after down`);
    assert.equal(existsSync(join(env.CLEAVE_HOME!, 'run.json')), false);
    await assert.rejects(cleave(['status'], env), /NATS_UNAVAILABLE.*cleave up/s);
  } finally {
    await cleave(['down'], env).catch(() => {});
    rmSync(env.CLEAVE_HOME!, { recursive: true, force: true });
  }
});

test('cli - up in the foreground stops every process on SIGINT', async (t) => {
  const env = freshHome();
  try {
    const child = spawn(process.execPath, ['bin/cleave.js', 'up', '--executors', '2'], { cwd: projectRoot(), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    t.after(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const deadline = Date.now() + 150_000;
    while (!out.includes('Ctrl-C') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /executor-2/, `stdout: ${out}\nstderr: ${err}`);
    const pids = [...out.matchAll(/^\S+\s+\S+\s+\S+\s+(\d+)\s/gm)].map((m) => Number(m[1]));
    assert.equal(pids.length, 7);
    child.kill('SIGINT');
    const [code, signal] = await once(child, 'exit');
    assert.equal(code, 0, `exit code ${code}, signal ${signal}\nstdout: ${out}\nstderr: ${err}`);
    assert.match(out, /no process left behind/);
    for (const pid of pids) assert.equal(isAlive(pid), false);
  } finally {
    rmSync(env.CLEAVE_HOME!, { recursive: true, force: true });
  }
});

test('cli - bad usage gets a typed error and a non-zero exit', async () => {
  await assert.rejects(cleave(['actor', 'painter'], {}), (e: { stderr: string; code: number }) => {
    assert.match(e.stderr, /UNKNOWN_ROLE.*choose one of: graph-analyzer, planner/);
    assert.equal(e.code, 1);
    return true;
  });
  await assert.rejects(cleave(['frobnicate'], {}), /unknown command 'frobnicate'/);
  // An option a command does not know is a BAD_ARGUMENT naming the option and the command's usage.
  await assert.rejects(cleave(['infer', 'm.onnx', '--bogus', '3'], {}), (e: { stderr: string; code: number }) => {
    assert.match(e.stderr, /^cleave infer: \[BAD_ARGUMENT\] Unknown option '--bogus'.*usage: cleave infer <model> \[--input NAME=d,d,\.\.\.\]/s);
    assert.equal(e.code, 2);
    return true;
  });
  // Called from code, a command refuses the same arguments with the typed error (the shell only prints it).
  const { default: status } = await import('../runtime/cli/commands/status.js');
  await assert.rejects(status(['--nope']), (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.BAD_ARGUMENT && /Unknown option '--nope'.*usage: cleave status/s.test(e.message));
  // --help prints the usage and succeeds, for commands with and without a help option of their own.
  assert.match((await cleave(['infer', '--help'], {})).stdout, /^usage: cleave infer <model>.*--rate R.*--compare/);
  assert.match((await cleave(['status', '-h'], {})).stdout, /^usage: cleave status \[--json\]/);
  assert.match((await cleave(['analyze', '--help'], {})).stdout, /usage: cleave analyze <model\.onnx\|model\.json>/);
});
