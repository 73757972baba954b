import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsTensorMalloc, withTensorMalloc } from '../runtime/malloc.js';

const linux = process.platform === 'linux';

test('tensor memory settings - glibc tunables and the V8 young-generation flag are added to what the user set', { skip: !linux && 'glibc only' }, () => {
  const env = withTensorMalloc({ GLIBC_TUNABLES: 'glibc.pthread.rseq=0', NODE_OPTIONS: '--enable-source-maps', PATH: '/bin' });
  assert.equal(env.PATH, '/bin');
  assert.match(env.GLIBC_TUNABLES!, /^glibc\.pthread\.rseq=0:/);
  for (const t of ['mmap_threshold', 'trim_threshold', 'arena_max']) assert.match(env.GLIBC_TUNABLES!, new RegExp(`glibc\\.malloc\\.${t}=\\d+`));
  assert.equal(env.NODE_OPTIONS, '--enable-source-maps --max-semi-space-size=1');
});

test('tensor memory settings - a setting the user chose is kept; a complete env comes back as the same object', { skip: !linux && 'glibc only' }, () => {
  const mine = withTensorMalloc({ NODE_OPTIONS: '--max-semi-space-size=8', GLIBC_TUNABLES: 'glibc.malloc.arena_max=4' });
  assert.equal(mine.NODE_OPTIONS, '--max-semi-space-size=8');
  assert.match(mine.GLIBC_TUNABLES!, /arena_max=4/);
  assert.doesNotMatch(mine.GLIBC_TUNABLES!, /arena_max=1/);
  const full = withTensorMalloc({});
  assert.equal(withTensorMalloc(full), full);
  assert.equal(needsTensorMalloc('bench', full), false);
  assert.equal(needsTensorMalloc('bench', {}), true);
  assert.equal(needsTensorMalloc('actor', {}), false);
});

test('tensor memory settings - CLEAVE_MALLOC_TUNING=0 turns them off', () => {
  const env = { CLEAVE_MALLOC_TUNING: '0' };
  assert.equal(withTensorMalloc(env), env);
});
