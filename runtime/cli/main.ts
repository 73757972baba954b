// The `cleave` command line: dispatches `cleave <command> ...` to runtime/cli/commands/<command>.ts.
// Each command module's default export takes the remaining argv and resolves to an exit code.
import { CleaveError, ErrorCode, asCleaveError } from '../../protocols/errors.js';

export type Command = (argv: string[]) => Promise<number>;

/** `ownHelp`: the command parses --help itself and prints a fuller usage than its summary. */
const COMMANDS: Record<string, { summary: string; ownHelp?: true; load: () => Promise<{ default: Command }> }> = {
  actor: { summary: 'actor <role> [--id ID]          run one actor in the foreground', load: () => import('./commands/actor.js') },
  up: { summary: 'up [--executors N] [--detach]     start embedded NATS and one actor of each role', load: () => import('./commands/up.js') },
  down: { summary: 'down                             stop what `up --detach` started', load: () => import('./commands/down.js') },
  status: { summary: 'status [--json]                  list live actors', load: () => import('./commands/status.js') },
  analyze: { summary: 'analyze <model> [--input N=d,..] [--json]   cost every node, list cuts', ownHelp: true, load: () => import('./commands/analyze.js') },
  plan: { summary: 'plan <model>|--graph G --executors FILE [--objective throughput|latency] [--json] [--out PLAN]', ownHelp: true, load: () => import('./commands/plan.js') },
  split: { summary: 'split <model> --plan PLAN --out DIR   write one ONNX file per stage', ownHelp: true, load: () => import('./commands/split.js') },
  infer: { summary: 'infer <model> [--input NAME=d,d,...] [--executors N] [--requests N] [--rate R] [--max-in-flight N] [--max-stages N] [--objective throughput|latency] [--images digits] [--compare] [--json]', load: () => import('./commands/infer.js') },
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
  if (!cmd.ownHelp && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(`usage: cleave ${cmd.summary}`);
    return 0;
  }
  try {
    const mod = await cmd.load();
    return await mod.default(rest);
  } catch (e) {
    // node:util parseArgs refusing an option or a positional is the caller's mistake, not ours.
    if (isParseArgsError(e)) {
      console.error(`cleave ${name}: [${ErrorCode.BAD_ARGUMENT}] ${e.message}; usage: cleave ${cmd.summary}`);
      return 2;
    }
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

function isParseArgsError(e: unknown): e is Error {
  const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}
