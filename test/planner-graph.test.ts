import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, isCleaveError } from '../protocols/errors.js';
import type { PartitionGraph } from '../protocols/graph.js';
import { normaliseGraph, type GraphInput } from '../runtime/planner/mod.js';

const node = (id: string, outputBytes = 100) => ({ id, flops: 1, paramBytes: 0, outputBytes });

test('planner graph - nodes are put in a topological order, keeping the given order where it already is one', () => {
  const g = normaliseGraph({
    nodes: [node('c'), node('a'), node('b'), node('d')],
    edges: [{ from: 'a', to: 'b', bytes: 1 }, { from: 'b', to: 'c', bytes: 1 }, { from: 'a', to: 'd', bytes: 1 }],
  });
  assert.deepEqual(g.ids, ['a', 'b', 'c', 'd']);
  const kept = normaliseGraph({ nodes: [node('x'), node('y'), node('z')], edges: [{ from: 'x', to: 'z', bytes: 1 }] });
  assert.deepEqual(kept.ids, ['x', 'y', 'z']);
});

test('planner graph - crossing bytes per cut: a skip connection crosses every cut it spans, paid once per tensor', () => {
  // a → b → c → d, plus a → c and a → d carrying a's one output tensor, and b → d as a second tensor of b.
  const g = normaliseGraph({
    nodes: [node('a', 10), node('b', 20), node('c', 40), node('d', 80)],
    edges: [
      { from: 'a', to: 'b', bytes: 10, tensor: 'ta' },
      { from: 'a', to: 'c', bytes: 10, tensor: 'ta' },
      { from: 'a', to: 'd', bytes: 10, tensor: 'ta' },
      { from: 'b', to: 'c', bytes: 20, tensor: 'tb' },
      { from: 'b', to: 'd', bytes: 5, tensor: 'tb2' },
      { from: 'c', to: 'd', bytes: 40, tensor: 'tc' },
    ],
  });
  assert.deepEqual([...g.cross], [0, 10, 10 + 20 + 5, 10 + 5 + 40, 0]);
  // Working set while a node runs = what crosses into it + its output.
  assert.deepEqual([...g.act], [10, 30, 35 + 40, 55 + 80]);
});

test('planner graph - without tensor names, edges from one node crossing one cut carry its output once', () => {
  const g = normaliseGraph({
    nodes: [node('a', 10), node('b'), node('c')],
    edges: [{ from: 'a', to: 'b', bytes: 10 }, { from: 'a', to: 'c', bytes: 10 }, { from: 'b', to: 'c', bytes: 7 }],
  });
  assert.deepEqual([...g.cross], [0, 10, 17, 0]);
  // An edge without bytes falls back to the producer's outputBytes.
  const h = normaliseGraph({ nodes: [node('a', 33), node('b')], edges: [{ from: 'a', to: 'b', bytes: 0 }] });
  assert.deepEqual([...h.cross], [0, 33, 0]);
});

test('planner graph - a full PartitionGraph is accepted as is', () => {
  const pg: PartitionGraph = {
    format: 'onnx', model: 'm.onnx',
    inputs: [{ name: 'x', dtype: 'float32', shape: [1, 4], bytes: 16 }],
    outputs: [{ name: 'y', dtype: 'float32', shape: [1, 4], bytes: 16 }],
    nodes: [
      { id: 'relu', op: 'Relu', inputs: ['x'], outputs: ['r'], flops: 4, paramBytes: 0, outputBytes: 16 },
      { id: 'neg', op: 'Neg', inputs: ['r'], outputs: ['y'], flops: 4, paramBytes: 0, outputBytes: 16, measuredSeconds: 1e-6 },
    ],
    edges: [{ from: 'relu', to: 'neg', bytes: 16, tensor: 'r' }],
    cuts: [{ after: 1, tensors: [{ name: 'r', bytes: 16 }], bytes: 16 }],
  };
  const g = normaliseGraph(pg);
  assert.equal(g.model, 'm.onnx');
  assert.deepEqual([...g.cross], [0, 16, 0]);
  assert.deepEqual([...g.work], [4, 4]);
  assert.deepEqual([...normaliseGraph(pg, { measuredFlopsPerSec: 1e9 }).work], [4, 1000]);
});

test('planner graph - malformed graphs are refused with PLAN_INVALID and what to fix', () => {
  const bad: [GraphInput, RegExp][] = [
    [{ nodes: [node('a'), node('b')], edges: [{ from: 'a', to: 'b', bytes: 1 }, { from: 'b', to: 'a', bytes: 1 }] }, /cycle through a, b/],
    [{ nodes: [node('a')], edges: [{ from: 'a', to: 'zz', bytes: 1 }] }, /unknown node/],
    [{ nodes: [node('a'), node('a')], edges: [] }, /appears twice/],
    [{ nodes: [], edges: [] }, /no nodes/],
    [{ nodes: [{ id: 'a', flops: -1, paramBytes: 0, outputBytes: 0 }], edges: [] }, /flops=-1/],
    [{ nodes: [node('a')] } as unknown as GraphInput, /`nodes` and `edges`/],
  ];
  for (const [g, msg] of bad) {
    assert.throws(() => normaliseGraph(g), (e: unknown) => isCleaveError(e, ErrorCode.PLAN_INVALID) && msg.test(e.message));
  }
});
