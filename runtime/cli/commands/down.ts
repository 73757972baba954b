// `cleave down`: stops what `cleave up --detach` started (actors drain first, then the server).
import { rmSync } from 'node:fs';
import { readRunFile, runFilePath } from '../../nats/connect.js';
import { killAndWait } from '../../nats/server.js';

export default async function down(): Promise<number> {
  const run = readRunFile();
  if (!run) {
    console.log('nothing is up (no run file at ' + runFilePath() + ')');
    return 0;
  }
  await Promise.all(run.actors.map((a) => killAndWait(a.pid, 10_000)));
  if (run.natsPid) await killAndWait(run.natsPid, 5_000);
  rmSync(runFilePath(), { force: true });
  console.log(`stopped ${run.actors.length} actors${run.natsPid ? ' and nats-server' : ''}`);
  return 0;
}
