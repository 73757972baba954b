import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCode, isCleaveError } from '../protocols/errors.js';
import type { Plan } from '../protocols/plan.js';
import { projectRoot } from '../runtime/paths.js';
import planCommand from '../runtime/cli/commands/plan.js';
import { definePlanningProblem, validatePlan } from '../runtime/planner/mod.js';

const root = projectRoot();
const ex = (f: string) => join(root, 'examples', f);

/** Runs the command in-process with console.log captured. */
async function runPlan(argv: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.map(String).join(' ')); };
  try {
    return { code: await planCommand(argv), out: lines.join('\n') };
  } finally {
    console.log = log;
  }
}

test('planner cli - --graph with --json and --out round-trips a valid plan', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cleave-plan-'));
  try {
    const out = join(dir, 'plan.json');
    const { code, out: stdout } = await runPlan(['--graph', ex('graph.small.json'), '--executors', ex('executors.3.json'), '--links', ex('links.3.json'), '--json', '--out', out]);
    assert.equal(code, 0);
    const printed = JSON.parse(stdout) as Plan;
    const written = JSON.parse(readFileSync(out, 'utf8')) as Plan;
    assert.deepEqual(written, printed);
    assert.equal(written.version, 1);
    assert.equal(written.objective, 'throughput');
    const problem = definePlanningProblem({
      graph: JSON.parse(readFileSync(ex('graph.small.json'), 'utf8')),
      executors: JSON.parse(readFileSync(ex('executors.3.json'), 'utf8')),
      links: JSON.parse(readFileSync(ex('links.3.json'), 'utf8')),
    });
    assert.deepEqual(validatePlan(written, problem).errors, []);
    assert.deepEqual(written.stages.flatMap((s) => s.nodes), problem.graph.ids);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planner cli - default output is a table with the bottleneck marked and the explanation', async () => {
  const { code, out } = await runPlan(['--graph', ex('graph.small.json'), '--executors', ex('executors.3.json'), '--objective', 'latency', '--max-stages', '2']);
  assert.equal(code, 0);
  assert.match(out, /^stage\s+executor\s+nodes\s+compute\s+receive\s+send\s+stage time\s+memory/);
  assert.match(out, /\n\d\*\s/);
  assert.match(out, /objective latency, algorithm exact/);
  assert.match(out, /bottleneck is stage \d on /);
});

test('planner cli - an executors file may carry links and constraints; flags add to them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cleave-plan-'));
  try {
    const file = join(dir, 'cluster.json');
    writeFileSync(file, JSON.stringify({
      executors: JSON.parse(readFileSync(ex('executors.3.json'), 'utf8')),
      links: JSON.parse(readFileSync(ex('links.3.json'), 'utf8')),
      constraints: { pins: [{ nodes: 'stem', labels: ['region=eu'] }] },
    }));
    const { out } = await runPlan(['--graph', ex('graph.small.json'), '--executors', file, '--boundary', 'b2.add', '--replicas', 'none', '--json']);
    const p = JSON.parse(out) as Plan;
    assert.equal(p.stages[0].executor, 'slow-eu');
    assert.ok(p.stages.some((s) => s.nodes[s.nodes.length - 1] === 'b2.add'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planner cli - bad arguments are BAD_ARGUMENT errors that say what to do', async () => {
  const bad: [string[], RegExp][] = [
    [['--executors', ex('executors.3.json')], /exactly one of a model path or --graph/],
    [['--graph', ex('graph.small.json')], /--executors FILE is required/],
    [['--graph', ex('graph.small.json'), '--executors', ex('executors.3.json'), '--objective', 'fast'], /'fast' is not one of throughput, latency/],
    [['--graph', ex('nope.json'), '--executors', ex('executors.3.json')], /cannot read graph file/],
    [['m.onnx', '--input', 'x=1,a', '--executors', ex('executors.3.json')], /NAME=d,d/],
  ];
  for (const [argv, msg] of bad) {
    await assert.rejects(runPlan(argv), (e: unknown) => isCleaveError(e, ErrorCode.BAD_ARGUMENT) && msg.test(e.message), argv.join(' '));
  }
});

test('planner cli - `cleave plan` through bin/cleave.js prints JSON and exits 0; infeasible exits 1 with the code', async () => {
  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [join(root, 'bin', 'cleave.js'), 'plan', '--graph', ex('graph.small.json'), '--executors', ex('executors.3.json'), '--json'], { cwd: root, timeout: 60_000 });
  assert.ok((JSON.parse(stdout) as Plan).stages.length >= 1);
  const failed = await run(process.execPath, [join(root, 'bin', 'cleave.js'), 'plan', '--graph', ex('graph.small.json'), '--executors', ex('executors.3.json'), '--boundary', 'stem', '--boundary', 'b1.add', '--boundary', 'b2.add', '--boundary', 'b3.add'], { cwd: root, timeout: 60_000 })
    .then(() => assert.fail('expected exit 1'), (e: { code: number; stderr: string }) => e);
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /\[PLAN_INFEASIBLE\] .*own executor/);
});
