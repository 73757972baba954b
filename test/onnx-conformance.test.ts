// Split conformance on a deterministic, representative sample of libonnx-testdata (all four folders;
// every multi-node and subgraph model, a stride of single-node
// ones) plus PP-OCRv4 det at a few cuts. The full run is `cleave bench conformance`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  listCases, loadConformanceData, OCR_DET_MODEL, runCase, runConformance, runOcrConformance, TESTDATA_ROOT,
  type ConformanceCase,
} from '../runtime/onnx/conformance.js';
import { decodeModel, onnx } from '../runtime/onnx/proto.js';

function sample(): ConformanceCase[] {
  const picked: ConformanceCase[] = [];
  const counters: Record<string, number> = {};
  for (const c of listCases()) {
    const folder = c.id.split('/')[0];
    const g = decodeModel(readFileSync(join(c.dir, 'model.onnx'))).graph!;
    const nodes = g.node!.length;
    const hasSubgraph = g.node!.some((n) => (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0));
    const k = (counters[`${folder}:${nodes > 1}`] = (counters[`${folder}:${nodes > 1}`] ?? 0) + 1);
    if (hasSubgraph || nodes > 1 || (nodes <= 1 && k % 15 === 1)) picked.push(c);
  }
  return picked;
}

test('onnx conformance - libonnx-testdata sample: every split of every runnable model matches the expected outputs', { skip: !existsSync(TESTDATA_ROOT) && 'libonnx-testdata is not installed' }, async () => {
  const cases = sample();
  const folders = new Set(cases.map((c) => c.id.split('/')[0]));
  assert.deepEqual([...folders].sort(), ['node', 'pytorch-converted', 'pytorch-operator', 'simple']);
  const s = await runConformance(cases, { maxTwoWayCuts: 12, multiWaySplits: 2 });
  const report = s.failures.slice(0, 20).map((f) => `${f.model} cuts=[${f.cuts}]: ${f.message}`).join('\n');
  assert.equal(s.failed, 0, `split outputs differ from the expected outputs:\n${report}`);
  // Guard against a vacuous pass: most of the sample must actually run and be cut.
  assert.ok(cases.length >= 120, `sample has ${cases.length} models`);
  assert.ok(s.runnable >= 110 && s.runnable >= 0.7 * cases.length, `only ${s.runnable} of ${cases.length} models were runnable: ${JSON.stringify(s.skippedReasons).slice(0, 2000)}`);
  assert.ok(s.cutsTested >= 3 * s.runnable, `only ${s.cutsTested} split configurations ran`);
  for (const id of ['node/test_if', 'node/test_loop11', 'node/test_scan9_sum', 'node/test_layer_normalization_4d_axis1_expanded']) {
    const o = s.outcomes.find((x) => x.id === id);
    assert.ok(o && o.status === 'passed' && o.cutsTested >= 1, `${id}: ${JSON.stringify(o)}`);
  }
});

test('onnx conformance - the harness catches a wrong split', { skip: !existsSync(TESTDATA_ROOT) && 'libonnx-testdata is not installed' }, async () => {
  const c = listCases().find((x) => x.id === 'node/test_layer_normalization_4d_axis1_expanded')!;
  const flipped = await runCase(c, loadConformanceData(), {
    maxTwoWayCuts: 3,
    multiWaySplits: 0,
    tamper: (stages) => {
      // Change the first binary op of the last stage: its outputs must then differ. Stage models share
      // node objects with the source model, so tamper with a copy.
      const last = stages.at(-1)!;
      last.model = onnx.ModelProto.decode(onnx.ModelProto.encode(last.model).finish());
      const n = last.model.graph!.node!.find((x) => x.opType === 'Sub' || x.opType === 'Div' || x.opType === 'Mul' || x.opType === 'Add')!;
      n.opType = n.opType === 'Sub' ? 'Add' : 'Sub';
    },
  });
  assert.equal(flipped.status, 'failed');
  assert.equal(flipped.failures.length, flipped.cutsTested);
  // Untampered, the same case passes.
  assert.equal((await runCase(c, loadConformanceData(), { maxTwoWayCuts: 3, multiWaySplits: 0 })).status, 'passed');
});

test('onnx conformance - PP-OCRv4 det split at seeded cuts matches the unsplit model within 1e-4', { skip: !existsSync(OCR_DET_MODEL) && 'PP-OCRv4 det model is not installed' }, async () => {
  const o = await runOcrConformance({ twoWay: 3, multiWay: 1, size: 320 });
  assert.deepEqual(o.failures, []);
  assert.equal(o.status, 'passed');
  assert.equal(o.cutsTested, 4);
});
