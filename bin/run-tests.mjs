#!/usr/bin/env node
// The README's test command: every test/**/*.test.ts file under node's test runner, with tsx as loader.
// Args narrow the run: `npm test -- codec planner` runs the files whose path contains one of the words.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const walk = (dir) => readdirSync(dir).flatMap((name) => {
  const p = join(dir, name);
  return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
});
const words = process.argv.slice(2);
const files = walk(join(root, 'test')).map((p) => relative(root, p)).sort()
  .filter((p) => words.length === 0 || words.some((w) => p.includes(w)));
if (files.length === 0) { console.error('no test files matched'); process.exit(1); }
const child = spawn(process.execPath, [
  '--import', 'tsx', '--test', '--test-reporter=spec', '--test-timeout=600000', `--test-concurrency=${process.env.CLEAVE_TEST_CONCURRENCY ?? 1}`,
  ...files,
], { cwd: root, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(signal ? 1 : code ?? 1));
