// What onnxruntime alone needs to run one partition, for `cleave bench pipeline`'s memory figures: the
// partition's session in a fresh process started like an executor (same node, same malloc settings,
// same session options, the calibration run an idle executor has done), its peak resident memory above
// that idle level after a few runs on the stage's real input. The executor's own figure minus this one
// is what Cleave adds (NATS, frames, the inference thread); the rest belongs to onnxruntime (session,
// CPU arena).
import { fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ort from '../runtime/ort.js';
import { calibrateFlopsPerSec } from '../runtime/executor/calibrate.js';
import { STAGE_SESSION_OPTIONS } from '../runtime/executor/session-options.js';
import { fromOrtTensor, toOrtTensor } from '../runtime/executor/ort-tensors.js';
import { withTensorMalloc } from '../runtime/malloc.js';
import { decodeFrame, encodeFrame, type Tensor } from '../protocols/tensor-codec.js';

const RUNS = 6;

export interface OrtAloneResult {
  idleRssBytes: number;
  peakRssBytes: number;
  /** After loading the session, before its first run. */
  loadedRssBytes: number;
}

/**
 * Runs partition `modelPath` in a process of its own on the tensors of frame file `inputPath` (the
 * session takes the ones it names), and writes those tensors plus its outputs to `outputPath`, the
 * next stage's input.
 */
export function ortAlone(modelPath: string, inputPath: string, outputPath: string): Promise<OrtAloneResult> {
  const child = fork(fileURLToPath(import.meta.url), [modelPath, inputPath, outputPath], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    env: withTensorMalloc(process.env),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: OrtAloneResult) => resolve(m));
    child.once('exit', (code) => reject(new Error(`onnxruntime memory probe exited (${code}) before reporting`)));
  });
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

async function probe(modelPath: string, inputPath: string, outputPath: string): Promise<OrtAloneResult> {
  await calibrateFlopsPerSec({ threads: 1 });
  // Idle as an executor's: runtime loaded and calibrated; its partition and input not yet read.
  const idleRssBytes = peakRss();
  const input = decodeFrame(readFileSync(inputPath)).tensors;
  const model = readFileSync(modelPath);
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1, ...STAGE_SESSION_OPTIONS, logSeverityLevel: 4 });
  const loadedRssBytes = peakRss();
  const feeds = Object.fromEntries(session.inputNames.map((n) => {
    const t = input[n];
    if (!t) throw new Error(`the partition's input ${n} is not in ${inputPath}`);
    return [n, toOrtTensor(n, t)];
  }));
  let out: ort.InferenceSession.ReturnType = {};
  for (let i = 0; i < RUNS; i++) {
    out = await session.run(feeds);
    // As an executor collects a stage's outputs once written on (runtime/gc.ts).
    (globalThis as { gc?: () => void }).gc?.();
  }
  const peakRssBytes = peakRss();
  const next: Record<string, Tensor> = { ...input };
  for (const [n, v] of Object.entries(out)) next[n] = fromOrtTensor(n, v as ort.Tensor);
  writeFileSync(outputPath, encodeFrame({ tensors: next }));
  return { idleRssBytes, peakRssBytes, loadedRssBytes };
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const [model, input, output] = process.argv.slice(2);
  process.send(await probe(model!, input!, output!));
  process.disconnect();
}
