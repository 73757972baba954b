// Measures this host's effective FLOP/s for conv-like work in onnxruntime, the `flopsPerSec` capability
// the planner divides node FLOPs by. The probe model is built here; FLOPs use runtime/graph's Conv rule.
import ort from '../ort.js';
import { encodeModel, onnx } from '../onnx/proto.js';

export interface CalibrationOptions {
  /** onnxruntime intra-op threads, as the executor's runners will use. Default 1. */
  threads?: number;
  /** Wall-clock budget for the timed runs, in seconds (session creation and warm-up come on top). Default 0.3. */
  budgetSeconds?: number;
  /** Timed runs to make even past the budget. Default 3. */
  minRuns?: number;
}

export interface Calibration {
  /** FLOPs of the probe model divided by its fastest run time. */
  flopsPerSec: number;
  threads: number;
  /** Wall-clock seconds the whole calibration took (model build, session, warm-up, timed runs). */
  seconds: number;
  runs: number;
  flopsPerRun: number;
  medianRunSeconds: number;
  /** The fastest timed run: what flopsPerSec is computed from. */
  bestRunSeconds: number;
}

/** The probe: two 3×3 convolutions with bias, 32→32 channels over 1×32×56×56 (a ResNet-like block). */
export interface CalibrationModel {
  bytes: Uint8Array;
  /** FLOPs per run, counted as runtime/graph/flops.ts counts Conv: 2·|Y|·(C_in/group)·k_h·k_w + |Y| for the bias. */
  flops: number;
  inputName: string;
  inputShape: number[];
}

const C = 32, H = 56, W = 56, K = 3, LAYERS = 2;

export function calibrationModel(): CalibrationModel {
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const shape = [1, C, H, W];
  const vi = (name: string): onnx.IValueInfoProto => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: shape.map((d) => ({ dimValue: d })) } } } });
  const nodes: onnx.INodeProto[] = [];
  const inits: onnx.ITensorProto[] = [];
  let x = 'x';
  for (let l = 0; l < LAYERS; l++) {
    // Small, sign-mixed weights keep activations away from denormals, which would slow the kernel.
    const w = new Float32Array(C * C * K * K).map((_, i) => 0.05 * Math.sin(0.37 * i + l));
    const b = new Float32Array(C).map((_, i) => 0.01 * Math.cos(i + l));
    inits.push({ name: `w${l}`, dataType: FLOAT, dims: [C, C, K, K], rawData: new Uint8Array(w.buffer) });
    inits.push({ name: `b${l}`, dataType: FLOAT, dims: [C], rawData: new Uint8Array(b.buffer) });
    const y = l === LAYERS - 1 ? 'y' : `h${l}`;
    nodes.push({
      opType: 'Conv', name: `conv${l}`, input: [x, `w${l}`, `b${l}`], output: [y],
      attribute: [
        { name: 'kernel_shape', type: onnx.AttributeProto.AttributeType.INTS, ints: [K, K] },
        { name: 'pads', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 1, 1, 1] },
      ],
    });
    x = y;
  }
  const bytes = encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'cleave-calibrate',
    graph: { name: 'calibration', node: nodes, initializer: inits, input: [vi('x')], output: [vi('y')] },
  });
  const outElems = C * H * W;
  const flops = LAYERS * (2 * outElems * C * K * K + outElems);
  return { bytes, flops, inputName: 'x', inputShape: shape };
}

/**
 * Time the probe model in this process at `threads` intra-op threads and return FLOPs / fastest run
 * time. Each run is its own macrotask (a few ms at one thread), so the event loop is never held longer
 * than one run. Takes ~0.4 s by default.
 */
export async function calibrateFlopsPerSec(opts: CalibrationOptions = {}): Promise<Calibration> {
  const t0 = performance.now();
  const threads = opts.threads ?? 1;
  const budgetMs = (opts.budgetSeconds ?? 0.3) * 1000;
  const minRuns = opts.minRuns ?? 3;
  const probe = calibrationModel();
  const session = await ort.InferenceSession.create(probe.bytes, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3,
  });
  try {
    const input = new Float32Array(probe.inputShape.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i) * 0.5);
    const feeds = { [probe.inputName]: new ort.Tensor('float32', input, probe.inputShape) };
    await session.run(feeds); // warm-up: first run allocates and pre-packs weights
    const times: number[] = [];
    const start = performance.now();
    while (times.length < minRuns || performance.now() - start < budgetMs) {
      const s = performance.now();
      await session.run(feeds);
      times.push(performance.now() - s);
      await new Promise<void>((r) => setImmediate(r));
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)] / 1000;
    // The fastest run is the host's speed; slower ones measure whatever else ran at that moment
    // (executors calibrate while their siblings start), which would skew the planner's balance.
    const best = times[0]! / 1000;
    return {
      flopsPerSec: probe.flops / best,
      threads,
      seconds: (performance.now() - t0) / 1000,
      runs: times.length,
      flopsPerRun: probe.flops,
      medianRunSeconds: median,
      bestRunSeconds: best,
    };
  } finally {
    await session.release();
  }
}
