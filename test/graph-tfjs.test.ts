import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { analyzeModelFile } from '../runtime/graph/mod.js';

/** model.json + weights.bin in a temp dir, as tf.io would write them. */
async function saveTo(model: tf.LayersModel, dir: string): Promise<string> {
  await model.save(tf.io.withSaveHandler(async (a) => {
    const data = a.weightData instanceof ArrayBuffer ? a.weightData : new Uint8Array(0).buffer;
    await writeFile(join(dir, 'weights.bin'), new Uint8Array(data));
    await writeFile(join(dir, 'model.json'), JSON.stringify({
      format: 'layers-model', generatedBy: 'test', modelTopology: a.modelTopology,
      weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
    }));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  return join(dir, 'model.json');
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'cleave-tfjs-'));
  try { return await fn(dir); } finally { await rm(dir, { recursive: true, force: true }); }
}

test('graph-tfjs - sequential CNN: shapes, FLOPs and params from model.json', async () => {
  await withDir(async (dir) => {
    const m = tf.sequential();
    m.add(tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 3, activation: 'relu', name: 'conv' }));
    m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool' }));
    m.add(tf.layers.batchNormalization({ name: 'bn' }));
    m.add(tf.layers.flatten({ name: 'flat' }));
    m.add(tf.layers.dropout({ rate: 0.5, name: 'drop' }));
    m.add(tf.layers.dense({ units: 10, activation: 'softmax', name: 'dense' }));
    const path = await saveTo(m, dir);
    const g = await analyzeModelFile(path, { inputs: { conv_input: [4, 28, 28, 1] } });
    assert.equal(g.format, 'tfjs');
    assert.deepEqual(g.nodes.map((n) => n.op), ['Conv2D', 'MaxPooling2D', 'BatchNormalization', 'Flatten', 'Dropout', 'Dense']);
    const conv = g.nodes[0];
    assert.deepEqual(conv.outputShapes, { conv: [4, 26, 26, 8] });
    assert.equal(conv.flops, 2 * 4 * 26 * 26 * 8 * 9 * 1 + 4 * 26 * 26 * 8 + 4 * 26 * 26 * 8); // MACs, bias, relu
    assert.equal(conv.paramBytes, (3 * 3 * 8 + 8) * 4);
    const dense = g.nodes[5];
    assert.deepEqual(dense.outputShapes, { dense: [4, 10] });
    assert.equal(dense.paramBytes, (1352 * 10 + 10) * 4);
    assert.equal(dense.flops, 2 * 4 * 1352 * 10 + 40 + 7 * 40);
    assert.equal(g.totals!.paramBytes, m.countParams() * 4);
    assert.deepEqual(g.outputs[0].shape, [4, ...(m.outputs[0].shape.slice(1) as number[])]);
    assert.equal(g.cuts.length, 7);
    assert.deepEqual(g.cuts[3].tensors.map((t) => t.name), ['bn']);
    // without a sample batch, the batch dim stays symbolic
    const sym = await analyzeModelFile(path);
    assert.equal(sym.inputs[0].shape[0], 'batch');
    assert.deepEqual(sym.nodes[3].outputShapes, { flat: ['batch', 1352] });
    m.dispose();
  });
});

test('graph-tfjs - functional model with a skip connection: edges and cuts', async () => {
  await withDir(async (dir) => {
    const inp = tf.input({ shape: [8, 8, 4], name: 'img' });
    const c1 = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c1' }).apply(inp) as tf.SymbolicTensor;
    const dw = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', name: 'dw' }).apply(c1) as tf.SymbolicTensor;
    const add = tf.layers.add({ name: 'add' }).apply([dw, c1]) as tf.SymbolicTensor;
    const cat = tf.layers.concatenate({ name: 'cat' }).apply([add, inp]) as tf.SymbolicTensor;
    const gap = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(cat) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 3, name: 'head' }).apply(gap) as tf.SymbolicTensor;
    const m = tf.model({ inputs: inp, outputs: out });
    const path = await saveTo(m, dir);
    const g = await analyzeModelFile(path, { inputs: { img: [1, 8, 8, 4] } });
    assert.deepEqual(g.nodes.map((n) => n.id), ['c1', 'dw', 'add', 'cat', 'gap', 'head']);
    assert.deepEqual(g.nodes.find((n) => n.id === 'cat')!.outputShapes, { cat: [1, 8, 8, 8] });
    assert.equal(g.nodes.find((n) => n.id === 'dw')!.flops, 2 * 64 * 4 * 9 + 64 * 4);
    const cut = (i: number) => g.cuts[i].tensors.map((t) => t.name).sort();
    assert.deepEqual(cut(1), ['c1', 'img']);
    assert.deepEqual(cut(2), ['c1', 'dw', 'img']);
    assert.deepEqual(cut(3), ['add', 'img']);
    assert.deepEqual(cut(4), ['cat']);
    assert.equal(g.cuts[2].bytes, 3 * 256 * 4);
    assert.deepEqual(g.edges.map((e) => `${e.from}->${e.to}`).sort(), ['add->cat', 'c1->add', 'c1->dw', 'cat->gap', 'dw->add', 'gap->head']);
    assert.equal(g.totals!.paramBytes, m.countParams() * 4);
    const pred = m.predict(tf.zeros([1, 8, 8, 4])) as tf.Tensor;
    assert.deepEqual(g.outputs[0].shape, pred.shape);
    pred.dispose();
    m.dispose();
  });
});

test('graph-tfjs - missing weights file and wrong sample shape are typed errors', async () => {
  await withDir(async (dir) => {
    const m = tf.sequential({ layers: [tf.layers.dense({ inputShape: [5], units: 2, name: 'd' })] });
    const path = await saveTo(m, dir);
    const isCode = (code: ErrorCode) => (e: unknown) => e instanceof CleaveError && e.code === code;
    await assert.rejects(analyzeModelFile(path, { inputs: { d_input: [1, 6] } }), isCode(ErrorCode.MODEL_SHAPE_CONFLICT));
    await assert.rejects(analyzeModelFile(path, { inputs: { nope: [1, 5] } }), isCode(ErrorCode.MODEL_SHAPE_CONFLICT));
    await writeFile(join(dir, 'weights.bin'), new Uint8Array(8));
    await assert.rejects(analyzeModelFile(path), isCode(ErrorCode.MODEL_MISSING_INITIALIZER));
    await rm(join(dir, 'weights.bin'));
    await assert.rejects(analyzeModelFile(path), isCode(ErrorCode.MODEL_MISSING_INITIALIZER));
    await writeFile(join(dir, 'bad.json'), '{"modelTopology": 3}');
    await assert.rejects(analyzeModelFile(join(dir, 'bad.json')), isCode(ErrorCode.MODEL_INVALID));
    m.dispose();
  });
});
