import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { windowed } from '../runtime/windowed.js';

test('windowed - runs every task in start order with at most `window` in flight', async () => {
  const started: number[] = [];
  let running = 0, most = 0;
  await windowed(10, 3, async (i) => {
    started.push(i);
    most = Math.max(most, ++running);
    await sleep(i % 3);
    running--;
  });
  assert.deepEqual(started, [...Array(10).keys()]);
  assert.equal(most, 3);
});

test('windowed - rejects with the first failure and starts nothing after it; late failures are not unhandled', async () => {
  const started: number[] = [];
  await assert.rejects(windowed(10, 2, async (i) => {
    started.push(i);
    await sleep(i === 1 ? 5 : 1);
    if (i === 0 || i === 1) throw new Error(`task ${i}`);
  }), /task 0/);
  assert.ok(started.length <= 3, `started ${started}`);
  await sleep(20); // task 1's rejection lands after: the runner must not crash on it
});
