// Plans corrected by measured stage times, and the links a deployment prices cuts with. Pure, plus one
// timing of real extracted stages with onnxruntime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agrees, cutAlternatives, measuredBottleneck, refineByTiming, rescaleToStageTimes, type RefineDeps } from '../runtime/planner/refine.js';
import { definePlanningProblem, plan, randomInstance, rng, validatePlan } from '../runtime/planner/mod.js';
import { linksFromRoster } from '../runtime/pipeline/placement.js';
import { analyzeModelFile } from '../runtime/graph/mod.js';
import { measurePlansSeconds, measureStageSeconds } from '../runtime/graph/probe.js';
import { extractStages } from '../runtime/onnx/extract.js';
import { loadModelFile } from '../runtime/onnx/proto.js';
import type { GraphNode, PartitionGraph } from '../protocols/graph.js';
import type { Plan } from '../protocols/plan.js';
import type { ActorRecord } from '../protocols/messages.js';

function chain(seconds: number[], outputBytes: (i: number) => number = () => 1000): PartitionGraph {
  const nodes: GraphNode[] = seconds.map((s, i) => ({ id: `n${i}`, op: 'Relu', inputs: [`t${i}`], outputs: [`t${i + 1}`], flops: 1, paramBytes: 0, outputBytes: outputBytes(i), measuredSeconds: s }));
  const edges = nodes.slice(1).map((n, i) => ({ from: nodes[i]!.id, to: n.id, bytes: nodes[i]!.outputBytes, tensor: `t${i + 1}` }));
  return { format: 'graph', inputs: [], outputs: [], nodes, edges, cuts: [], profile: { runs: 1, threads: 1, runSeconds: seconds.reduce((a, b) => a + b, 0), flopsPerSec: 1e9 } };
}

test('planner refine - node times are rescaled stage by stage to what the stages measured', () => {
  const g = chain([1, 1, 1, 1]);
  const { graph, factors } = rescaleToStageTimes(g, [['n0', 'n1'], ['n2', 'n3']], [4, 1]);
  assert.deepEqual(factors, [2, 0.5]);
  assert.deepEqual(graph.nodes.map((n) => n.measuredSeconds), [2, 2, 0.5, 0.5]);
  assert.deepEqual(g.nodes.map((n) => n.measuredSeconds), [1, 1, 1, 1], 'the input graph is not changed');
  assert.equal(agrees(factors), false);
  assert.equal(agrees([1.02, 0.98]), true);
  assert.equal(agrees([1.05, 0.93]), false, 'within 3 % by default: the planner balances predictions, so this bounds the imbalance');
  assert.equal(agrees([1.05, 0.93], 0.1), true);
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

test('planner refine - cut alternatives: cuts near the plan’s that carry clearly fewer bytes, same executors, within the slack', () => {
  // 20 nodes of 10 ms, 1 MB between them except after n10 (10 kB) and after n13 (1 kB). The plan cuts
  // 10 | 10 (0.1 s + 1 ms); 11 | 9 predicts 0.11 s (within 15 %), 14 | 6 0.14 s (not).
  const small = new Map([[10, 1e4], [13, 1e3]]);
  const g = chain(Array(20).fill(0.01), (i) => small.get(i) ?? 1e6);
  const executors = [{ id: 'a', flopsPerSec: 1e9, memoryBytes: 1e9 }, { id: 'b', flopsPerSec: 1e9, memoryBytes: 1e9 }];
  const req = { graph: g, executors, links: { default: { bandwidthBytesPerSec: 1e9, latencySeconds: 0 } }, replicas: 'none' as const, measuredFlopsPerSec: 1e9 };
  const base = plan(req);
  assert.deepEqual(base.stages.map((s) => s.nodes.length), [10, 10]);
  const alts = cutAlternatives(req, base);
  assert.deepEqual(alts.map((p) => p.stages.map((s) => s.nodes.length)), [[11, 9]]);
  assert.deepEqual(alts[0]!.stages.map((s) => s.executor), base.stages.map((s) => s.executor));
  assert.equal(alts[0]!.stages[1]!.predicted.inputBytes, 1e4);
  assert.match(alts[0]!.explanation, /the cut after stage 0 moved to carry 0\.01 MB instead of 1\.00 MB/);
  assert.ok(Math.abs(alts[0]!.predicted.bottleneckSeconds - 0.11001) < 1e-6, String(alts[0]!.predicted.bottleneckSeconds));
  // A wider slack reaches the 1 kB cut too: both are on the (bytes, bottleneck) front, fewest bytes first.
  assert.deepEqual(cutAlternatives(req, base, { slack: 0.5 }).map((p) => p.stages[0]!.nodes.length), [14, 11]);
  assert.deepEqual(cutAlternatives(req, base, { slack: 0.5, count: 1 }).map((p) => p.stages[0]!.nodes.length), [14]);
  // None when no cheaper cut is close enough, or the one that is would break a memory cap.
  assert.deepEqual(cutAlternatives(req, base, { slack: 0.05 }), []);
  assert.deepEqual(cutAlternatives({ ...req, constraints: { boundaries: ['n9'] } }, base), [], 'a manual boundary stays where it was put');
  const capped = { ...req, graph: chain(Array(20).fill(0.01), (i) => small.get(i) ?? 1e6), executors: executors.map((e) => ({ ...e })) };
  capped.graph.nodes.forEach((n) => { n.paramBytes = 1e5; });
  const cappedBase = plan({ ...capped, executors: capped.executors.map((e) => ({ ...e, memoryBytes: 1e5 * 10 + 2e6 })) });
  assert.deepEqual(cappedBase.stages.map((s) => s.nodes.length), [10, 10]);
  assert.deepEqual(cutAlternatives({ ...capped, executors: capped.executors.map((e) => ({ ...e, memoryBytes: 1e5 * 10 + 2e6 })) }, cappedBase), []);
  // A plan of another graph is refused with a typed error.
  assert.throws(() => cutAlternatives({ ...req, graph: chain(Array(21).fill(0.01)) }, base), (e: Error & { code?: string }) => e.code === 'PLAN_INVALID');
});

test('planner refine - cut alternatives on random DAGs: valid, within the slack, each one cut moved to clearly fewer bytes', () => {
  let seen = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const inst = randomInstance(rng(seed), { nodes: 40, executors: 3, kind: 'dag', memoryFraction: [0.5, 1.2] });
    const req = { graph: inst.graph, executors: inst.executors, links: inst.links };
    let base;
    try { base = plan(req); } catch { continue; }
    const p = definePlanningProblem(req);
    const alts = cutAlternatives(req, base);
    seen += alts.length;
    const baseCuts = base.stages.slice(1).map((s) => s.predicted.inputBytes);
    for (const a of alts) {
      assert.ok(validatePlan(a, p).ok, `seed ${seed}: ${validatePlan(a, p).errors.join('; ')}`);
      assert.ok(a.predicted.bottleneckSeconds <= base.predicted.bottleneckSeconds * 1.15 + 1e-12, `seed ${seed}`);
      assert.deepEqual(a.stages.map((s) => s.executor), base.stages.map((s) => s.executor));
      const cuts = a.stages.slice(1).map((s) => s.predicted.inputBytes);
      const moved = cuts.map((c, i) => [c, baseCuts[i]!] as const).filter(([c, b]) => c !== b);
      assert.equal(moved.length, 1, `seed ${seed}: exactly one cut moved`);
      assert.ok(moved[0]![0] <= 0.8 * moved[0]![1], `seed ${seed}: ${moved[0]![0]} against ${moved[0]![1]}`);
    }
  }
  assert.ok(seen > 0, 'some instance has alternatives');
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

test('planner refine - several plans are timed side by side, each stage fed by the stages before it in its plan', async () => {
  const model = '/usr/share/libonnx-testdata/data/node/test_layer_normalization_4d_axis1_expanded/model.onnx';
  const g = await analyzeModelFile(model);
  const ids = g.nodes.map((n) => n.id);
  const m = await loadModelFile(model);
  const plans = [];
  for (const stages of [[ids.slice(0, 10), ids.slice(10)], [ids.slice(0, 4), ids.slice(4, 12), ids.slice(12)]]) {
    plans.push((await extractStages(m, stages)).stages.map((s) => s.model));
  }
  const feeds = Object.fromEntries(g.inputs.map((i) => [i.name, { dtype: i.dtype, shape: i.shape as number[] }]));
  const seconds = await measurePlansSeconds(plans, feeds, { runs: 3 });
  assert.deepEqual(seconds.map((s) => s.length), [2, 3]);
  assert.ok(seconds.flat().every((s) => s > 0 && s < 1), JSON.stringify(seconds));
});

// refineByTiming with the real planner and a "cluster" whose stages take what the true node times sum to.
function timingRig(profiled: number[], truth: number[], opts: { failFrom?: number } = {}) {
  const executors = [{ id: 'a', flopsPerSec: 1e9, memoryBytes: 1e9 }, { id: 'b', flopsPerSec: 1e9, memoryBytes: 1e9 }];
  const req = (graph: PartitionGraph) => ({ graph, executors, links: { default: { bandwidthBytesPerSec: 1e12, latencySeconds: 0 } }, replicas: 'none' as const, measuredFlopsPerSec: 1e9 });
  const trueSeconds = (p: Plan) => p.stages.map((s) => s.nodes.reduce((t, id) => t + truth[Number(id.slice(1))]!, 0));
  const calls: number[] = [];
  const logs: string[] = [];
  const deps: RefineDeps = {
    plan: async (g) => plan(req(g)),
    time: async (plans) => {
      calls.push(plans.length);
      if (opts.failFrom !== undefined && calls.length >= opts.failFrom) throw new Error('analyser gone');
      return plans.map(trueSeconds);
    },
    bottleneck: (p, seconds) => measuredBottleneck(p, seconds, 1e9, new Map([['a', 1e9], ['b', 1e9]])),
    log: (msg) => logs.push(msg),
  };
  return { graph: chain(profiled), req, deps, calls, logs, trueSeconds };
}
const cutAt = (p: Plan) => p.stages[0]!.nodes.length;

test('planner refine - refineByTiming replans until the measured stages are balanced, not merely within 10 % of their prediction', async () => {
  // 40 nodes profiled at 1 ms; really the first half runs at 0.92 ms. The first plan (20 | 20) measures
  // 18.4 | 20 ms: within 10 % of its prediction, so a 10 % tolerance stops there; corrected, the
  // planner cuts 21 | 19 (19.4 | 19 ms).
  const truth = Array.from({ length: 40 }, (_, i) => (i < 20 ? 0.92e-3 : 1e-3));
  const rig = timingRig(Array(40).fill(1e-3), truth);
  const loose = await refineByTiming(rig.graph, { ...rig.deps, tolerance: 0.1 });
  assert.equal(cutAt(loose), 20);
  const refined = await refineByTiming(rig.graph, rig.deps);
  assert.equal(cutAt(refined), 21);
  assert.ok(Math.abs(Math.max(...rig.trueSeconds(refined)) - 0.0194) < 1e-9);
  // The best of all cuts by the true times is the one it found.
  const best = Math.min(...Array.from({ length: 39 }, (_, k) => Math.max(truth.slice(0, k + 1).reduce((a, b) => a + b, 0), truth.slice(k + 1).reduce((a, b) => a + b, 0))));
  assert.ok(Math.abs(Math.max(...rig.trueSeconds(refined)) - best) < 1e-12);
});

test('planner refine - refineByTiming stops when the planner comes back to a plan it timed, and keeps the best plan when a timing fails', async () => {
  // Everything 20 % slower than profiled: the factors never agree, yet the corrected plan is the same.
  const rig = timingRig(Array(10).fill(1e-3), Array(10).fill(1.2e-3));
  const p = await refineByTiming(rig.graph, rig.deps);
  assert.equal(cutAt(p), 5);
  assert.deepEqual(rig.calls, [1], 'timed once: no second round of the same plan, nothing to compare at the end');
  // The second timing fails: the plan of the first round stands.
  const truth = Array.from({ length: 40 }, (_, i) => (i < 20 ? 0.7e-3 : 1e-3));
  const failing = timingRig(Array(40).fill(1e-3), truth, { failFrom: 2 });
  assert.equal(cutAt(await refineByTiming(failing.graph, failing.deps)), 20);
  assert.deepEqual(failing.calls, [1, 1]);
  assert.ok(failing.logs.some((m) => /could not time/.test(m)));
  // Without profiled times (no speed to scale them by) nothing is timed.
  const unprofiled = timingRig(Array(10).fill(1e-3), Array(10).fill(1e-3));
  delete unprofiled.graph.profile;
  await refineByTiming(unprofiled.graph, unprofiled.deps);
  assert.deepEqual(unprofiled.calls, []);
});

test('planner refine - refineByTiming times the close refined plans and the cheaper cuts side by side and keeps the fastest', async () => {
  // The first half really runs at 0.95 ms: 20 | 20 measures 19 | 20, then 21 | 19 measures 19.95 | 19,
  // within 3 % of the first, so both are timed again beside the alternative.
  const truth = Array.from({ length: 40 }, (_, i) => (i < 20 ? 0.95e-3 : 1e-3));
  const rig = timingRig(Array(40).fill(1e-3), truth);
  // An alternative the "cluster" runs faster than it predicts (a cut whose transfer costs less).
  const alt = { ...plan(rig.req(rig.graph)), explanation: 'alternative' };
  const altKey = alt.stages.map((s) => s.nodes.join()).join('|');
  const deps: RefineDeps = {
    ...rig.deps,
    alternatives: async () => [alt],
    time: async (plans) => {
      rig.calls.push(plans.length);
      return plans.map((p) => (p.explanation === 'alternative' && p.stages.map((s) => s.nodes.join()).join('|') === altKey ? [0.015, 0.015] : rig.trueSeconds(p)));
    },
  };
  const chosen = await refineByTiming(rig.graph, deps);
  assert.equal(chosen.stages.map((s) => s.nodes.join()).join('|'), altKey);
  assert.match(chosen.explanation, /a cut that carries fewer bytes.*bottleneck 15 ms against (19\.9|20) ms/);
  // Rounds of one plan each, then the best refined plan, the earlier one within 3 % of it, and the alternative.
  assert.deepEqual(rig.calls, [1, 1, 3]);
});
