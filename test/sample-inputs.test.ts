import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fillUniform, seededRandom } from '../runtime/random.js';
import { sampleInputs } from '../runtime/cli/commands/infer.js';
import { digitPage } from '../examples/digit-pages.js';
import { BufferPool } from '../runtime/shm/buffers.js';
import type { TensorSpec } from '../protocols/deployment.js';

test('sample inputs - fillUniform yields the seeded generator’s sequence, scaled', () => {
  for (const seed of [0, 7919, 'page-3']) {
    const r = seededRandom(seed);
    const want = Array.from({ length: 1000 }, () => r() * 2 - 1);
    const got64 = new Float64Array(1000);
    fillUniform(got64, seed, -1, 1);
    assert.deepEqual(Array.from(got64), want);
    const got32 = new Float32Array(1000);
    fillUniform(got32, seed, -1, 1);
    assert.deepEqual(Array.from(got32), Array.from(Float32Array.from(want)));
  }
  const u = new Float32Array(10_000);
  fillUniform(u, 5);
  assert.ok(u.every((v) => v >= 0 && v < 1));
  assert.ok(Math.abs(u.reduce((a, b) => a + b, 0) / u.length - 0.5) < 0.02, 'uniform on [0, 1)');
});

test('sample inputs - made in reused memory they equal fresh ones, and memory given back serves the next request', () => {
  const specs: TensorSpec[] = [
    { name: 'x', dtype: 'float32', shape: [1, 3, 'h', 'w'] },
    { name: 'y', dtype: 'float64', shape: [2, 5] },
  ] as TensorSpec[];
  const shapes = { x: [1, 3, 128, 160] };
  const memory = new BufferPool();
  const take = (n: number) => memory.take(n);
  for (const images of [undefined, 'digits'] as const) {
    const first = sampleInputs(specs, shapes, 3, images, take);
    assert.deepEqual(first.x!.data, sampleInputs(specs, shapes, 3, images).x!.data);
    assert.deepEqual(first.y!.data, sampleInputs(specs, shapes, 3, images).y!.data);
    assert.deepEqual(first.x!.shape, [1, 3, 128, 160]);
    const buffer = (first.x!.data as Float32Array).buffer;
    memory.give(first.x!.data as Float32Array);
    const next = sampleInputs(specs, shapes, 4, images, take);
    assert.equal((next.x!.data as Float32Array).buffer, buffer, 'the given-back buffer is reused');
    assert.deepEqual(next.x!.data, sampleInputs(specs, shapes, 4, images).x!.data, 'and fully rewritten');
    assert.notDeepEqual(next.x!.data, sampleInputs(specs, shapes, 3, images).x!.data, 'requests differ');
  }
  // A page drawn on the shared canvas after a bigger one is still the same page.
  const small = digitPage(1, 128, 128);
  digitPage(2, 256, 256);
  assert.deepEqual(digitPage(1, 128, 128).data, small.data);
  assert.ok((small.data as Float32Array).some((v, i, a) => v !== a[0]), 'the page has digits on it');
});
