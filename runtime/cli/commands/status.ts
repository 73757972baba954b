// `cleave status [--json]`: every live actor of the deployment (NATS_URL, or the one `cleave up` started).
import { connectNats } from '../../nats/connect.js';
import { listActors } from '../../actor/client.js';
import type { ActorRecord } from '../../../protocols/messages.js';
import { parseCommandArgs } from '../args.js';
import { usageOf } from '../usage.js';

export default async function status(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(usageOf('status'), { args: argv, options: { json: { type: 'boolean', default: false } } });
  const nc = await connectNats(undefined, 'cleave-status');
  try {
    const actors = await listActors(nc);
    if (values.json) {
      console.log(JSON.stringify({ actors: actors.map(({ role, id, host, pid, state }) => ({ role, id, host, pid, state })) }, null, 2));
    } else {
      console.log(formatRoster(actors));
    }
    return 0;
  } finally {
    await nc.close();
  }
}

export function formatRoster(actors: ActorRecord[]): string {
  if (actors.length === 0) return 'no live actors';
  const rows = actors.map((a) => [a.role, a.id, a.host, String(a.pid), a.state, `${Math.round((Date.now() - a.startedAt) / 1000)}s`]);
  const head = ['ROLE', 'ID', 'HOST', 'PID', 'STATE', 'UP'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [fmt(head), ...rows.map(fmt)].join('\n');
}
