// How frames travel: through the producer's shared-memory pool or inline, from where their readers
// are; and the stage domains a deployment carries for that. Pure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REMOTE_INLINE_MAX_BYTES, sharedMemoryMinBytes, viaSharedMemory } from '../runtime/shm/route.js';
import { setStageDomains } from '../runtime/pipeline/placement.js';
import type { Deployment } from '../protocols/deployment.js';
import type { ActorRecord } from '../protocols/messages.js';

test('shm route - the pool within a host at any size; across hosts only from the inline limit up', () => {
  const big = REMOTE_INLINE_MAX_BYTES;
  // A reader on this host: the pool, even for a few bytes.
  assert.equal(viaSharedMemory(4, 'a', ['a']), true);
  assert.equal(viaSharedMemory(4, 'a', ['b', 'a']), true);
  // Readers only elsewhere (or without a pool): small frames inline, large ones fetched from the pool.
  assert.equal(viaSharedMemory(big - 1, 'a', ['b']), false);
  assert.equal(viaSharedMemory(big, 'a', ['b']), true);
  assert.equal(viaSharedMemory(1e6, 'a', []), false);
  // Readers not known (a deployment from before domains were recorded): the pool, as before.
  assert.equal(viaSharedMemory(4, 'a', undefined), true);
  assert.equal(sharedMemoryMinBytes('a', ['a']), 0);
  assert.equal(sharedMemoryMinBytes('a', undefined), 0);
  assert.equal(sharedMemoryMinBytes('a', ['b']), big);
});

test('shm route - a deployment records the domains of each stage\'s executors, and says when they change', () => {
  const rec = (id: string, domain?: string): ActorRecord => ({ role: 'executor', id, host: 'h', pid: 1, state: 'idle', startedAt: 0, updatedAt: 0, version: 't', capabilities: domain ? { shmDomain: domain } : {} });
  const d = { stages: [{ index: 0, executors: ['e1', 'e2'] }, { index: 1, executors: ['e3'] }, { index: 2, executors: ['e4'] }] } as unknown as Deployment;
  const roster = [rec('e1', 'B'), rec('e2', 'A'), rec('e3', 'A'), rec('e4')];
  assert.equal(setStageDomains(d, roster), true);
  assert.deepEqual(d.stages.map((s) => s.domains), [['A', 'B'], ['A'], []]);
  assert.equal(setStageDomains(d, roster), false, 'nothing changed');
  d.stages[2]!.executors.push('e5');
  assert.equal(setStageDomains(d, [...roster, rec('e5', 'A')]), true);
  assert.deepEqual(d.stages[2]!.domains, ['A']);
});
