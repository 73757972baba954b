import { loadModelFile, encodeModel } from './runtime/onnx/proto.ts';
import { OrtRunner } from './runtime/executor/ort-runner.ts';
import { tensor, encodeFrame, decodeFrame } from './protocols/tensor-codec.ts';
const m = await loadModelFile('/usr/share/libonnx-testdata/data/node/test_mvn_expanded/model.onnx');
const runner = await OrtRunner.create(encodeModel(m));
for (const off of [0, 3, 4, 8]) {
  const f = encodeFrame({ tensors: { X: tensor('float32', [3,3,3,1], new Float32Array(27).fill(0.5)) }, meta: { a: 1 } });
  const big = Buffer.allocUnsafe(f.byteLength + 100); big.set(f, off);
  const d = decodeFrame(big.subarray(off, off + f.byteLength));
  const t = setTimeout(() => { console.log('HUNG at', off, runner.state, runner.pendingRuns); process.exit(1); }, 5000);
  try { const out = await runner.run({ X: d.tensors.X }); console.log(off, Object.keys(out)); } catch (e) { console.log(off, 'ERR', e.message); }
  clearTimeout(t);
}
await runner.close();
