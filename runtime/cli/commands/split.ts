// `cleave split <model> --plan PLAN --out DIR`: one standalone ONNX file per plan stage, plus
// DIR/manifest.json naming the tensors each stage reads and writes.
import { readFile } from 'node:fs/promises';
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import { extractStages, writeStages } from '../../onnx/extract.js';
import { loadModelFile } from '../../onnx/proto.js';
import { parseCommandArgs } from '../args.js';

const USAGE = 'usage: cleave split <model.onnx> --plan PLAN.json --out DIR [--json]';

/** The part of a plan `split` reads: stages in order, each with its node ids in order. */
export interface SplitPlan {
  stages: { executor?: string; nodes: string[] }[];
}

export function parseSplitPlan(text: string, source: string): SplitPlan {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CleaveError(ErrorCode.PLAN_INVALID, `plan '${source}' is not JSON (${(e as Error).message}); pass the file 'cleave plan --out' wrote`, { cause: e });
  }
  const stages = (raw as { stages?: unknown })?.stages;
  if (!Array.isArray(stages) || stages.length === 0) {
    throw new CleaveError(ErrorCode.PLAN_INVALID, `plan '${source}' has no "stages" list; pass a plan of the form { "stages": [{ "executor": ..., "nodes": [...] }] }`);
  }
  stages.forEach((s, i) => {
    const nodes = (s as { nodes?: unknown })?.nodes;
    if (!Array.isArray(nodes) || !nodes.every((n) => typeof n === 'string')) {
      throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${i} of plan '${source}' has no "nodes" list of node ids; list the stage's node ids in order`);
    }
  });
  return { stages: stages as SplitPlan['stages'] };
}

export default async function split(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      plan: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || !values.plan || !values.out) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `split needs one model, --plan and --out; ${USAGE}`);
  }
  const model = await loadModelFile(positionals[0]);
  let planText: string;
  try {
    planText = await readFile(values.plan, 'utf8');
  } catch (e) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `cannot read plan '${values.plan}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the path`, { cause: e });
  }
  const plan = parseSplitPlan(planText, values.plan);
  const result = await extractStages(model, plan.stages.map((s) => s.nodes));
  const manifest = await writeStages(values.out, result);
  if (values.json) {
    console.log(JSON.stringify(manifest, null, 2));
  } else {
    for (const [i, s] of manifest.stages.entries()) {
      const executor = plan.stages[i].executor ? ` (${plan.stages[i].executor})` : '';
      console.log(`${values.out}/${s.file}${executor}: ${result.stages[i].nodes.length} nodes, in [${s.inputs.join(', ')}] out [${s.outputs.join(', ')}]`);
    }
    console.log(`${values.out}/manifest.json`);
  }
  return 0;
}
