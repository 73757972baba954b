// The `cleave` command line: dispatches `cleave <command> ...` to runtime/cli/commands/<command>.ts.
// Each command module's default export takes the remaining argv and resolves to an exit code.
import { CleaveError, ErrorCode, asCleaveError } from '../../protocols/errors.js';
import { COMMAND_SUMMARIES, usageOf, type CommandName } from './usage.js';

export type Command = (argv: string[]) => Promise<number>;

/** `ownHelp`: the command parses --help itself and prints a fuller usage than its summary. */
const COMMANDS: Record<CommandName, { ownHelp?: true; load: () => Promise<{ default: Command }> }> = {
  actor: { load: () => import('./commands/actor.js') },
  up: { load: () => import('./commands/up.js') },
  down: { load: () => import('./commands/down.js') },
  status: { load: () => import('./commands/status.js') },
  analyze: { ownHelp: true, load: () => import('./commands/analyze.js') },
  plan: { ownHelp: true, load: () => import('./commands/plan.js') },
  split: { ownHelp: true, load: () => import('./commands/split.js') },
  infer: { load: () => import('./commands/infer.js') },
  demo: { load: () => import('./commands/demo.js') },
  bench: { load: () => import('./commands/bench.js') },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    printUsage();
    return name ? 0 : 2;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name as CommandName] : undefined;
  if (!cmd) {
    console.error(`cleave: unknown command '${name}'. Run 'cleave --help' for the list.`);
    return 2;
  }
  if (!cmd.ownHelp && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(usageOf(name as CommandName));
    return 0;
  }
  try {
    const mod = await cmd.load();
    return await mod.default(rest);
  } catch (e) {
    const err = asCleaveError(e);
    console.error(`cleave ${name}: [${err.code}] ${err.message}`);
    if (!(e instanceof CleaveError) && e instanceof Error && e.stack && process.env.CLEAVE_DEBUG) console.error(e.stack);
    // Usage errors exit 2, as an unknown command does; failures of the work itself exit 1.
    return err.code === ErrorCode.BAD_ARGUMENT ? 2 : 1;
  }
}

function printUsage(): void {
  console.log('usage: cleave <command> [options]\n');
  for (const summary of Object.values(COMMAND_SUMMARIES)) console.log(`  ${summary}`);
}
