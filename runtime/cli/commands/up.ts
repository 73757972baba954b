// `cleave up [--executors N] [--detach]`: embedded NATS plus one process per role (N executors).
// Foreground: shows the roster and runs until Ctrl-C, then stops everything. --detach: leaves it running.
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import { isAlive } from '../../nats/server.js';
import { readRunFile } from '../../nats/connect.js';
import { startLocalDeployment } from '../../local-deployment.js';
import { formatRoster } from './status.js';
import { parseCommandArgs } from '../args.js';
import { usageOf } from '../usage.js';

export default async function up(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(usageOf('up'), { args: argv, options: { executors: { type: 'string', default: '3' }, detach: { type: 'boolean', default: false } } });
  const executors = Number(values.executors);
  if (!Number.isInteger(executors) || executors < 0) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--executors takes a whole number, not '${values.executors}'`);
  const running = readRunFile();
  if (running && isAlive(running.natsPid)) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `a deployment is already up (nats-server pid ${running.natsPid} at ${running.url}); run \`cleave down\` first`);
  }
  const dep = await startLocalDeployment({ executors, detached: values.detach });
  console.log(`NATS: ${dep.url}${dep.server ? ` (embedded, pid ${dep.server.pid})` : ''}`);
  console.log(formatRoster(await dep.roster()));
  if (values.detach) {
    await dep.nc.close();
    console.log('\nrunning in the background: `cleave status` to look, `cleave down` to stop.');
    return 0;
  }
  console.log('\nrunning: Ctrl-C stops every actor and the server.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  console.log('\nstopping…');
  await dep.stop();
  console.log('stopped; no process left behind.');
  return 0;
}
