import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from '../runtime/ort.js';
import { ErrorCode, isCleaveError } from '../protocols/errors.js';
import { cutConfigs, runModel, runStagesLocally, type Feeds } from '../runtime/onnx/conformance.js';
import { extractStages, stageInterfaces, stagesFromCuts, writeStages } from '../runtime/onnx/extract.js';
import { arrayToTensorProto, decodeModel, encodeModel, nodeIds, onnx } from '../runtime/onnx/proto.js';
import { assertTensorEqual } from '../runtime/onnx/tensor-compare.js';
import split from '../runtime/cli/commands/split.js';

const F = onnx.TensorProto.DataType.FLOAT;
const vi = (name: string, elemType = F, dims?: number[]): onnx.IValueInfoProto => ({
  name, type: { tensorType: { elemType, ...(dims ? { shape: { dim: dims.map((d) => ({ dimValue: d })) } } : {}) } },
});
const f32 = (name: string, dims: number[], data: number[]) => arrayToTensorProto(name, { dtype: 'float32', dims, data: new Float32Array(data) });

/**
 * A model exercising the awkward cases: a tensor read by several later stages, an If whose branches
 * read outer-scope tensors and an initializer only they use, an empty-name optional input, an output
 * nobody reads, model outputs that are a model input and an initializer, and a Constant node.
 * No value_info: intermediate types come from the probe.
 */
function awkwardModel(): onnx.ModelProto {
  const branch = (name: string, body: onnx.INodeProto[], out: string): onnx.IGraphProto => ({ name, node: body, output: [vi(out)] });
  const graph: onnx.IGraphProto = {
    name: 'awkward',
    input: [vi('X', F, [2, 3]), vi('cond', onnx.TensorProto.DataType.BOOL, [])],
    output: [vi('D'), vi('IfOut'), vi('X'), vi('W3'), vi('E')],
    initializer: [f32('W', [2, 3], [1, 2, 3, 4, 5, 6]), f32('W2', [2, 3], [10, 20, 30, 40, 50, 60]), f32('W3', [1], [7]), f32('maxv', [], [9])],
    node: [
      { name: 'k', opType: 'Constant', output: ['K'], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: f32('', [3], [0.5, 1, 2]) }] },
      { name: 'add', opType: 'Add', input: ['X', 'W'], output: ['A'] },
      { name: 'split', opType: 'Split', input: ['A'], output: ['S0', 'S1'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { name: 'relu', opType: 'Relu', input: ['S0'], output: ['B0'] },
      { opType: 'Relu', input: ['A'], output: ['B'] },
      {
        name: 'if', opType: 'If', input: ['cond'], output: ['IfOut'],
        attribute: [
          { name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('then', [{ opType: 'Add', input: ['A', 'W2'], output: ['t0'] }], 't0') },
          { name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('else', [{ opType: 'Sub', input: ['B', 'W2'], output: ['e0'] }], 'e0') },
        ],
      },
      { name: 'mul', opType: 'Mul', input: ['A', 'B'], output: ['C'] },
      { name: 'clip', opType: 'Clip', input: ['C', '', 'maxv'], output: ['D'] },
      { name: 'scale', opType: 'Mul', input: ['IfOut', 'K'], output: ['E'] },
    ],
  };
  return onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph });
}

const FEEDS: Feeds = {
  X: new ort.Tensor('float32', new Float32Array([-3, -1, 0, 1, 2, 3]), [2, 3]),
  cond: new ort.Tensor('bool', new Uint8Array([1]), []),
};

test('onnx extract - every 2-, 3- and 4-way split of an awkward model matches the whole model', async () => {
  const model = awkwardModel();
  const whole = await runModel(encodeModel(model), FEEDS);
  const order = nodeIds(model.graph!);
  const configs: number[][] = [[]];
  for (let a = 1; a < order.length; a++) {
    configs.push([a]);
    for (let b = a + 1; b < order.length; b++) configs.push([a, b]);
  }
  configs.push([1, 3, 6], [2, 5, 7]);
  for (const cond of [1, 0]) {
    const feeds = { ...FEEDS, cond: new ort.Tensor('bool', new Uint8Array([cond]), []) };
    const expected = await runModel(encodeModel(model), feeds);
    for (const cuts of configs) {
      const { stages } = await extractStages(model, stagesFromCuts(order, cuts));
      const got = await runStagesLocally(stages, feeds);
      for (const o of model.graph!.output!) assertTensorEqual(got[o.name!], expected[o.name!], { rtol: 0, atol: 0 }, `cuts [${cuts}] cond=${cond} ${o.name}`);
    }
  }
  assert.ok(whole.D);
});

test('onnx extract - the manifest lists exactly the tensors that cross each cut', async () => {
  const model = awkwardModel();
  const order = nodeIds(model.graph!);
  assert.deepEqual(order, ['k', 'add', 'split', 'relu', 'Relu_4', 'if', 'mul', 'clip', 'scale']);
  // Stages: [k add split] [relu Relu_4 if] [mul clip scale]
  const result = await extractStages(model, stagesFromCuts(order, [3, 6]));
  assert.deepEqual(result.manifest, {
    stages: [
      // S1 nobody reads and S0 is read later; A is read by stages 1 and 2 but crosses once.
      { file: 'stage_0.onnx', inputs: ['X'], outputs: ['A', 'S0'] },
      // The If reads A and (through its else branch) B from the outer scope; B0 is dead.
      { file: 'stage_1.onnx', inputs: ['S0', 'A', 'cond'], outputs: ['B', 'IfOut'] },
      // The Constant K is copied, not shipped; X and W3 are model outputs nobody produces.
      { file: 'stage_2.onnx', inputs: ['A', 'B', 'IfOut', 'X'], outputs: ['D', 'E', 'X', 'W3'] },
    ],
  });
  const [s0, s1, s2] = result.stages;
  assert.deepEqual(s1.initializers, ['W2'], 'an initializer read only inside If branches travels with the If');
  assert.deepEqual(s2.constants, ['k']);
  assert.deepEqual(s2.model.graph!.node!.map((n) => n.opType), ['Constant', 'Mul', 'Clip', 'Mul']);
  assert.deepEqual(s0.model.graph!.node!.map((n) => n.opType), ['Add', 'Split'], 'a Constant its own stage does not read is dropped there');
  assert.deepEqual(s2.model.graph!.initializer!.map((t) => t.name).sort(), ['W3', 'maxv']);
  for (const s of result.stages) {
    for (const v of [...s.model.graph!.input!, ...s.model.graph!.output!]) {
      assert.equal(v.type?.tensorType?.elemType, v.name === 'cond' ? onnx.TensorProto.DataType.BOOL : F, `${v.name} is typed`);
    }
    assert.deepEqual(s.model.opsetImport, model.opsetImport);
    assert.equal(s.model.irVersion, model.irVersion);
    decodeModel(encodeModel(s.model)); // each stage is a standalone valid model
  }
});

test('onnx extract - any topological order works, not just the model\'s own', async () => {
  const model = awkwardModel();
  const order = ['add', 'Relu_4', 'split', 'if', 'k', 'relu', 'mul', 'scale', 'clip'];
  const expected = await runModel(encodeModel(model), FEEDS);
  for (const cuts of [[1], [2, 4], [3, 5, 8]]) {
    const { stages } = await extractStages(model, stagesFromCuts(order, cuts));
    const got = await runStagesLocally(stages, FEEDS);
    for (const o of model.graph!.output!) assertTensorEqual(got[o.name!], expected[o.name!], { rtol: 0, atol: 0 }, `cuts [${cuts}] ${o.name}`);
  }
});

test('onnx extract - a sparse initializer goes to the stage that reads it', async () => {
  const sparse: onnx.ISparseTensorProto = {
    dims: [2, 3],
    values: f32('SP', [2], [5, 7]),
    indices: arrayToTensorProto('SP_idx', { dtype: 'int64', dims: [2], data: new BigInt64Array([1n, 5n]) }),
  };
  const graph: onnx.IGraphProto = {
    name: 'sparse', input: [vi('X', F, [2, 3])], output: [vi('Y', F, [2, 3])], sparseInitializer: [sparse],
    node: [{ name: 'r', opType: 'Relu', input: ['X'], output: ['R'] }, { name: 'a', opType: 'Add', input: ['R', 'SP'], output: ['Y'] }],
  };
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph });
  const expected = await runModel(encodeModel(model), { X: FEEDS.X });
  const { stages } = await extractStages(model, [['r'], ['a']]);
  assert.deepEqual(stages.map((s) => s.model.graph!.sparseInitializer!.length), [0, 1]);
  const got = await runStagesLocally(stages, { X: FEEDS.X });
  assertTensorEqual(got.Y, expected.Y, { rtol: 0, atol: 0 });
  assert.deepEqual([...(got.Y.data as Float32Array)], [0, 5, 0, 1, 2, 10]);
});

test('onnx extract - plans that are not a topological partition are PLAN_INVALID', async () => {
  const model = awkwardModel();
  const order = nodeIds(model.graph!);
  const bad: [string, string[][], RegExp][] = [
    ['missing node', [order.slice(0, 4), order.slice(5)], /leaves out 1 node/],
    ['duplicate node', [order.slice(0, 5), order.slice(4)], /is in stage 0 and stage 1/],
    ['unknown node', [[...order, 'nope']], /not in the model/],
    ['reversed stages', [order.slice(4), order.slice(0, 4)], /before the node that produces it/],
    ['empty stage', [order, []], /has no nodes/],
  ];
  for (const [label, stages, msg] of bad) {
    assert.throws(() => stageInterfaces(model, stages), (e) => isCleaveError(e, ErrorCode.PLAN_INVALID) && msg.test((e as Error).message), label);
  }
  assert.throws(() => stagesFromCuts(order, [3, 3]), (e) => isCleaveError(e, ErrorCode.PLAN_INVALID));
  // A Constant may come after its reader in the plan's order: it is copied where it is read.
  assert.doesNotThrow(() => stageInterfaces(model, [order.slice(1, 5), [...order.slice(5), order[0]]]));
});

test('onnx extract - a cut crossed by a sequence is refused with MODEL_UNSUPPORTED', async () => {
  const graph: onnx.IGraphProto = {
    name: 'seq',
    input: [vi('X', F, [2])],
    output: [vi('Y')],
    node: [
      { name: 'mk', opType: 'SequenceConstruct', input: ['X', 'X'], output: ['S'] },
      { name: 'at', opType: 'SequenceAt', input: ['S', 'zero'], output: ['Y'] },
    ],
    initializer: [arrayToTensorProto('zero', { dtype: 'int64', dims: [], data: new BigInt64Array([0n]) })],
  };
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph });
  await assert.rejects(extractStages(model, [['mk'], ['at']]), (e) => isCleaveError(e, ErrorCode.MODEL_UNSUPPORTED) && /'S' crosses a cut but is not a tensor/.test((e as Error).message));
  const { stages } = await extractStages(model, [['mk', 'at']]);
  assert.deepEqual(stages[0].outputs, ['Y']);
});

test('onnx extract - `cleave split` writes stage files and a manifest that run from disk', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cleave-split-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const model = awkwardModel();
  const order = nodeIds(model.graph!);
  await writeFile(join(dir, 'model.onnx'), encodeModel(model));
  const plan = { stages: stagesFromCuts(order, [2, 7]).map((nodes, i) => ({ executor: `exec-${i}`, nodes })) };
  await writeFile(join(dir, 'plan.json'), JSON.stringify(plan));
  const log = t.mock.method(console, 'log', () => {});
  const code = await split([join(dir, 'model.onnx'), '--plan', join(dir, 'plan.json'), '--out', join(dir, 'out')]);
  log.mock.restore();
  assert.equal(code, 0);
  assert.deepEqual((await readdir(join(dir, 'out'))).sort(), ['manifest.json', 'stage_0.onnx', 'stage_1.onnx', 'stage_2.onnx']);
  const manifest = JSON.parse(await readFile(join(dir, 'out', 'manifest.json'), 'utf8')) as { stages: { file: string; inputs: string[]; outputs: string[] }[] };
  const pool: Feeds = { ...FEEDS };
  for (const s of manifest.stages) {
    const out = await runModel(await readFile(join(dir, 'out', s.file)), Object.fromEntries(s.inputs.map((n) => [n, pool[n]])));
    assert.deepEqual(Object.keys(out).sort(), [...s.outputs].sort());
    Object.assign(pool, out);
  }
  const expected = await runModel(encodeModel(model), FEEDS);
  for (const o of model.graph!.output!) assertTensorEqual(pool[o.name!], expected[o.name!], { rtol: 0, atol: 0 }, o.name!);

  await assert.rejects(split([join(dir, 'model.onnx'), '--plan', join(dir, 'model.onnx'), '--out', join(dir, 'x')]), (e) => isCleaveError(e, ErrorCode.PLAN_INVALID));
  await assert.rejects(split([join(dir, 'model.onnx')]), (e) => isCleaveError(e, ErrorCode.BAD_ARGUMENT));
  await assert.rejects(split([join(dir, 'nope.onnx'), '--plan', join(dir, 'plan.json'), '--out', join(dir, 'x')]), (e) => isCleaveError(e, ErrorCode.MODEL_NOT_FOUND));
});

test('onnx extract - cut configurations are deterministic and within range', () => {
  assert.deepEqual(cutConfigs(1, 'a'), [[]]);
  assert.deepEqual(cutConfigs(50, 'seed'), cutConfigs(50, 'seed'));
  const cfgs = cutConfigs(50, 'seed');
  assert.equal(cfgs.filter((c) => c.length === 1).length, 20);
  for (const c of cfgs) for (const x of c) assert.ok(x >= 1 && x <= 49);
  assert.equal(cutConfigs(4, 'x').filter((c) => c.length === 1).length, 3, 'small models are cut everywhere');
});
