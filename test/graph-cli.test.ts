import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import analyze, { parseInputs } from '../runtime/cli/commands/analyze.js';
import { encodeModel } from '../runtime/onnx/proto.js';
import { floatInit, ints, model, valueInfo } from './graph-helpers.js';

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.map(String).join(' ')); };
  try {
    const code = await fn();
    return { code, out: lines.join('\n') };
  } finally {
    console.log = orig;
  }
}

test('graph-cli - analyze --json prints nodes, edges, cuts, inputs, outputs, totals', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cleave-cli-'));
  try {
    const m = model({
      inputs: [valueInfo('x', ['N', 3, 8, 8])],
      outputs: [valueInfo('y', ['N', 4, 8, 8])],
      inits: [floatInit('W', [4, 3, 3, 3])],
      nodes: [
        { op: 'Conv', name: 'conv', inputs: ['x', 'W'], outputs: ['c'], attrs: [ints('pads', [1, 1, 1, 1])] },
        { op: 'Relu', name: 'relu', inputs: ['c'], outputs: ['r'] },
        { op: 'Add', name: 'add', inputs: ['r', 'c'], outputs: ['y'] },
      ],
    });
    const path = join(dir, 'm.onnx');
    await writeFile(path, encodeModel(m));
    const { code, out } = await capture(() => analyze([path, '--input', 'x=2,3,8,8', '--json', '--profile']));
    assert.equal(code, 0);
    const g = JSON.parse(out);
    assert.deepEqual(Object.keys(g).filter((k) => ['nodes', 'edges', 'cuts', 'inputs', 'outputs', 'totals'].includes(k)).sort(),
      ['cuts', 'edges', 'inputs', 'nodes', 'outputs', 'totals']);
    assert.deepEqual(g.nodes.map((n: { id: string }) => n.id), ['conv', 'relu', 'add']);
    assert.equal(g.nodes[0].flops, 2 * 2 * 4 * 64 * 3 * 9);
    assert.ok(g.nodes.every((n: { measuredSeconds?: number }) => typeof n.measuredSeconds === 'number'));
    assert.deepEqual(g.cuts[2].tensors.map((t: { name: string }) => t.name).sort(), ['c', 'r']);
    assert.equal(g.cuts[2].bytes, 2 * 2 * 4 * 64 * 4);
    assert.deepEqual(g.outputs[0].shape, [2, 4, 8, 8]);

    const text = await capture(() => analyze([path]));
    assert.equal(text.code, 0);
    assert.match(text.out, /3 nodes, 3 edges/);
    assert.match(text.out, /top nodes by FLOPs:\n\s+conv/);
    assert.match(text.out, /cheapest interior cuts/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('graph-cli - --input parsing and argument errors', async () => {
  assert.deepEqual(parseInputs(['x=1,3,640,640', 'mask=1,4']), { x: [1, 3, 640, 640], mask: [1, 4] });
  const bad = (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.BAD_ARGUMENT;
  assert.throws(() => parseInputs(['x=1,a']), bad);
  assert.throws(() => parseInputs(['x']), bad);
  assert.throws(() => parseInputs(['x=1', 'x=2']), bad);
  await assert.rejects(analyze([]), bad);
  await assert.rejects(analyze(['a.onnx', '--bogus']), bad);
});
