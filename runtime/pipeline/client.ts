// The inference client: validates inputs against the deployed model before anything enters the
// pipeline, publishes to stage 0, collects results on its own subject, and gives each caller exactly one
// answer (de-duplicated by request id), in request order when asked, with bounded in-flight work and timeouts.
import { randomBytes, randomUUID } from 'node:crypto';
import { headers as natsHeaders, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { checkInputs, dedupId, resultSubject, workSubject, type Deployment, type Hop, type WorkMeta } from '../../protocols/deployment.js';
import { byteLength, decodeFrame, type Tensor } from '../../protocols/tensor-codec.js';
import { publishWork, readShmTensors, receiveFrame, releaseFrame, releaseShmFrame, shmRefOf } from '../nats/frames.js';
import { ShmPool } from '../shm/pool.js';
import { BufferPool } from '../shm/buffers.js';
import { serveShmReads, type ShmReadService } from '../shm/remote.js';
import { viaSharedMemory } from '../shm/route.js';
import { injectTrace, producerSpan } from '../tracing.js';
import { followStageDomains, loadDeployment } from './store.js';

export interface InferenceResult {
  req: string;
  seq: number;
  outputs: Record<string, Tensor>;
  hops: Hop[];
  latencyMs: number;
  /**
   * Gives the outputs' memory back to the client for the next result (optional: without it the memory
   * is garbage-collected). Fresh memory costs far more than reused memory on many VMs; call it once the
   * outputs are no longer used — reading them afterwards reads another result.
   */
  release(): void;
}

export interface InferenceClientOptions {
  /** Requests in the pipeline at once; `infer` waits for room beyond that (backpressure). */
  maxInFlight?: number;
  /** Per request, from send to result. */
  timeoutMs?: number;
  /**
   * Put request tensors in this host's shared-memory pool (default true when /dev/shm is usable): only
   * references cross JetStream; executors on this host read the file, others fetch it from this
   * client over core NATS. False sends every tensor in the JetStream message.
   */
  sharedMemory?: boolean;
}

interface Pending {
  resolve: (r: InferenceResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  seq: number;
  sentAt: number;
  /** Kept until answered: a request whose frame was lost with its host is sent again once. */
  inputs: Record<string, Tensor>;
  attempts: number;
}

/** Failures that lose a request's data in flight (a host went down), not a fault of the request. */
const RETRIABLE: ReadonlySet<string> = new Set([ErrorCode.FRAME_GONE, ErrorCode.NATS_UNAVAILABLE]);
const MAX_ATTEMPTS = 2;

export class InferenceClient {
  private readonly id = randomBytes(6).toString('hex');
  private readonly pending = new Map<string, Pending>();
  /** Request ids recently answered: a late duplicate is dropped, not delivered twice. Bounded: JetStream's
   *  de-duplication window already drops duplicates older than it, so only recent ids need remembering. */
  private readonly answered = new Set<string>();
  private readonly waiters: (() => void)[] = [];
  private sub: Subscription | undefined;
  private seq = 0;
  private readonly js: JetStreamClient;

  private constructor(
    private readonly nc: NatsConnection,
    readonly deployment: Deployment,
    private readonly options: Required<Omit<InferenceClientOptions, 'sharedMemory'>>,
    private readonly shm?: { pool: ShmPool; reads: ShmReadService },
  ) {
    this.js = jetstream(nc);
    // Where stage 0's executors are decides how inputs go (runtime/shm/route.ts); it changes as they come and go.
    this.stopFollowing = followStageDomains(nc, deployment);
  }

  private readonly stopFollowing: () => void;

  static async open(nc: NatsConnection, run: string, options: InferenceClientOptions = {}): Promise<InferenceClient> {
    const d = await loadDeployment(nc, run);
    const pool = options.sharedMemory === false ? undefined : ShmPool.open();
    // This client answers reads of the frames it wrote, for executors on other hosts.
    const shm = pool ? { pool, reads: serveShmReads(nc, pool) } : undefined;
    const c = new InferenceClient(nc, d, { maxInFlight: options.maxInFlight ?? 4, timeoutMs: options.timeoutMs ?? 120_000 }, shm);
    c.listen();
    return c;
  }

  /** Memory of results read from shared memory, recycled by InferenceResult.release(). */
  private readonly resultMemory = new BufferPool();

  /** Requests sent through shared memory, and inline, so far. */
  readonly sent = { sharedMemory: 0, inline: 0 };

  get resultSubject(): string {
    return resultSubject(this.deployment.run, this.id);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private listen(): void {
    // Results are stored in CLEAVE_RESULTS too (replay, audit); the live answer comes by subscription.
    this.sub = this.nc.subscribe(this.resultSubject, {
      callback: (err, msg) => {
        if (err) return;
        void this.onResult(msg.data, msg.headers).catch(() => {});
      },
    });
  }

  private async onResult(data: Uint8Array, headers: Parameters<typeof receiveFrame>[2]): Promise<void> {
    const bytes = await receiveFrame(this.nc, data, headers);
    const frame = decodeFrame(bytes);
    const meta = frame.meta as unknown as WorkMeta;
    const p = this.pending.get(meta.req);
    await releaseFrame(this.nc, headers);
    const ref = shmRefOf(headers);
    if (!p || this.answered.has(meta.req)) {
      if (ref) releaseShmFrame(this.nc, this.shm?.pool, ref);
      return;
    }
    // Taken now, before any await: a duplicate arriving meanwhile is dropped above.
    this.remember(meta.req);
    let lost: CleaveError | undefined;
    let pooled = false;
    if (ref) {
      try {
        frame.tensors = await readShmTensors(this.nc, this.shm?.pool, ref, (n) => this.resultMemory.take(n));
        pooled = true;
      } catch (e) {
        lost = e instanceof CleaveError ? e : new CleaveError(ErrorCode.FRAME_GONE, String(e));
      } finally {
        releaseShmFrame(this.nc, this.shm?.pool, ref);
      }
    }
    if (lost && RETRIABLE.has(lost.code) && p.attempts < MAX_ATTEMPTS) {
      await this.resend(meta.req, p);
      return;
    }
    this.pending.delete(meta.req);
    clearTimeout(p.timer);
    this.wake();
    if (lost) {
      p.reject(new CleaveError(lost.code, `the result of request ${meta.req} could not be read: ${lost.message}; send it again`, { details: { req: meta.req } }));
      return;
    }
    if (meta.error && RETRIABLE.has(meta.error.code) && p.attempts < MAX_ATTEMPTS) {
      // Its data was lost in flight with a host: the inputs are still here, so send it again.
      await this.resend(meta.req, p);
      return;
    }
    if (meta.error) {
      p.reject(new CleaveError(ErrorCode.STAGE_FAILED, `request ${meta.req} failed at stage ${meta.error.stage} on executor ${meta.error.executor}: [${meta.error.code}] ${meta.error.message}`, { details: { ...meta.error, req: meta.req } }));
      return;
    }
    const first = Object.values(frame.tensors).find((t) => !Array.isArray(t.data));
    let released = false;
    const release = (): void => {
      if (released || !pooled || !first) return;
      released = true;
      this.resultMemory.give(first.data as ArrayBufferView);
    };
    p.resolve({ req: meta.req, seq: p.seq, outputs: frame.tensors, hops: meta.hops, latencyMs: Date.now() - p.sentAt, release });
  }

  private remember(req: string): void {
    this.answered.add(req);
    if (this.answered.size > 100_000) this.answered.delete(this.answered.values().next().value!);
  }

  /** Resolves when there is room for one more request (the backpressure `infer` applies itself). */
  async ready(): Promise<void> {
    while (this.pending.size + this.claimed >= this.options.maxInFlight) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Slots taken by callers between passing the check and registering their request. */
  private claimed = 0;

  /** Waits for room and takes it in the same step: concurrent callers cannot all pass one check. */
  private async claimSlot(): Promise<void> {
    while (this.pending.size + this.claimed >= this.options.maxInFlight) await new Promise<void>((r) => this.waiters.push(r));
    this.claimed++;
  }

  private wake(): void {
    const w = this.waiters.shift();
    w?.();
  }

  /** One request through the pipeline. Bad inputs are refused here, before they enter it. */
  async infer(inputs: Record<string, Tensor>, reqId: string = randomUUID()): Promise<InferenceResult> {
    checkInputs(this.deployment.inputs, inputs);
    await this.claimSlot();
    this.claimed--; // the pending entry below takes the slot over, in this same synchronous step
    const d = this.deployment;
    const seq = this.seq++;
    const sentAt = Date.now();
    let p!: Pending;
    const result = new Promise<InferenceResult>((resolve, reject) => {
      const timer = setTimeout(() => this.timeOut(p), this.options.timeoutMs);
      p = { resolve, reject, timer, seq, sentAt, inputs, attempts: 0 };
      this.pending.set(reqId, p);
    });
    try {
      await this.send(reqId, p);
    } catch (e) {
      for (const [id, q] of this.pending) if (q === p) this.pending.delete(id);
      clearTimeout(p.timer);
      this.wake();
      throw e;
    }
    return result;
  }

  private timeOut(p: Pending): void {
    const ids = [...this.pending].filter(([, q]) => q === p).map(([id]) => id);
    for (const id of ids) {
      this.pending.delete(id);
      this.remember(id);
    }
    this.wake();
    const d = this.deployment;
    p.reject(new CleaveError(ErrorCode.REQUEST_TIMEOUT, `request ${ids[0] ?? '?'} got no result within ${this.options.timeoutMs} ms; see \`cleave status\` for the executors of run ${d.run}, and CLEAVE_PARKED for failed work`, { details: { req: ids[0] } }));
  }

  /** Sends a lost request again under a new id (the old one is spent in JetStream's de-duplication). */
  private async resend(oldId: string, p: Pending): Promise<void> {
    this.pending.delete(oldId);
    const id = randomUUID();
    this.pending.set(id, p);
    try {
      await this.send(id, p);
    } catch (e) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      this.wake();
      p.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private async send(reqId: string, p: Pending): Promise<void> {
    p.attempts++;
    const d = this.deployment;
    const meta: WorkMeta = { req: reqId, run: d.run, epoch: d.epoch, stage: 0, reply: this.resultSubject, replyDomain: this.shm?.pool.domain ?? null, seq: p.seq, sentAt: p.sentAt, hops: [] };
    const subject = workSubject(d.run, d.epoch, 0);
    await producerSpan(subject, async (span) => {
      const h = natsHeaders();
      injectTrace(h, span);
      const pool = this.shm?.pool;
      const bytes = Object.values(p.inputs).reduce((a, t) => a + byteLength(t), 0);
      const tensors = pool && pool.hasRoom() && viaSharedMemory(bytes, pool.domain, d.stages[0]!.domains) ? { shm: pool.writeFrame(p.inputs) } : { tensors: p.inputs };
      await publishWork(this.nc, this.js, subject, meta as unknown as Record<string, unknown>, tensors, { headers: h, msgID: dedupId(reqId, d.epoch, 0), ...(pool ? { pool } : {}) });
      if ('shm' in tensors) this.sent.sharedMemory++;
      else this.sent.inline++;
    });
  }

  /** Many requests, results yielded in request order (each as soon as it and all before it are done). */
  async *inferAll(requests: Iterable<Record<string, Tensor>> | AsyncIterable<Record<string, Tensor>>): AsyncGenerator<InferenceResult | CleaveError> {
    const inOrder: Promise<InferenceResult | CleaveError>[] = [];
    let next = 0;
    for await (const inputs of requests) {
      inOrder.push(this.infer(inputs).catch((e) => (e instanceof CleaveError ? e : new CleaveError(ErrorCode.INTERNAL, String(e)))));
      // Yield whatever is ready at the head without blocking new sends.
      while (next < inOrder.length && (await isSettled(inOrder[next]!))) yield await inOrder[next++]!;
    }
    while (next < inOrder.length) yield await inOrder[next++]!;
  }

  async close(): Promise<void> {
    this.stopFollowing();
    this.sub?.unsubscribe();
    this.shm?.reads.unsubscribe();
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new CleaveError(ErrorCode.REQUEST_TIMEOUT, 'client closed before the result arrived'));
    }
    this.pending.clear();
  }
}

async function isSettled(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol();
  return (await Promise.race([p.then(() => true, () => true), Promise.resolve(marker)])) !== marker;
}
