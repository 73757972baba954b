// `cleave actor <role> [--id ID]`: one actor in the foreground until SIGTERM/SIGINT.
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import { ROLES } from '../../../protocols/subjects.js';
import { runActor } from '../../actor/main.js';
import { parseCommandArgs } from '../args.js';
import { usageOf } from '../usage.js';

export default async function actor(argv: string[]): Promise<number> {
  const { positionals, values } = parseCommandArgs(usageOf('actor'), { args: argv, allowPositionals: true, options: { id: { type: 'string' } } });
  const role = positionals[0];
  if (!role) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `name a role: cleave actor <${ROLES.join('|')}> [--id ID]`);
  await runActor(role, values.id);
  // The host exits the process when it has drained after a signal.
  await new Promise(() => {});
  return 0;
}
