// The `cleave` command line: dispatches `cleave <command> ...` to runtime/cli/commands/<command>.ts.
// Each command module's default export takes the remaining argv and resolves to an exit code.
import { CleaveError, asCleaveError } from '../../protocols/errors.js';

export type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ default: Command }> }> = {
  actor: { summary: 'actor <role> [--id ID]          run one actor in the foreground', load: () => import('./commands/actor.js') },
  up: { summary: 'up [--executors N] [--detach]     start embedded NATS and one actor of each role', load: () => import('./commands/up.js') },
  down: { summary: 'down                             stop what `up --detach` started', load: () => import('./commands/down.js') },
  status: { summary: 'status [--json]                  list live actors', load: () => import('./commands/status.js') },
  analyze: { summary: 'analyze <model> [--input N=d,..] [--json]   cost every node, list cuts', load: () => import('./commands/analyze.js') },
  plan: { summary: 'plan <model>|--graph G --executors FILE [--objective throughput|latency] [--json] [--out PLAN]', load: () => import('./commands/plan.js') },
  split: { summary: 'split <model> --plan PLAN --out DIR   write one ONNX file per stage', load: () => import('./commands/split.js') },
  infer: { summary: 'infer <model> [--executors N] [--requests N] [--compare] [--json]', load: () => import('./commands/infer.js') },
  demo: { summary: 'demo                             the main job (what `npm start` runs)', load: () => import('./commands/demo.js') },
  bench: { summary: 'bench <codec|planner|conformance|pipeline> [--json]', load: () => import('./commands/bench.js') },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    printUsage();
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`cleave: unknown command '${name}'. Run 'cleave --help' for the list.`);
    return 2;
  }
  try {
    const mod = await cmd.load();
    return await mod.default(rest);
  } catch (e) {
    const err = asCleaveError(e);
    console.error(`cleave ${name}: [${err.code}] ${err.message}`);
    if (!(e instanceof CleaveError) && e instanceof Error && e.stack && process.env.CLEAVE_DEBUG) console.error(e.stack);
    return 1;
  }
}

function printUsage(): void {
  console.log('usage: cleave <command> [options]\n');
  for (const c of Object.values(COMMANDS)) console.log(`  ${c.summary}`);
}
