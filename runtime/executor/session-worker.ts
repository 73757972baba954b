// The worker side of OrtRunner: owns one onnxruntime InferenceSession and runs requests in arrival order,
// so that session.run()'s blocking native call never stalls the executor's event loop.
// Loaded by session-worker.mjs (which puts tsx in front of it); the message shapes are below.
import { parentPort, workerData } from 'node:worker_threads';
import { collectYoung } from '../gc.js';
import ort from '../ort.js';
import { asCleaveError, CleaveError, ErrorCode, type CleaveErrorWire } from '../../protocols/errors.js';
import { byteLength, type Tensor } from '../../protocols/tensor-codec.js';
import { ShmPool, decodeShmBytes, type ShmRef } from '../shm/pool.js';
import { Scratch } from '../shm/buffers.js';
import { checkFeeds, fromOrtTensor, prepareTransfer, toOrtTensor, valueInfoFromOrt, type OrtValueInfo, type WireTensor } from './ort-tensors.js';

// ---------------------------------------------------------------- wire shapes (runner <-> worker)

export interface SessionWorkerData {
  /** Marks a Worker started by OrtRunner, so importing this module elsewhere serves nothing. */
  cleaveSessionWorker: true;
  /** The partition; absent for a spare thread, which waits for a `load` message. */
  model?: Uint8Array;
  /**
   * Shared flag, set to 1 by the runner when it stops waiting for runs (forced close, failure): queued
   * runs are then skipped. The runner never terminates the worker mid-run: with onnxruntime-node 1.30,
   * Worker.terminate() during session.run() aborts the whole process ('terminate called after
   * throwing an instance of Napi::Error').
   */
  abandon: Int32Array;
  options?: ort.InferenceSession.SessionOptions;
  /** The host's shared-memory pool directory, when stage jobs may read and write frames there. */
  shmDir?: string;
  /** The reader token of the process's own pool: frames written here are served by that process. */
  shmReader?: string;
}

/** What a spare thread is given to become a runner (the fields a started one gets in workerData). */
export interface LoadMessage {
  type: 'load';
  model: Uint8Array;
  options: ort.InferenceSession.SessionOptions;
  shmDir?: string;
  shmReader?: string;
}

/**
 * One request of a pipeline stage, I/O included, so its tensors never touch the executor's main
 * thread when they come and go through shared memory: read the message's tensors (given, or from a
 * shared-memory frame), run the partition on its inputs, and send on `forward` (own outputs, or
 * message tensors passed through) as a new shared-memory frame or returned tensors.
 */
export interface StageJob {
  type: 'stage';
  id: number;
  input: { tensors: WireTensor[] } | { frame: Uint8Array; ref: ShmRef } | { shm: ShmRef };
  forward: string[];
  toShm: boolean;
  /** With toShm: outputs of fewer bytes go back as tensors (to be sent inline) all the same. */
  shmMinBytes?: number;
}

export type StageOutput = { tensors: WireTensor[] } | { shm: ShmRef };

export type ToWorker =
  | { type: 'run'; id: number; feeds: WireTensor[]; outputNames?: string[] }
  | StageJob
  | { type: 'close' }
  /** Test hook: once the runs before it are done, throw an uncaught exception or exit the thread. */
  | { type: 'crash'; how: 'throw' | 'exit' };

export type FromWorker =
  /** A spare thread is up (onnxruntime loaded) and waits for its partition. */
  | { type: 'spare' }
  | { type: 'ready'; inputs: OrtValueInfo[]; outputs: OrtValueInfo[] }
  | { type: 'loadFailed'; error: CleaveErrorWire }
  | { type: 'result'; id: number; outputs: WireTensor[]; runMs: number }
  | { type: 'stageResult'; id: number; out: StageOutput; runMs: number; inBytes: number; outBytes: number }
  | { type: 'runFailed'; id: number; error: CleaveErrorWire }
  | { type: 'closed' };

// ---------------------------------------------------------------- the worker

async function serve(): Promise<void> {
  const port = parentPort!;
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  const data = workerData as SessionWorkerData;
  const { abandon } = data;
  let { model, options, shmDir, shmReader } = data;
  if (!model) {
    const load = await new Promise<LoadMessage>((resolve) => {
      port.once('message', (m: LoadMessage) => resolve(m));
      post({ type: 'spare' });
    });
    ({ model, options, shmDir, shmReader } = load);
  }
  const pool = shmDir ? ShmPool.open({ dir: shmDir, ...(shmReader ? { reader: shmReader } : {}) }) : undefined;
  const scratch = new Scratch();
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, options ?? {});
  } catch (e) {
    post({ type: 'loadFailed', error: loadError(e).toWire() });
    return;
  } finally {
    // onnxruntime holds its own copy of what it needs: the serialized partition is garbage now.
    model = undefined;
    delete data.model;
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
      case 'stage':
        return enqueue(() => (Atomics.load(abandon, 0) === 1 ? undefined : runStage(session, inputs, m, post, pool, scratch)));
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
  const inputs = session.inputMetadata.map(valueInfoFromOrt);
  post({ type: 'ready', inputs, outputs: session.outputMetadata.map(valueInfoFromOrt) });
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

/**
 * The last stage job's outputs are garbage once written to shared memory, but only once its frame is
 * gone: a collection inside the job would find them still referenced, and the next run would allocate
 * beside them. So the next job collects them first (runtime/gc.ts says why at all).
 */
let deadOutputs = false;

async function runStage(session: ort.InferenceSession, inputs: OrtValueInfo[], m: StageJob, post: (m: FromWorker, t?: ArrayBuffer[]) => void, pool: ShmPool | undefined, scratch: Scratch): Promise<void> {
  if (deadOutputs) {
    deadOutputs = false;
    collectYoung();
  }
  let tensors: Record<string, Tensor>;
  let out: StageOutput;
  let runMs: number;
  let inBytes = 0;
  let outBytes = 0;
  try {
    if ('shm' in m.input) {
      if (!pool) throw new CleaveError(ErrorCode.INTERNAL, 'this runner has no shared-memory pool; send the tensors instead');
      // Views into the scratch buffer: valid until the next job, and this job ends with them.
      tensors = pool.readFrame(m.input.shm, scratch).tensors;
      inBytes = m.input.shm.bytes;
    } else if ('frame' in m.input) {
      tensors = decodeShmBytes(m.input.ref, m.input.frame).tensors;
      inBytes = m.input.frame.byteLength;
    } else {
      tensors = Object.fromEntries(m.input.tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: t.data }]));
    }
    // The message may carry tensors for later stages too: only this partition's inputs are fed.
    const fed = new Set(inputs.map((i) => i.name));
    const wire = checkFeeds(inputs, Object.fromEntries(Object.entries(tensors).filter(([n]) => fed.has(n))));
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of wire) feeds[t.name] = toOrtTensor(t.name, t);
    const t0 = performance.now();
    const result = await session.run(feeds);
    runMs = performance.now() - t0;
    const forward: Record<string, Tensor> = {};
    for (const name of m.forward) {
      const v = result[name];
      const t = v ? fromOrtTensor(name, v as ort.Tensor) : tensors[name];
      if (t) forward[name] = t;
    }
    for (const t of Object.values(forward)) outBytes += byteLength(t);
    if (m.toShm && pool && outBytes >= (m.shmMinBytes ?? 0)) {
      out = { shm: pool.writeFrame(forward) };
    } else {
      out = { tensors: Object.entries(forward).map(([name, t]) => ({ name, ...t })) };
    }
  } catch (e) {
    const err = e instanceof CleaveError ? e : new CleaveError(ErrorCode.STAGE_FAILED, `onnxruntime failed to run the partition: ${asCleaveError(e).message}`);
    post({ type: 'runFailed', id: m.id, error: err.toWire() });
    return;
  }
  // Returned tensors that view the scratch buffer (passed through from a shared-memory input) are
  // copied by prepareTransfer; ORT's own outputs own their buffers and are moved.
  const transfer = 'tensors' in out ? prepareTransfer(out.tensors) : [];
  post({ type: 'stageResult', id: m.id, out, runMs, inBytes, outBytes }, transfer);
  if ('shm' in out && outBytes > 1024 * 1024) deadOutputs = true;
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
