// OrtRunner: one ONNX partition in an onnxruntime session on a worker thread, so inference never blocks
// the executor's event loop (NATS heartbeats, acks). Runs queue in order; tensors cross by transfer.
import { Worker } from 'node:worker_threads';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { Tensor } from '../../protocols/tensor-codec.js';
import { checkFeeds, prepareTransfer, type OrtValueInfo, type WireTensor } from './ort-tensors.js';
import type { FromWorker, LoadMessage, SessionWorkerData, StageJob, ToWorker } from './session-worker.js';
import type { ShmRef } from '../shm/pool.js';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildSync } from 'esbuild';
import { projectRoot } from '../paths.js';

export type { OrtValueInfo } from './ort-tensors.js';

const TSX_WORKER_ENTRY = new URL('./session-worker.mjs', import.meta.url);

/**
 * The worker's entry: session-worker.ts bundled once into plain JS (cached by content hash), so the
 * worker thread loads no TypeScript loader — measured here, tsx in a worker costs ~54 MB of resident
 * memory and ~330 ms of start. Falls back to the tsx entry if bundling is impossible.
 */
let workerEntry: URL | undefined;
function workerEntryUrl(): URL {
  if (workerEntry) return workerEntry;
  try {
    const src = fileURLToPath(new URL('./session-worker.ts', import.meta.url));
    // Everything the bundle can include: this folder, runtime/ (gc.ts), the shared-memory pool, protocols/.
    const hash = createHash('sha256');
    for (const dir of ['.', '..', '../shm', '../../protocols']) {
      const d = fileURLToPath(new URL(dir, import.meta.url));
      for (const f of readdirSync(d).filter((x) => x.endsWith('.ts')).sort()) hash.update(f).update(readFileSync(join(d, f)));
    }
    const out = join(projectRoot(), 'node_modules', '.cache', 'cleave', `session-worker-${hash.digest('hex').slice(0, 16)}.mjs`);
    if (!existsSync(out)) {
      mkdirSync(dirname(out), { recursive: true });
      // Bundles of earlier sources are dead weight once no process of that version can still be running
      // (a day old): drop them, so the cache does not grow with every edit.
      for (const f of readdirSync(dirname(out))) {
        const p = join(dirname(out), f);
        if (/^session-worker-[0-9a-f]{16}\.mjs$/.test(f) && Date.now() - statSync(p).mtimeMs > 86_400_000) rmSync(p, { force: true });
      }
      const tmp = `${out}.${process.pid}.tmp`;
      buildSync({ entryPoints: [src], bundle: true, platform: 'node', format: 'esm', target: 'node20', external: ['onnxruntime-node', 'msgpackr', '@node-rs/crc32'], outfile: tmp, logLevel: 'silent' });
      renameSync(tmp, out);
    }
    workerEntry = pathToFileURL(out);
  } catch {
    workerEntry = TSX_WORKER_ENTRY;
  }
  return workerEntry;
}

export interface OrtRunnerOptions {
  /** Threads inside one operator. Default 1 (the speed calibrateFlopsPerSec measures); 0 = ORT's choice. */
  intraOpNumThreads?: number;
  /** Threads across operators (parallel execution mode only). Default 1. */
  interOpNumThreads?: number;
  /** ORT graph optimisation. Default 'all'. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Default 'sequential'. */
  executionMode?: 'sequential' | 'parallel';
  /** ORT's CPU arena (keeps freed activation memory for the next run). Default true. */
  enableCpuMemArena?: boolean;
  /** ORT's memory pattern planning (pre-sizes one block for all intermediates). Default true. */
  enableMemPattern?: boolean;
  /** The host's shared-memory pool directory: stage jobs may then read and write frames there. */
  shmDir?: string;
  /** The `reader` of this process's pool, so that this process answers remote reads of the frames the worker writes. */
  shmReader?: string;
  /** Called once when the worker dies or fails (state becomes 'failed'); pending runs are rejected too. */
  onError?: (error: CleaveError) => void;
  /**
   * The runner takes the model bytes: they move to the worker instead of being copied (the caller's
   * view is detached), so a partition is not held twice. Only when the bytes span their whole buffer.
   */
  giveModel?: boolean;
}

/** 'ready' takes runs; 'closing' drains the runs already taken; 'failed' and 'closed' are final. */
export type OrtRunnerState = 'ready' | 'closing' | 'closed' | 'failed';

interface Pending {
  /** A run() resolves with its outputs, a runStage() with a StageRunResult. */
  resolve: (value: unknown) => void;
  reject: (e: CleaveError) => void;
}

/** What a stage job sends on: tensors back in this thread, or a shared-memory frame the worker wrote. */
export interface StageRunResult {
  out: { tensors: Record<string, Tensor> } | { shm: ShmRef };
  runMs: number;
  /** Bytes of the message's tensors (shared-memory input) and of the tensors sent on. */
  inBytes: number;
  outBytes: number;
}

export interface StageRunRequest {
  /**
   * The message's tensors (moved to the worker: buffers they own come back empty); the bytes of a
   * shared-memory frame fetched from another host, with its reference (moved, decoded on the worker);
   * or a frame of this host's pool, which the worker reads itself.
   */
  input: { tensors: Record<string, Tensor> } | { frame: Uint8Array; ref: ShmRef } | { shm: ShmRef };
  /** Names to send on: the partition's outputs, or message tensors passed through. */
  forward: string[];
  /** Write what is sent on into the shared-memory pool (needs `shmDir`); else return it. */
  toShm: boolean;
  /** With toShm: outputs of fewer bytes come back as tensors all the same (sent inline). */
  shmMinBytes?: number;
}

/** Test hooks, not API. */
export const runnerInternals = {
  /** Make the worker throw (uncaught) or exit once the runs taken before this call are done. */
  crash(r: OrtRunner, how: 'throw' | 'exit'): void { r['post']({ type: 'crash', how }); },
  /** The worker's thread id; -1 once the thread has exited. */
  threadId(r: OrtRunner): number { return r['worker'].threadId; },
};

/**
 * An inference thread started ahead of its partition, with onnxruntime loaded: an idle executor keeps
 * one, so that an assignment only loads the partition (faster, and the thread's own memory is part of
 * the idle executor, not of the partition). Taken once by OrtRunner.create.
 */
export class SpareThread {
  private thread: { worker: Worker; abandon: Int32Array } | undefined;

  private constructor(worker: Worker, abandon: Int32Array) {
    this.thread = { worker, abandon };
    worker.unref();
  }

  static async start(): Promise<SpareThread> {
    const abandon = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(workerEntryUrl(), { workerData: { cleaveSessionWorker: true, abandon } satisfies SessionWorkerData, execArgv: workerExecArgv(process.execArgv) });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromWorker): void => { cleanup(); m.type === 'spare' ? resolve() : reject(new CleaveError(ErrorCode.INTERNAL, `spare inference thread sent '${m.type}'`)); };
      const onError = (e: Error): void => { cleanup(); reject(new CleaveError(ErrorCode.RUNNER_FAILED, `the spare inference thread failed to start: ${e.message}`, { cause: e })); };
      const onExit = (code: number): void => { cleanup(); reject(new CleaveError(ErrorCode.RUNNER_FAILED, `the spare inference thread exited (code ${code})`)); };
      const cleanup = (): void => { worker.off('message', onMessage); worker.off('error', onError); worker.off('exit', onExit); };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
    return new SpareThread(worker, abandon);
  }

  /** The thread, once; undefined when taken already. */
  take(): { worker: Worker; abandon: Int32Array } | undefined {
    const t = this.thread;
    this.thread = undefined;
    t?.worker.ref();
    return t;
  }

  async dispose(): Promise<void> {
    const t = this.take();
    if (t) await t.worker.terminate();
  }
}

export class OrtRunner {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Per input: dtype and shape, symbolic dims as names (see OrtValueInfo). */
  readonly inputMetadata: readonly OrtValueInfo[];
  readonly outputMetadata: readonly OrtValueInfo[];

  private readonly worker: Worker;
  private readonly abandon: Int32Array;
  private readonly onError?: (error: CleaveError) => void;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private currentState: OrtRunnerState = 'ready';
  private failureError?: CleaveError;
  private lastRunMsValue = 0;
  private readonly exited: Promise<void>;

  /**
   * Load `modelBytes` into a session on a new worker thread. The bytes are copied once to the worker
   * (the caller keeps them), or moved there with `giveModel`; the worker drops them once loaded. Rejects with MODEL_INVALID when onnxruntime refuses the model, or
   * RUNNER_FAILED when the worker cannot start.
   */
  static async create(modelBytes: Uint8Array, opts: OrtRunnerOptions = {}, spare?: SpareThread): Promise<OrtRunner> {
    if (!(modelBytes instanceof Uint8Array)) {
      throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'OrtRunner.create needs the model as a Uint8Array; read the .onnx file first');
    }
    const options: NonNullable<SessionWorkerData['options']> = {
      intraOpNumThreads: opts.intraOpNumThreads ?? 1,
      interOpNumThreads: opts.interOpNumThreads ?? 1,
      graphOptimizationLevel: opts.graphOptimizationLevel ?? 'all',
      executionMode: opts.executionMode ?? 'sequential',
      enableCpuMemArena: opts.enableCpuMemArena ?? true,
      enableMemPattern: opts.enableMemPattern ?? true,
      logSeverityLevel: 4, // ORT's errors reach the caller in the CleaveError; keep them off stderr
    };
    let worker: Worker;
    let abandon: Int32Array;
    const buffer = modelBytes.buffer;
    const transferList = opts.giveModel && buffer instanceof ArrayBuffer && modelBytes.byteOffset === 0 && modelBytes.byteLength === buffer.byteLength ? [buffer] : [];
    const taken = spare?.take();
    if (taken) {
      ({ worker, abandon } = taken);
      worker.postMessage({ type: 'load', model: modelBytes, options, ...(opts.shmDir ? { shmDir: opts.shmDir } : {}), ...(opts.shmReader ? { shmReader: opts.shmReader } : {}) } satisfies LoadMessage, transferList);
    } else {
      abandon = new Int32Array(new SharedArrayBuffer(4));
      const data: SessionWorkerData = { cleaveSessionWorker: true, model: modelBytes, abandon, options, ...(opts.shmDir ? { shmDir: opts.shmDir } : {}), ...(opts.shmReader ? { shmReader: opts.shmReader } : {}) };
      worker = new Worker(workerEntryUrl(), { workerData: data, transferList, execArgv: workerExecArgv(process.execArgv) });
    }
    const ready = await new Promise<Extract<FromWorker, { type: 'ready' }>>((resolve, reject) => {
      const cleanup = (): void => { worker.off('message', onMessage); worker.off('error', onCrash); worker.off('exit', onExit); };
      const onMessage = (m: FromWorker): void => {
        cleanup();
        if (m.type === 'ready') return resolve(m);
        void worker.terminate();
        reject(m.type === 'loadFailed' ? CleaveError.fromWire(m.error) : new CleaveError(ErrorCode.INTERNAL, `session worker sent '${m.type}' before it was ready`));
      };
      const onCrash = (e: Error): void => {
        cleanup();
        void worker.terminate();
        reject(new CleaveError(ErrorCode.RUNNER_FAILED, `the inference worker failed while loading the model: ${e.message}; check that onnxruntime-node and tsx are installed`, { cause: e }));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new CleaveError(ErrorCode.RUNNER_FAILED, `the inference worker exited (code ${code}) while loading the model; see its stderr`));
      };
      worker.on('message', onMessage);
      worker.on('error', onCrash);
      worker.on('exit', onExit);
    });
    return new OrtRunner(worker, abandon, ready, opts.onError);
  }

  private constructor(worker: Worker, abandon: Int32Array, ready: Extract<FromWorker, { type: 'ready' }>, onError?: (error: CleaveError) => void) {
    this.worker = worker;
    this.abandon = abandon;
    this.onError = onError;
    this.inputMetadata = ready.inputs;
    this.outputMetadata = ready.outputs;
    this.inputNames = ready.inputs.map((i) => i.name);
    this.outputNames = ready.outputs.map((o) => o.name);
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e) => this.fail(new CleaveError(ErrorCode.RUNNER_FAILED, `the inference worker crashed: ${e.message}; create a new runner (reload the partition)`, { cause: e })));
    worker.on('messageerror', (e) => this.fail(new CleaveError(ErrorCode.RUNNER_FAILED, `a message from the inference worker could not be read: ${e.message}; create a new runner`, { cause: e })));
    this.exited = new Promise((resolve) => worker.once('exit', (code) => {
      if (this.currentState === 'closing') {
        this.currentState = 'closed';
        this.rejectAll(new CleaveError(ErrorCode.RUNNER_CLOSED, 'the runner was closed before this run finished'));
      } else if (this.currentState === 'ready') {
        this.fail(new CleaveError(ErrorCode.RUNNER_FAILED, `the inference worker exited unexpectedly (code ${code}); create a new runner (reload the partition)`));
      }
      resolve();
    }));
    worker.unref(); // an idle runner does not keep the process alive; taken runs and closing do (ref()).
  }

  get state(): OrtRunnerState {
    return this.currentState;
  }

  /** Why the runner failed (state 'failed'). */
  get failure(): CleaveError | undefined {
    return this.failureError;
  }

  /** Milliseconds the last successful run spent inside session.run on the worker (the rest is the hop). */
  get lastRunMs(): number {
    return this.lastRunMsValue;
  }

  /** Runs taken and not yet settled. */
  get pendingRuns(): number {
    return this.pending.size;
  }

  /**
   * Run the partition. Runs execute one at a time in call order. Feeds are checked here first
   * (INPUT_INVALID: unknown or missing input, dtype ORT cannot take or the model does not declare,
   * rank or fixed dim that differs from the model); ORT's own failures reject with STAGE_FAILED and
   * leave the runner usable. A dead worker rejects with RUNNER_FAILED, a closed runner with RUNNER_CLOSED.
   *
   * Ownership: a feed whose typed array spans its whole ArrayBuffer is transferred to the worker and is
   * detached (length 0) when run() returns; pass a copy to keep it. A feed that views part of a larger
   * buffer (e.g. a tensor decoded from a frame) is copied once. Outputs own their buffers.
   */
  run(feeds: Record<string, Tensor>, outputNames?: string[]): Promise<Record<string, Tensor>> {
    let wire: WireTensor[];
    let transfer: ArrayBuffer[];
    try {
      this.assertUsable();
      wire = checkFeeds(this.inputMetadata, feeds);
      if (outputNames !== undefined) this.checkOutputNames(outputNames);
      transfer = prepareTransfer(wire);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.dispatch({ type: 'run', id: this.nextId++, feeds: wire, outputNames: outputNames && [...outputNames] }, transfer, wire);
  }

  /**
   * One request of a pipeline stage with its I/O on the worker (see StageJob): with a shared-memory
   * input and output its tensors never enter this thread. Errors as run(), plus FRAME_GONE when the
   * input frame is no longer in the pool.
   */
  runStage(req: StageRunRequest): Promise<StageRunResult> {
    let input: StageJob['input'];
    let transfer: ArrayBuffer[] = [];
    let wire: WireTensor[] = [];
    try {
      this.assertUsable();
      if ('tensors' in req.input) {
        wire = Object.entries(req.input.tensors).map(([name, t]) => ({ name, ...t }));
        transfer = prepareTransfer(wire);
        input = { tensors: wire };
      } else if ('frame' in req.input) {
        // A whole frame of its own goes over as is (moved, decoded on the worker); a view is copied once.
        const f = req.input.frame;
        const frame = f.byteOffset === 0 && f.byteLength === f.buffer.byteLength && f.buffer instanceof ArrayBuffer ? f : f.slice();
        transfer = [frame.buffer as ArrayBuffer];
        input = { frame, ref: req.input.ref };
      } else {
        input = { shm: req.input.shm };
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return this.dispatch({ type: 'stage', id: this.nextId++, input, forward: [...req.forward], toShm: req.toShm, ...(req.shmMinBytes ? { shmMinBytes: req.shmMinBytes } : {}) }, transfer, wire);
  }

  /** Posts a run or stage job, settled by the worker's reply to its id. */
  private dispatch<T>(msg: Extract<ToWorker, { id: number }>, transfer: ArrayBuffer[], wire: WireTensor[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.set(msg.id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.ref();
      try {
        this.worker.postMessage(msg, transfer);
      } catch {
        // A buffer the runtime marks untransferable: send copies instead.
        for (const t of wire) if (!Array.isArray(t.data)) t.data = t.data.slice() as typeof t.data;
        try {
          this.worker.postMessage(msg, prepareTransfer(wire));
        } catch (e) {
          this.settle(msg.id);
          reject(new CleaveError(ErrorCode.INPUT_INVALID, `tensors could not be sent to the inference worker: ${(e as Error).message}`, { cause: e }));
        }
      }
    });
  }

  /**
   * End the worker. By default the runs already taken finish first. `force` rejects them at once with
   * RUNNER_CLOSED and the worker skips those it has not started; a run already inside onnxruntime
   * cannot be interrupted, so the worker exits after it (at most one run's time). Resolves when the
   * worker thread has exited. Idempotent; on a failed runner it waits for the thread to end.
   */
  async close(opts: { force?: boolean } = {}): Promise<void> {
    if (this.currentState === 'ready') {
      this.currentState = 'closing';
      this.worker.ref();
      this.post({ type: 'close' });
    }
    if (this.currentState === 'closing' && opts.force) this.abandonRuns(new CleaveError(ErrorCode.RUNNER_CLOSED, 'the runner was closed (force) before this run finished'));
    await this.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ------------------------------------------------------------------ internals

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'result': {
        const p = this.settle(m.id);
        this.lastRunMsValue = m.runMs;
        const out: Record<string, Tensor> = {};
        for (const t of m.outputs) out[t.name] = { dtype: t.dtype, shape: t.shape, data: t.data };
        p?.resolve(out);
        return;
      }
      case 'stageResult': {
        const p = this.settle(m.id);
        this.lastRunMsValue = m.runMs;
        const out: StageRunResult['out'] = 'shm' in m.out ? { shm: m.out.shm } : { tensors: Object.fromEntries(m.out.tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: t.data }])) };
        p?.resolve({ out, runMs: m.runMs, inBytes: m.inBytes, outBytes: m.outBytes } satisfies StageRunResult);
        return;
      }
      case 'runFailed':
        this.settle(m.id)?.reject(CleaveError.fromWire(m.error));
        return;
      case 'closed':
        // Idle and its session released: ending the thread now is safe (see SessionWorkerData.abandon).
        void this.worker.terminate();
        return;
      default:
        this.fail(new CleaveError(ErrorCode.INTERNAL, `the inference worker sent an unexpected '${m.type}' message`));
    }
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (this.pending.size === 0 && this.currentState === 'ready') this.worker.unref();
    return p;
  }

  /** Stop waiting: reject every taken run and tell the worker to skip those it has not started. */
  private abandonRuns(e: CleaveError): void {
    Atomics.store(this.abandon, 0, 1);
    this.rejectAll(e);
  }

  private rejectAll(e: CleaveError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(e);
  }

  private fail(e: CleaveError): void {
    if (this.currentState === 'failed' || this.currentState === 'closed') return;
    const wasReady = this.currentState === 'ready';
    this.currentState = 'failed';
    this.failureError = e;
    this.abandonRuns(e);
    // A worker still alive (e.g. one that sent an unreadable message) is asked to exit, never terminated mid-run.
    if (wasReady) this.post({ type: 'close' });
    this.worker.ref();
    this.onError?.(e);
  }

  private assertUsable(): void {
    if (this.currentState === 'failed') {
      throw new CleaveError(ErrorCode.RUNNER_FAILED, `the runner failed earlier (${this.failureError?.message}); create a new runner`, { cause: this.failureError });
    }
    if (this.currentState !== 'ready') throw new CleaveError(ErrorCode.RUNNER_CLOSED, 'the runner is closed; create a new runner to run this partition again');
  }

  private checkOutputNames(names: string[]): void {
    if (!Array.isArray(names) || names.length === 0) throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'outputNames must be a non-empty array of output names, or left out for all outputs');
    const known = new Set(this.outputNames);
    const unknown = names.filter((n) => !known.has(n));
    if (unknown.length > 0) {
      throw new CleaveError(ErrorCode.BAD_ARGUMENT, `unknown output${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `'${n}'`).join(', ')}; this partition has ${this.outputNames.map((n) => `'${n}'`).join(', ')}`, { details: { unknown } });
    }
  }
}

/**
 * The parent's node options minus those a Worker refuses: a parent started as `node --input-type=module
 * -e ...` would otherwise fail every worker with ERR_INPUT_TYPE_NOT_ALLOWED.
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i];
    if (/^--(input-type|eval|print)=/.test(a)) continue;
    if (['--input-type', '--eval', '-e', '--print', '-p'].includes(a)) { i++; continue; }
    out.push(a);
  }
  return out;
}
