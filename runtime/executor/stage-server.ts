// Serves one stage of a deployment: pulls the stage's work from its durable consumer (shared by every
// replica), runs the partition off the main thread, publishes what the next stage needs, and acks only
// after that publish is safely stored. Failures are reported to the caller with stage and executor.
import { AckPolicy } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { CleaveError, ErrorCode, asCleaveError, isCleaveError } from '../../protocols/errors.js';
import { Header, Stream, Subject, Role } from '../../protocols/subjects.js';
import { dedupId, workDurable, workSubject, type DeployedStage, type Deployment, type WorkMeta } from '../../protocols/deployment.js';
import { decodeFrame } from '../../protocols/tensor-codec.js';
import { publishWork, receiveFrame, releaseFrame, releaseShmFrame, shmRefOf } from '../nats/frames.js';
import type { ShmPool, ShmRef } from '../shm/pool.js';
import { fetchShmBytes } from '../shm/remote.js';
import { SlotPuller, type PulledMsg } from '../nats/pull.js';
import { followStageDomains } from '../pipeline/store.js';
import { sharedMemoryMinBytes } from '../shm/route.js';
import type { Span } from '@opentelemetry/api';
import { consumerSpan, injectTrace } from '../tracing.js';
import type { ActorContext } from '../actor/host.js';
import type { OrtRunner, StageRunRequest, StageRunResult } from './ort-runner.js';

export interface StageStats {
  served: number;
  failed: number;
  computeMs: number;
  inBytes: number;
  outBytes: number;
  /** Messages sent on with their tensors in this host's shared-memory pool, and inline. */
  sentShared: number;
  sentInline: number;
  since: number;
}

export interface StageServerOptions {
  /** Messages worked on at once: one in the model, one being received or published. */
  slots?: number;
  /** Makes a fresh runner when the current one has failed (its worker crashed). */
  reload?: () => Promise<OrtRunner>;
  /** This host's shared-memory pool: what the stage sends on is written there (readers on this host
   *  read the file, others fetch it over NATS). Without it every frame goes through JetStream. */
  shm?: { pool: ShmPool };
}

/** Creates the stage's durable consumer if missing; every replica binds to the same one. */
export async function ensureStageConsumer(ctx: Pick<ActorContext, 'jsm'>, d: Deployment, stage: number): Promise<void> {
  const durable = workDurable(d.run, d.epoch, stage);
  try {
    await ctx.jsm.consumers.info(Stream.WORK, durable);
  } catch {
    await ctx.jsm.consumers
      .add(Stream.WORK, {
        durable_name: durable,
        filter_subject: workSubject(d.run, d.epoch, stage),
        ack_policy: AckPolicy.Explicit,
        ack_wait: d.ackWaitMs * 1_000_000,
        max_deliver: d.maxDeliver,
        max_ack_pending: 256,
      })
      .catch(async (e) => {
        await ctx.jsm.consumers.info(Stream.WORK, durable).catch(() => {
          throw e;
        });
      });
  }
}

export class StageServer {
  readonly stats: StageStats = { served: 0, failed: 0, computeMs: 0, inBytes: 0, outBytes: 0, sentShared: 0, sentInline: 0, since: Date.now() };
  private puller?: SlotPuller;
  private readonly stage: DeployedStage;

  constructor(
    private readonly ctx: ActorContext,
    readonly deployment: Deployment,
    stageIndex: number,
    private runner: OrtRunner,
    private readonly options: StageServerOptions = {},
  ) {
    this.stage = deployment.stages[stageIndex]!;
  }

  get index(): number {
    return this.stage.index;
  }

  private stopFollowing?: () => void;

  async start(): Promise<void> {
    await ensureStageConsumer(this.ctx, this.deployment, this.stage.index);
    // Where the next stage's executors are changes as they join and leave: it decides how outputs go.
    this.stopFollowing = followStageDomains(this.ctx.nc, this.deployment);
    const slots = this.options.slots ?? 2;
    // One pull request of one message per free slot, on one subscription, the ack asking for the next
    // (runtime/nats/pull.ts): large pull buffers collapse throughput on MB messages, a replica must not
    // hoard work its siblings could take, and next() per message cost three extra writes.
    this.puller = new SlotPuller(this.ctx.nc, Stream.WORK, workDurable(this.deployment.run, this.deployment.epoch, this.stage.index), {
      slots,
      onMessage: (m) => this.handle(m),
      onRefused: (why) => this.ctx.log.warn('pull refused; retrying', { stage: this.stage.index, why }),
    });
    this.puller.start();
  }

  private reloading: Promise<void> | undefined;

  private reloadRunner(): Promise<void> {
    if (!this.options.reload || this.runner.state !== 'failed') return Promise.resolve();
    this.reloading ??= this.options
      .reload()
      .then((r) => {
        this.runner = r;
        this.ctx.log.warn('inference worker failed; partition reloaded', { stage: this.stage.index });
      })
      .catch((e) => this.ctx.log.error('could not reload the partition', { error: String(e) }))
      .finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  /** Stops pulling; resolves when the requests in hand are done (published and acked, or nak'ed). */
  async drain(): Promise<void> {
    this.stopFollowing?.();
    await this.puller?.drain();
  }

  private async handle(m: PulledMsg): Promise<void> {
    const working = setInterval(() => m.working(), Math.max(1000, this.deployment.ackWaitMs / 3));
    try {
      await consumerSpan(m.subject, m.headers, async (span) => {
        span.setAttribute('cleave.stage', this.stage.index);
        await this.process(m, span);
      }).catch((e) => {
        // process() settles every message itself; reaching here is a bug: say so, and let it redeliver.
        this.ctx.log.error('unexpected failure handling a request; it will be redelivered', { error: String(e), stack: (e as Error).stack });
      });
    } finally {
      clearInterval(working);
    }
  }

  private async process(m: PulledMsg, span: Span): Promise<void> {
    const waitStart = Number(m.info.timestampNanos) / 1e6;
    const shm = this.options.shm;
    let meta: WorkMeta | undefined;
    let input: StageRunRequest['input'];
    let ref: ShmRef | undefined;
    let bodyBytes: number;
    try {
      const bytes = await receiveFrame(this.ctx.nc, m.data, m.headers);
      bodyBytes = bytes.byteLength;
      const frame = decodeFrame(bytes);
      const candidate = frame.meta as unknown as WorkMeta;
      if (!candidate || typeof candidate.req !== 'string' || typeof candidate.reply !== 'string') throw new CleaveError(ErrorCode.BAD_MESSAGE, 'work message has no request id or reply subject');
      meta = candidate;
      ref = shmRefOf(m.headers);
      if (ref && shm && ref.domain === shm.pool.domain) input = { shm: ref };
      // Another host's frame: its bytes come over NATS here and go to the worker as they are.
      else if (ref) input = { frame: await fetchShmBytes(this.ctx.nc, ref), ref };
      else input = { tensors: frame.tensors };
    } catch (e) {
      if (this.alreadyDone(m, e)) return;
      // The frame's host does not answer: it may be restarting its executors. Retry a few times (the
      // delivery limit) before the request fails; the client then sends it again.
      if (isCleaveError(e, ErrorCode.NATS_UNAVAILABLE) && m.info.deliveryCount < this.deployment.maxDeliver) {
        this.ctx.log.warn('the host holding this request\'s input does not answer; retrying', { req: meta?.req, domain: ref?.domain, delivery: m.info.deliveryCount });
        m.nak(1000 * m.info.deliveryCount);
        return;
      }
      await this.deadLetter(m, meta, asCleaveError(e), ref);
      return;
    }
    const takenAt = Date.now();
    this.ctx.log.debug('took request', { req: meta.req, stage: this.stage.index, delivery: m.info.deliveryCount, shm: ref !== undefined });
    const last = this.stage.index === this.deployment.stages.length - 1;
    // Into this host's pool whenever it has room: a reader here reads the file, a reader elsewhere
    // fetches it over core NATS, which moves multi-MB frames at 2-3x what a stored message does.
    const toShm = shm !== undefined && shm.pool.hasRoom();
    // Small outputs go inline when nobody who reads them shares this host (runtime/shm/route.ts): the
    // next stage's executors (followed from the deployment record), or the caller for the last stage.
    const consumers = last ? (meta.replyDomain === undefined ? undefined : meta.replyDomain === null ? [] : [meta.replyDomain]) : this.deployment.stages[this.stage.index + 1]!.domains;
    const shmMinBytes = shm ? sharedMemoryMinBytes(shm.pool.domain, consumers) : 0;
    let r: StageRunResult;
    const t0 = performance.now();
    try {
      r = await this.runner.runStage({ input, forward: this.stage.forward, toShm, ...(shmMinBytes ? { shmMinBytes } : {}) });
    } catch (e) {
      const err = asCleaveError(e);
      // A crashed worker is this executor's problem, not the request's: hand the request back (a replica,
      // or this executor once its partition is reloaded, takes it) — up to the delivery limit.
      if ((err.code === ErrorCode.RUNNER_FAILED || err.code === ErrorCode.RUNNER_CLOSED) && m.info.deliveryCount < this.deployment.maxDeliver) {
        m.nak(500);
        this.stats.failed++;
        await this.reloadRunner();
        return;
      }
      if (this.alreadyDone(m, err)) return;
      await this.deadLetter(m, meta, err, ref);
      return;
    }
    // Time inside the model run itself (not the wait behind this executor's other slot).
    const computeMs = r.runMs || performance.now() - t0;
    const inBytes = ref ? ref.bytes : bodyBytes;
    const nextMeta: WorkMeta = {
      ...meta,
      stage: this.stage.index + 1,
      hops: [...(meta.hops ?? []), { stage: this.stage.index, executor: this.ctx.id, computeMs, waitMs: Math.max(0, takenAt - waitStart), inBytes, outBytes: r.outBytes }],
    };
    const outRef = 'shm' in r.out ? r.out.shm : undefined;
    const subject = last ? meta.reply : workSubject(meta.run, meta.epoch, this.stage.index + 1);
    try {
      const h = natsHeaders();
      injectTrace(h, span);
      await publishWork(this.ctx.nc, this.ctx.js, subject, nextMeta as unknown as Record<string, unknown>, r.out, { headers: h, msgID: dedupId(meta.req, meta.epoch, this.stage.index + 1), ...(shm ? { pool: shm.pool } : {}) });
    } catch (e) {
      // Not stored downstream: hand it back for another try rather than lose it.
      this.ctx.log.warn('publish downstream failed; request goes back to the queue', { req: meta.req, error: String(e) });
      m.nak(1000);
      this.stats.failed++;
      return;
    }
    m.ack();
    // The input's frame goes back to its pool now. Should the ack be lost, the redelivered message finds
    // the frame gone or recycled (FRAME_GONE on a redelivery: its work is done, see deadLetter's caller).
    if (ref) releaseShmFrame(this.ctx.nc, shm?.pool, ref);
    this.ctx.log.debug('done', { req: meta.req, stage: this.stage.index, to: subject, computeMs: Math.round(computeMs * 10) / 10 });
    await releaseFrame(this.ctx.nc, m.headers);
    this.stats.served++;
    this.stats.computeMs += computeMs;
    this.stats.inBytes += inBytes;
    this.stats.outBytes += outRef?.bytes ?? r.outBytes;
    if (outRef) this.stats.sentShared++;
    else this.stats.sentInline++;
  }

  /**
   * A redelivered message whose shared-memory frame is gone was done before: frames are released only
   * after their message's downstream publish was stored and the message acked, so only a lost ack
   * brings it back. It leaves the queue quietly; the first delivery of a gone frame is a real loss.
   */
  private alreadyDone(m: PulledMsg, e: unknown): boolean {
    if (!(e instanceof CleaveError) || e.code !== ErrorCode.FRAME_GONE || m.info.deliveryCount < 2) return false;
    this.ctx.log.info('redelivered request was already served (its frame is released); dropping it', { subject: m.subject, delivery: m.info.deliveryCount });
    m.term('already served');
    return true;
  }

  /** A request this stage cannot serve: the caller gets an error result naming stage and executor,
   *  the message goes to the dead-letter stream with its reason, and it leaves the queue. */
  private async deadLetter(m: PulledMsg, meta: WorkMeta | undefined, err: CleaveError, ref?: ShmRef): Promise<void> {
    this.stats.failed++;
    const error = { code: err.code, message: err.message, stage: this.stage.index, executor: this.ctx.id };
    this.ctx.log.warn('request failed at this stage', { req: meta?.req, ...error });
    try {
      if (meta) {
        const result: WorkMeta = { ...meta, stage: this.deployment.stages.length, error };
        const h = natsHeaders();
        h.set(Header.ERROR_CODE, err.code);
        await publishWork(this.ctx.nc, this.ctx.js, meta.reply, result as unknown as Record<string, unknown>, { tensors: {} }, { headers: h, msgID: dedupId(meta.req, meta.epoch, this.deployment.stages.length) });
      }
      const h = natsHeaders();
      h.set(Header.PARK_REASON, `stage ${this.stage.index}: ${err.message}`.slice(0, 1024).replace(/[\r\n]+/g, ' '));
      h.set(Header.PARK_SUBJECT, m.subject);
      h.set(Header.PARK_ACTOR, `${Role.EXECUTOR}/${this.ctx.id}`);
      h.set(Header.ERROR_CODE, err.code);
      await this.ctx.js.publish(Subject.parked(Role.EXECUTOR), m.data, { headers: h });
      m.term(err.message.slice(0, 200));
      // Nobody will read the frame again; the parked copy keeps the meta and the reason.
      if (ref) releaseShmFrame(this.ctx.nc, this.options.shm?.pool, ref);
    } catch (e) {
      this.ctx.log.error('could not dead-letter; leaving it for redelivery', { error: String(e) });
      m.nak(1000);
    }
  }
}
