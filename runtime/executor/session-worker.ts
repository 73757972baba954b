// The worker side of OrtRunner: owns one onnxruntime InferenceSession and runs requests in arrival order,
// so that session.run()'s blocking native call never stalls the executor's event loop.
// Loaded by session-worker.mjs (which puts tsx in front of it); the message shapes are below.
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { asCleaveError, CleaveError, ErrorCode, type CleaveErrorWire } from '../../protocols/errors.js';
import { fromOrtTensor, prepareTransfer, toOrtTensor, valueInfoFromOrt, type OrtValueInfo, type WireTensor } from './ort-tensors.js';

// ---------------------------------------------------------------- wire shapes (runner <-> worker)

export interface SessionWorkerData {
  /** Marks a Worker started by OrtRunner, so importing this module elsewhere serves nothing. */
  cleaveSessionWorker: true;
  model: Uint8Array;
  /**
   * Shared flag, set to 1 by the runner when it stops waiting for runs (forced close, failure): queued
   * runs are then skipped. The runner never terminates the worker mid-run: with onnxruntime-node 1.30,
   * Worker.terminate() during session.run() aborts the whole process ('terminate called after
   * throwing an instance of Napi::Error').
   */
  abandon: Int32Array;
  options: ort.InferenceSession.SessionOptions;
}

export type ToWorker =
  | { type: 'run'; id: number; feeds: WireTensor[]; outputNames?: string[] }
  | { type: 'close' }
  /** Test hook: once the runs before it are done, throw an uncaught exception or exit the thread. */
  | { type: 'crash'; how: 'throw' | 'exit' };

export type FromWorker =
  | { type: 'ready'; inputs: OrtValueInfo[]; outputs: OrtValueInfo[] }
  | { type: 'loadFailed'; error: CleaveErrorWire }
  | { type: 'result'; id: number; outputs: WireTensor[]; runMs: number }
  | { type: 'runFailed'; id: number; error: CleaveErrorWire }
  | { type: 'closed' };

// ---------------------------------------------------------------- the worker

async function serve(): Promise<void> {
  const port = parentPort!;
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  const { model, options, abandon } = workerData as SessionWorkerData;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, options);
  } catch (e) {
    post({ type: 'loadFailed', error: loadError(e).toWire() });
    return;
  }
  // Runs go one at a time in arrival order: ORT's run() is a blocking call scheduled by setImmediate,
  // and the chain keeps the order explicit rather than relying on that. An unexpected failure crashes
  // the worker, so the runner fails loudly instead of waiting on a chain that stopped.
  let chain = Promise.resolve();
  const enqueue = (job: () => Promise<void> | void): void => {
    chain = chain.then(job).catch((e: unknown) => { setImmediate(() => { throw e; }); });
  };
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'run':
        return enqueue(() => (Atomics.load(abandon, 0) === 1 ? undefined : runOne(session, m, post)));
      case 'close':
        return enqueue(async () => {
          await session.release();
          post({ type: 'closed' });
          port.close();
        });
      case 'crash':
        return enqueue(() => {
          if (m.how === 'exit') process.exit(7);
          throw new Error('session worker crashed on request (test hook)');
        });
    }
  });
  post({ type: 'ready', inputs: session.inputMetadata.map(valueInfoFromOrt), outputs: session.outputMetadata.map(valueInfoFromOrt) });
}

async function runOne(session: ort.InferenceSession, m: Extract<ToWorker, { type: 'run' }>, post: (m: FromWorker, t?: ArrayBuffer[]) => void): Promise<void> {
  let outputs: WireTensor[];
  let runMs: number;
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of m.feeds) feeds[t.name] = toOrtTensor(t.name, t);
    const t0 = performance.now();
    const result = m.outputNames ? await session.run(feeds, m.outputNames) : await session.run(feeds);
    runMs = performance.now() - t0;
    outputs = Object.entries(result).map(([name, v]) => ({ name, ...fromOrtTensor(name, v as ort.Tensor) }));
  } catch (e) {
    const err = e instanceof CleaveError ? e : new CleaveError(ErrorCode.STAGE_FAILED, `onnxruntime failed to run the partition: ${asCleaveError(e).message}`);
    post({ type: 'runFailed', id: m.id, error: err.toWire() });
    return;
  }
  try {
    post({ type: 'result', id: m.id, outputs, runMs }, prepareTransfer(outputs));
  } catch {
    // An output buffer this runtime will not transfer: send copies.
    for (const t of outputs) if (!Array.isArray(t.data)) t.data = t.data.slice() as typeof t.data;
    post({ type: 'result', id: m.id, outputs, runMs }, prepareTransfer(outputs));
  }
}

// onnxruntime-node refuses a model whose inputs or outputs have an element type it cannot exchange with
// JS, naming only the ONNX type number.
const ONNX_TYPE_NAMES: Record<string, string> = {
  14: 'complex64', 15: 'complex128', 16: 'bfloat16', 17: 'float8e4m3fn', 18: 'float8e4m3fnuz',
  19: 'float8e5m2', 20: 'float8e5m2fnuz', 23: 'float4e2m1',
};

function loadError(e: unknown): CleaveError {
  const msg = e instanceof Error ? e.message : String(e);
  const unsupported = /^Unsupported data type: (\d+)$/.exec(msg);
  if (unsupported) {
    const type = ONNX_TYPE_NAMES[unsupported[1]] ?? `#${unsupported[1]}`;
    return new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `an input or output of the partition has element type ${type}, which onnxruntime-node cannot exchange with JavaScript; cut the model where tensors are float32/float16, or cast at the boundary`, { details: { elemType: Number(unsupported[1]) } });
  }
  return new CleaveError(ErrorCode.MODEL_INVALID, `onnxruntime could not load the partition: ${msg}; check that the file is an ONNX model this onnxruntime (${ort.env.versions.common}) supports`);
}

// Last, so that every declaration above is initialised before serving starts.
if (parentPort && (workerData as Partial<SessionWorkerData> | null)?.cleaveSessionWorker === true) await serve();
