// `cleave bench hop [--json] [--mb 1] [--rounds 12]`: one pipeline hop's transfer (a frame published to
// a JetStream work queue, pulled, decoded, acked: bench/pipeline.ts's hopMBps) with the encoded frame
// handed over to the connection (runtime/nats/handover.ts) against packed into one more copy as nats.js
// does, in alternating rounds in one process on one embedded nats-server, next to raw core NATS.
// Prints medians of MB/s and of this process's CPU per MB for each, and their ratios.
import { parseCommandArgs } from '../runtime/cli/args.js';
import { usageOf } from '../runtime/cli/usage.js';
import { startNatsServer } from '../runtime/nats/server.js';
import { connectNats } from '../runtime/nats/connect.js';
import { handOverPatch, setHandOver } from '../runtime/nats/handover.js';
import { hopMBps, rawCoreMBps } from './transfer.js';
import { median, round } from './stats.js';


export default async function benchHop(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(usageOf('bench'), {
    args: argv,
    options: {
      json: { type: 'boolean', default: false },
      mb: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '12' },
    },
  });
  const mb = Number(values.mb);
  const rounds = Number(values.rounds);
  const log = (m: string) => !values.json && process.stderr.write(m + '\n');
  const server = await startNatsServer({});
  const nc = await connectNats([server.url]);
  const kinds = ['raw', 'packed', 'handedOver'] as const;
  const got: Record<(typeof kinds)[number], { mbps: number[]; cpuMsPerMB: number[] }> = { raw: { mbps: [], cpuMsPerMB: [] }, packed: { mbps: [], cpuMsPerMB: [] }, handedOver: { mbps: [], cpuMsPerMB: [] } };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const kind of kinds) {
        setHandOver(kind === 'handedOver');
        const c0 = process.cpuUsage();
        const mbps = kind === 'raw' ? await rawCoreMBps(server.url, mb) : await hopMBps(nc, mb);
        const c = process.cpuUsage(c0);
        // hopCount in bench/pipeline.ts: at least 256 MB a round. CPU includes the round's setup.
        const total = Math.max(8, Math.ceil(256 / mb)) * mb;
        got[kind].mbps.push(mbps);
        got[kind].cpuMsPerMB.push((c.user + c.system) / 1000 / total);
      }
      log(`round ${r + 1}: raw ${got.raw.mbps.at(-1)!.toFixed(0)}, packed ${got.packed.mbps.at(-1)!.toFixed(0)}, handed over ${got.handedOver.mbps.at(-1)!.toFixed(0)} MB/s`);
    }
  } finally {
    setHandOver(true);
    await nc.close();
    await server.stop();
  }
  const m = (k: (typeof kinds)[number]) => ({ mbps: round(median(got[k].mbps), 0), cpuMsPerMB: round(median(got[k].cpuMsPerMB)), rounds: got[k].mbps.map((x) => round(x, 0)) });
  const wins = got.handedOver.mbps.filter((x, i) => x > got.packed.mbps[i]!).length;
  const report = {
    mb,
    rounds,
    patch: handOverPatch(),
    raw: m('raw'),
    packed: m('packed'),
    handedOver: m('handedOver'),
    handedOverVsPacked: round(median(got.handedOver.mbps) / median(got.packed.mbps)),
    roundsHandedOverFaster: wins,
    handedOverVsRaw: round(median(got.handedOver.mbps) / median(got.raw.mbps)),
    packedVsRaw: round(median(got.packed.mbps) / median(got.raw.mbps)),
  };
  if (values.json) process.stdout.write(JSON.stringify(report) + '\n');
  else log(`${mb} MB hop: handed over ${report.handedOver.mbps} MB/s (${report.handedOver.cpuMsPerMB} ms CPU/MB), packed ${report.packed.mbps} (${report.packed.cpuMsPerMB}), raw core NATS ${report.raw.mbps}; handed over / packed ${report.handedOverVsPacked} (${wins} of ${rounds} rounds faster)`);
  return 0;
}
