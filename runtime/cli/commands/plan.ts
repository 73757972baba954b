// `cleave plan`: a model (through GraphAnalyzer) or a GRAPH.json, executor profiles, links and
// constraints → a Plan, printed as a table with its explanation, as JSON, or written to a file.
import { readFile, writeFile } from 'node:fs/promises';
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import type { PartitionGraph } from '../../../protocols/graph.js';
import type { Constraints, ExecutorProfile, Link, LinkTable, Plan } from '../../../protocols/plan.js';
import { plan, type GraphInput, type PlanRequest } from '../../planner/mod.js';
import { fmtB, fmtS } from '../../planner/planner.js';
import { analyzeModelFile } from '../../graph/mod.js';
import { parseInputs } from './analyze.js';
import { parseCommandArgs } from '../args.js';

const USAGE = `usage: cleave plan <model> [--input NAME=d,d,...]... --executors FILE [options]
       cleave plan --graph GRAPH.json --executors FILE [options]
options:
  --executors FILE     [{ id, flopsPerSec, memoryBytes, labels? }] or { executors, links?, constraints? }
  --links FILE         { default?: { bandwidthBytesPerSec, latencySeconds }, links: [{ from, to, ... }] } or a list
  --constraints FILE   { pins?: [{ nodes, labels }], boundaries?: [nodeId], maxStages? }
  --objective O        throughput (default) | latency
  --max-stages N       at most N stages
  --boundary NODE      require a stage boundary after NODE (repeatable)
  --replicas R         spare (default for throughput) | none
  --algorithm A        auto (default) | exact | heuristic | greedy | exo-memory-proportional
  --measured-flops F   FLOP/s of the host that measured measuredSeconds (use measured times)
  --profile            ask GraphAnalyzer to measure node times (with --measured-flops)
  --json               print the plan as JSON
  --out PLAN           write the plan as JSON to PLAN`;

export default async function planCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      graph: { type: 'string' },
      input: { type: 'string', multiple: true },
      executors: { type: 'string' },
      links: { type: 'string' },
      constraints: { type: 'string' },
      objective: { type: 'string' },
      'max-stages': { type: 'string' },
      boundary: { type: 'string', multiple: true },
      replicas: { type: 'string' },
      algorithm: { type: 'string' },
      'measured-flops': { type: 'string' },
      profile: { type: 'boolean' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { console.log(USAGE); return 0; }
  const model = positionals[0];
  if ((model === undefined) === (values.graph === undefined)) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `give exactly one of a model path or --graph GRAPH.json\n${USAGE}`);
  }
  if (!values.executors) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--executors FILE is required (a JSON list of { id, flopsPerSec, memoryBytes, labels? })\n${USAGE}`);

  const execFile = await readJson(values.executors, 'executors');
  type ClusterFile = { executors?: ExecutorProfile[]; links?: LinkTable | Link[]; constraints?: Constraints };
  const execDoc: ClusterFile = Array.isArray(execFile) ? { executors: execFile as ExecutorProfile[] } : (execFile as ClusterFile);
  if (!Array.isArray(execDoc.executors)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${values.executors}: expected a list of executors or { executors: [...] }`);
  const links = values.links ? (await readJson(values.links, 'links')) as LinkTable | Link[] : execDoc.links;
  const constraints: Constraints = { ...(execDoc.constraints ?? {}), ...(values.constraints ? (await readJson(values.constraints, 'constraints')) as Constraints : {}) };
  if (values['max-stages'] !== undefined) constraints.maxStages = positiveInt(values['max-stages'], '--max-stages');
  if (values.boundary?.length) constraints.boundaries = [...(constraints.boundaries ?? []), ...values.boundary];
  const measured = values['measured-flops'] !== undefined ? Number(values['measured-flops']) : undefined;
  if (measured !== undefined && !(measured > 0)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--measured-flops must be a number > 0, got '${values['measured-flops']}'`);

  const graph = values.graph
    ? (await readJson(values.graph, 'graph')) as GraphInput
    : await analyze(model!, parseInputs(values.input ?? []), values.profile ?? false);

  const req: PlanRequest = {
    graph, executors: execDoc.executors, links, constraints,
    objective: oneOf(values.objective ?? 'throughput', ['throughput', 'latency'] as const, '--objective'),
    replicas: values.replicas === undefined ? undefined : oneOf(values.replicas, ['spare', 'none'] as const, '--replicas'),
    algorithm: oneOf(values.algorithm ?? 'auto', ['auto', 'exact', 'heuristic', 'greedy', 'exo-memory-proportional'] as const, '--algorithm'),
    measuredFlopsPerSec: measured,
  };
  const result = plan(req);
  if (values.out) await writeFile(values.out, JSON.stringify(result, null, 2) + '\n');
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else console.log(renderPlan(result) + (values.out ? `\nplan written to ${values.out}` : ''));
  return 0;
}

/** The plan as a table plus its prediction and explanation. */
export function renderPlan(p: Plan): string {
  const rows = [['stage', 'executor', 'nodes', 'compute', 'receive', 'send', 'stage time', 'memory']];
  p.stages.forEach((s, i) => {
    const nodes = s.nodes.length === 1 ? s.nodes[0] : `${s.nodes[0]}..${s.nodes[s.nodes.length - 1]} (${s.nodes.length})`;
    const ex = s.replicaExecutors?.length ? `${s.executor} +${s.replicaExecutors.join(',')}` : s.executor;
    const mark = i === p.predicted.bottleneckStage ? '*' : '';
    rows.push([`${i}${mark}`, ex, nodes, fmtS(s.predicted.computeSeconds), fmtS(s.predicted.transferInSeconds), fmtS(s.predicted.transferOutSeconds), fmtS(s.predicted.stageSeconds), fmtB(s.predicted.memoryBytes)]);
  });
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const table = rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
  return [
    table,
    '',
    `objective ${p.objective}, algorithm ${p.algorithm}: bottleneck ${fmtS(p.predicted.bottleneckSeconds)} (stage ${p.predicted.bottleneckStage}, marked *), ${p.predicted.throughputPerSec.toFixed(2)} requests/s, latency ${fmtS(p.predicted.latencySeconds)}`,
    p.explanation,
  ].join('\n');
}

async function analyze(model: string, inputs: Record<string, number[]>, profile: boolean): Promise<PartitionGraph> {
  return analyzeModelFile(model, { inputs: Object.keys(inputs).length ? inputs : undefined, profile });
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `cannot read ${what} file '${path}': ${(e as Error).message}; check the path`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${what} file '${path}' is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${flag} must be an integer ≥ 1, got '${v}'`);
  return n;
}

function oneOf<T extends string>(v: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(v)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${flag} '${v}' is not one of ${allowed.join(', ')}`);
  return v as T;
}
