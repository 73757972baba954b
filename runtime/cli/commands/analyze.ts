// `cleave analyze <model> [--input NAME=d,d,...]... [--profile] [--json]`: prices every node of an
// ONNX or TF.js model and lists the cheapest cuts (or prints the whole PartitionGraph as JSON).
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import type { PartitionGraph } from '../../../protocols/graph.js';
import { analyzeModelFile } from '../../graph/mod.js';
import { parseCommandArgs } from '../args.js';

const USAGE = 'usage: cleave analyze <model.onnx|model.json> [--input NAME=d,d,...]... [--profile] [--threads N] [--json]';

export default async function analyze(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(USAGE, {
    args: argv, allowPositionals: true,
    options: {
      input: { type: 'string', multiple: true },
      profile: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) { console.log(USAGE); return 0; }
  if (positionals.length !== 1) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `give exactly one model path; ${USAGE}`);
  const inputs = parseInputs(values.input ?? []);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--threads must be a positive integer, got '${values.threads}'`);
  }
  const t0 = performance.now();
  const g = await analyzeModelFile(positionals[0], { inputs, profile: values.profile, threads });
  const seconds = (performance.now() - t0) / 1000;
  if (values.json) console.log(JSON.stringify(g));
  else console.log(summary(g, seconds));
  return 0;
}

/** `NAME=d,d,...` (repeatable) → { NAME: [d, d, ...] }. */
export function parseInputs(specs: readonly string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    const name = eq > 0 ? spec.slice(0, eq) : '';
    const dims = eq > 0 ? spec.slice(eq + 1).split(',').map((d) => Number(d.trim())) : [];
    if (!name || dims.length === 0 || dims.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--input '${spec}' is not NAME=d,d,... with whole-number dims; e.g. --input x=1,3,640,640`);
    }
    if (out[name]) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--input '${name}' is given twice; give each input once`);
    out[name] = dims;
  }
  return out;
}

/** The readable report: totals, the dearest nodes, and the cheapest interior cuts. */
export function summary(g: PartitionGraph, seconds: number): string {
  const lines: string[] = [];
  const t = g.totals ?? { flops: 0, paramBytes: 0, nodes: g.nodes.length };
  const measured = g.nodes.some((n) => n.measuredSeconds !== undefined);
  lines.push(`${g.model ?? 'model'} (${g.format}): ${t.nodes} nodes, ${g.edges.length} edges, ${gflops(t.flops)} GFLOPs, ${mb(t.paramBytes)} MB params — analyzed in ${seconds.toFixed(2)} s`);
  for (const [label, list] of [['inputs ', g.inputs], ['outputs', g.outputs]] as const) {
    lines.push(`  ${label} ${list.map((x) => `${x.name} ${x.dtype}[${x.shape.join(',')}]`).join('  ')}`);
  }
  if (g.profile) lines.push(`  profile: ${g.profile.runs} runs, ${g.profile.threads} thread(s), median run ${(g.profile.runSeconds * 1000).toFixed(1)} ms, sum of node medians ${(sumMeasured(g) * 1000).toFixed(1)} ms`);
  for (const w of g.warnings ?? []) lines.push(`  warning: ${w}`);
  lines.push('', 'top nodes by FLOPs:');
  const top = [...g.nodes].sort((a, b) => b.flops - a.flops).slice(0, 10);
  for (const n of top) {
    const shape = Object.values(n.outputShapes ?? {})[0];
    lines.push(`  ${pad(n.id, 28)} ${pad(n.op, 18)} ${gflops(n.flops).padStart(8)} GFLOPs  out [${shape?.join(',') ?? ''}]${measured && n.measuredSeconds !== undefined ? `  ${(n.measuredSeconds * 1000).toFixed(2)} ms` : ''}`);
  }
  lines.push('', 'cheapest interior cuts (after N nodes: bytes crossing):');
  const interior = g.cuts.filter((c) => c.after > 0 && c.after < g.nodes.length);
  // Prefer cuts that split the work, not ones next to the ends: rank by bytes among those with 10–90% of FLOPs before.
  const prefix = [0];
  for (const n of g.nodes) prefix.push(prefix[prefix.length - 1] + n.flops);
  const total = prefix[prefix.length - 1] || 1;
  const balanced = interior.filter((c) => prefix[c.after] / total >= 0.1 && prefix[c.after] / total <= 0.9);
  // Neighbouring positions often share the same crossing bytes; show one position per byte count.
  const seen = new Set<number>();
  const distinct = [...(balanced.length ? balanced : interior)].sort((a, b) => a.bytes - b.bytes || a.after - b.after).filter((c) => {
    return !seen.has(c.bytes) && !!seen.add(c.bytes);
  });
  for (const c of distinct.slice(0, 5)) {
    const names = c.tensors.map((x) => x.name);
    lines.push(`  after ${String(c.after).padStart(5)} (${((100 * prefix[c.after]) / total).toFixed(0).padStart(3)}% FLOPs before): ${mb(c.bytes)} MB in ${names.length} tensor(s) ${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}`);
  }
  return lines.join('\n');
}

function sumMeasured(g: PartitionGraph): number {
  return g.nodes.reduce((a, n) => a + (n.measuredSeconds ?? 0), 0);
}
const gflops = (f: number): string => (f / 1e9).toFixed(3);
const mb = (b: number): string => (b / 1e6).toFixed(3);
const pad = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n));
