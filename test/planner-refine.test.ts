// Plans corrected by measured stage times, and the links a deployment prices cuts with. Pure, plus one
// timing of real extracted stages with onnxruntime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agrees, measuredBottleneck, rescaleToStageTimes } from '../runtime/planner/refine.js';
import { plan } from '../runtime/planner/mod.js';
import { linksFromRoster } from '../runtime/pipeline/placement.js';
import { analyzeModelFile } from '../runtime/graph/mod.js';
import { measureStageSeconds } from '../runtime/graph/probe.js';
import { extractStages } from '../runtime/onnx/extract.js';
import { loadModelFile } from '../runtime/onnx/proto.js';
import type { GraphNode, PartitionGraph } from '../protocols/graph.js';
import type { ActorRecord } from '../protocols/messages.js';

function chain(seconds: number[]): PartitionGraph {
  const nodes: GraphNode[] = seconds.map((s, i) => ({ id: `n${i}`, op: 'Relu', inputs: [`t${i}`], outputs: [`t${i + 1}`], flops: 1, paramBytes: 0, outputBytes: 1000, measuredSeconds: s }));
  return { format: 'graph', inputs: [], outputs: [], nodes, edges: [], cuts: [], profile: { runs: 1, threads: 1, runSeconds: seconds.reduce((a, b) => a + b, 0), flopsPerSec: 1e9 } };
}

test('planner refine - node times are rescaled stage by stage to what the stages measured', () => {
  const g = chain([1, 1, 1, 1]);
  const { graph, factors } = rescaleToStageTimes(g, [['n0', 'n1'], ['n2', 'n3']], [4, 1]);
  assert.deepEqual(factors, [2, 0.5]);
  assert.deepEqual(graph.nodes.map((n) => n.measuredSeconds), [2, 2, 0.5, 0.5]);
  assert.deepEqual(g.nodes.map((n) => n.measuredSeconds), [1, 1, 1, 1], 'the input graph is not changed');
  assert.equal(agrees(factors), false);
  assert.equal(agrees([1.05, 0.93]), true);
  // Nodes with no profiled time (and stages made only of them) keep factor 1.
  const partial = chain([1, 1]);
  delete partial.nodes[1]!.measuredSeconds;
  assert.deepEqual(rescaleToStageTimes(partial, [['n0'], ['n1']], [3, 5]).factors, [3, 1]);
});

test('planner refine - replanning on corrected times moves the cut to where the measured work is balanced', () => {
  // Profiled evenly, measured: the first half is really 3x slower. The corrected plan cuts earlier (3 | 5).
  const g = chain(Array(8).fill(0.01));
  const executors = [{ id: 'a', flopsPerSec: 1e9, memoryBytes: 1e9 }, { id: 'b', flopsPerSec: 1e9, memoryBytes: 1e9 }];
  const req = (graph: PartitionGraph) => ({ graph, executors, links: { default: { bandwidthBytesPerSec: 1e12, latencySeconds: 0 } }, replicas: 'none' as const, measuredFlopsPerSec: 1e9 });
  const first = plan(req(g));
  assert.deepEqual(first.stages.map((s) => s.nodes.length), [4, 4]);
  const { graph } = rescaleToStageTimes(g, first.stages.map((s) => s.nodes), [0.12, 0.04]);
  const second = plan(req(graph));
  assert.deepEqual(second.stages.map((s) => s.nodes.length), [3, 5]); // 0.09 | 0.07, against 0.12 | 0.04 before
  assert.ok(Math.abs(measuredBottleneck(first, [0.12, 0.04], 1e9, new Map([['a', 1e9], ['b', 1e9]])) - 0.12) < 1e-9);
  // A stage on an executor twice as fast counts half its measured time.
  assert.ok(Math.abs(measuredBottleneck(first, [0.12, 0.04], 1e9, new Map([[first.stages[0]!.executor, 2e9]])) - 0.06) < 1e-9);
});

test('planner refine - executors of one host are linked at their shared-memory speed, others through NATS', () => {
  const rec = (id: string, caps: Record<string, unknown>): ActorRecord => ({ role: 'executor', id, host: 'h', pid: 1, state: 'idle', startedAt: 0, updatedAt: 0, version: 't', capabilities: caps });
  const nats = { bandwidthBytesPerSec: 2e8, latencySeconds: 1e-4 };
  const links = linksFromRoster([
    rec('a', { shmDomain: 'h1', shmBytesPerSec: 4e9 }),
    rec('b', { shmDomain: 'h1', shmBytesPerSec: 3e9 }),
    rec('c', { shmDomain: 'h2', shmBytesPerSec: 5e9 }),
    rec('d', {}),
  ], nats);
  assert.deepEqual(links, { default: nats, links: [{ from: 'a', to: 'b', bandwidthBytesPerSec: 3e9, latencySeconds: 1e-4 }] });
  assert.deepEqual(linksFromRoster([rec('x', {})], nats), { default: nats });
});

test('planner refine - extracted stages are timed as executors run them, fed by the stages before them', async () => {
  const model = '/usr/share/libonnx-testdata/data/node/test_layer_normalization_4d_axis1_expanded/model.onnx';
  const g = await analyzeModelFile(model);
  const ids = g.nodes.map((n) => n.id);
  const stages = [ids.slice(0, 10), ids.slice(10)];
  const { stages: extracted } = await extractStages(await loadModelFile(model), stages);
  const feeds = Object.fromEntries(g.inputs.map((i) => [i.name, { dtype: i.dtype, shape: i.shape as number[] }]));
  const seconds = await measureStageSeconds(extracted.map((s) => s.model), feeds, { runs: 3 });
  assert.equal(seconds.length, 2);
  assert.ok(seconds.every((s) => s > 0 && s < 1), JSON.stringify(seconds));
});
