// Where the checkout and Cleave's data directory are, for every process of a deployment.
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** The checkout's root (holds package.json, nats.conf). */
export function projectRoot(): string {
  return ROOT;
}

/** Cleave's data directory: `$CLEAVE_HOME`, else `.cleave/` in the checkout. */
export function dataDir(): string {
  return process.env.CLEAVE_HOME ? resolve(process.env.CLEAVE_HOME) : join(ROOT, '.cleave');
}
