#!/usr/bin/env node
// Bootstrap for `npm start` / `npm test` on a fresh machine: npm dependencies, then the OS packages
// Cleave runs against (nats-server; for tests also Debian's libonnx-testdata). Plain JS: runs before
// anything is installed. As root it installs what is missing; otherwise it says exactly what to run.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { join, delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const forTests = process.argv.includes('--test') || process.env.npm_lifecycle_event === 'pretest';
const say = (m) => process.stderr.write(`[bootstrap] ${m}\n`);

function npmDepsMissing() {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const lock = join(root, 'package-lock.json');
  const marker = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(marker)) return true;
  if (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000) return true;
  const deps = { ...pkg.dependencies, ...pkg.devDependencies };
  return Object.keys(deps).some((d) => !existsSync(join(root, 'node_modules', d, 'package.json')));
}

function onPath(bin) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
  return dirs.some((d) => d && existsSync(join(d, bin)));
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
let aptUpdated = false;
function aptInstall(pkgs, why) {
  if (!isRoot) {
    say(`missing ${why}. Install it with:  sudo apt-get install -y ${pkgs.join(' ')}`);
    return false;
  }
  say(`installing ${pkgs.join(' ')} (${why}) with apt-get…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    aptUpdated = true;
  }
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
  return r.status === 0;
}

let ok = true;
if (npmDepsMissing()) {
  // `npm install` honours package-lock.json; `npm ci` is not used because npm 11 rejects the lock it
  // writes itself for msgpackr's optional platform packages ("Missing: @msgpackr-extract/... from lock file").
  say('installing npm dependencies (npm install)…');
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    say('npm could not install the dependencies; see the output above.');
    process.exit(1);
  }
}

if (!process.env.NATS_URL && !process.env.NATS_SERVER_BIN && !onPath('nats-server')) {
  ok = aptInstall(['nats-server'], 'nats-server, the message server Cleave embeds (or set NATS_URL to use your own)') && ok;
}
if (forTests && !existsSync('/usr/share/libonnx-testdata/data/node')) {
  ok = aptInstall(['libonnx-testdata'], "Debian's ONNX conformance models, used by the test suite") && ok;
}
if (!ok) process.exit(1);
try {
  const v = execFileSync(process.env.NATS_SERVER_BIN ?? (onPath('nats-server') ? 'nats-server' : '/usr/sbin/nats-server'), ['--version'], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/usr/local/sbin` } }).trim();
  if (process.env.CLEAVE_DEBUG) say(v);
} catch {
  // NATS_URL users need no local server
}
