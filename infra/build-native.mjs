#!/usr/bin/env node
// Builds Cleave's one native addon, runtime/shm/native/mmap.c (maps shared-memory frames; see there
// why), into build/native/cleave_mmap.node with the C compiler and Node's own headers, no network and no
// node-gyp. Run by the bootstrap; safe to run again (skips an up-to-date build). Without a compiler or
// headers it says so and exits 0: Cleave then reads frames with read() instead (CLEAVE_MMAP=0 forces that).
import { existsSync, mkdirSync, renameSync, statSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'runtime', 'shm', 'native', 'mmap.c');
const out = join(root, 'build', 'native', 'cleave_mmap.node');
const say = (m) => process.stderr.write(`[build-native] ${m}\n`);

export function nodeIncludeDirs() {
  const prefix = dirname(dirname(process.execPath));
  const version = process.version.slice(1);
  const home = process.env.HOME ?? '';
  const candidates = [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    join(prefix, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
    home && join(home, '.cache', 'node-gyp', version, 'include', 'node'),
  ].filter(Boolean);
  return candidates.filter((d) => existsSync(join(d, 'node_api.h')));
}

export function buildNative({ force = false, quiet = false } = {}) {
  if (!force && existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  const inc = nodeIncludeDirs()[0];
  if (!inc) {
    if (!quiet) say("Node's headers (node_api.h) not found: frames are read without mmap. Install nodejs-dev / libnode-dev for the faster path.");
    return undefined;
  }
  const cc = process.env.CC ?? 'cc';
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync(cc, ['-O2', '-std=c11', '-D_GNU_SOURCE', '-fPIC', '-shared', '-Wall', '-Werror', `-I${inc}`, src, '-o', tmp, '-lpthread'], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    if (!quiet) say(`could not compile ${src} with ${cc} (${(r.error?.message ?? r.stderr ?? '').trim().slice(0, 500)}): frames are read without mmap`);
    return undefined;
  }
  renameSync(tmp, out);
  if (!quiet) say(`built ${out}`);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) buildNative({ force: process.argv.includes('--force') });
