// The actor runtime: one role in one process. Connects, registers and heartbeats in KV, answers control
// requests, consumes its role's durable inbox, parks what it cannot handle, and drains on SIGTERM/SIGINT.
import { hostname } from 'node:os';
import { termTakesReason } from '../nats/pull.js';
import { jetstream, jetstreamManager, AckPolicy, type JetStreamClient, type JetStreamManager, type JsMsg, type ConsumerMessages } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { CleaveError, ErrorCode, asCleaveError } from '../../protocols/errors.js';
import { Header, Role, Stream, Subject, HEARTBEAT_MS } from '../../protocols/subjects.js';
import { ControlType, type ActorRecord, type ControlRequest, type PingResult } from '../../protocols/messages.js';
import { encodeFrame, decodeFrame, type Tensor } from '../../protocols/tensor-codec.js';
import { connectNats } from '../nats/connect.js';
import { actorsBucket, ensureTopology } from '../nats/topology.js';
import { consumerSpan, injectTrace, initTracing, producerSpan, shutdownTracing } from '../tracing.js';
import { createLogger, type Logger } from '../log.js';
import { withTimeout } from '../timeout.js';

export const VERSION = '0.1.0';

export interface ActorContext {
  readonly role: Role;
  readonly id: string;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly log: Logger;
  /** Aborted when the actor starts to stop. */
  readonly signal: AbortSignal;
  setState(state: string): void;
  setCapabilities(capabilities: Record<string, unknown>): void;
  publishEvent(kind: string, fields?: Record<string, unknown>): Promise<void>;
}

export interface InboxMessage {
  subject: string;
  type: string;
  meta: Record<string, unknown>;
  tensors: Record<string, Tensor>;
  deliveryCount: number;
  headers: MsgHdrs | undefined;
}

export type ControlHandler = (req: ControlRequest, ctx: ActorContext) => Promise<unknown> | unknown;
export type InboxHandler = (msg: InboxMessage, ctx: ActorContext) => Promise<void>;

export interface ActorBehaviour {
  /** Control request handlers by `type`; `ping` and `status` are built in. */
  control?: Record<string, ControlHandler>;
  /** Durable inbox handlers by message type (`cleave.inbox.<role>.<type>`). */
  inbox?: Record<string, InboxHandler>;
  /** Called once connected and registered. */
  start?(ctx: ActorContext): Promise<void>;
  /** Called on drain, after the inbox stopped taking messages and in-flight ones finished. */
  stop?(ctx: ActorContext): Promise<void>;
}

export type ActorFactory = (ctx: ActorContext) => ActorBehaviour | Promise<ActorBehaviour>;

export interface ActorHostOptions {
  role: Role;
  id: string;
  servers?: string[];
  /** Deliveries of an inbox message before it is parked. */
  maxDeliver?: number;
  /** How long a drain waits for in-flight inbox handlers. */
  drainTimeoutMs?: number;
  /** Install SIGTERM/SIGINT handlers that drain and exit (true for `cleave actor`). */
  handleSignals?: boolean;
}

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export class ActorHost implements ActorContext {
  readonly role: Role;
  readonly id: string;
  readonly log: Logger;
  nc!: NatsConnection;
  js!: JetStreamClient;
  jsm!: JetStreamManager;
  private kv!: KV;
  private readonly abort = new AbortController();
  private behaviour: ActorBehaviour = {};
  private state = 'starting';
  private capabilities: Record<string, unknown> = {};
  private readonly startedAt = Date.now();
  private heartbeat: NodeJS.Timeout | undefined;
  private subs: Subscription[] = [];
  private inboxMessages: ConsumerMessages | undefined;
  private inboxLoop: Promise<void> | undefined;
  private inFlight = new Set<Promise<void>>();
  private stopping: Promise<void> | undefined;

  private constructor(private readonly options: ActorHostOptions) {
    if (!ID_PATTERN.test(options.id)) {
      throw new CleaveError(ErrorCode.BAD_ARGUMENT, `actor id '${options.id}' is not valid: use 1-64 letters, digits, '_' or '-'`);
    }
    this.role = options.role;
    this.id = options.id;
    this.log = createLogger(`${options.role}/${options.id}`);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  static async start(factory: ActorFactory, options: ActorHostOptions): Promise<ActorHost> {
    const host = new ActorHost(options);
    initTracing(`cleave-${options.role}`, { 'service.instance.id': options.id });
    host.nc = await connectNats(options.servers, `${options.role}/${options.id}`);
    host.js = jetstream(host.nc);
    host.jsm = await jetstreamManager(host.nc);
    await ensureTopology(host.nc, host.jsm);
    host.kv = await actorsBucket(host.nc);
    host.behaviour = await factory(host);
    if (host.state === 'starting') host.state = 'running';
    host.listenControl();
    await host.register();
    host.heartbeat = setInterval(() => void host.register().catch((e) => host.log.warn('heartbeat failed', { error: String(e) })), HEARTBEAT_MS);
    host.heartbeat.unref();
    if (host.behaviour.inbox && Object.keys(host.behaviour.inbox).length > 0) await host.consumeInbox();
    await host.behaviour.start?.(host);
    if (options.handleSignals) host.installSignalHandlers();
    await host.publishEvent('started', { pid: process.pid, host: hostname() });
    host.log.info('started', { pid: process.pid });
    return host;
  }

  setState(state: string): void {
    if (state === this.state) return;
    this.state = state;
    if (this.kv) void this.register().catch(() => {});
  }

  getState(): string {
    return this.state;
  }

  setCapabilities(capabilities: Record<string, unknown>): void {
    this.capabilities = { ...this.capabilities, ...capabilities };
    if (this.kv) void this.register().catch(() => {});
  }

  async publishEvent(kind: string, fields: Record<string, unknown> = {}): Promise<void> {
    const subject = Subject.event(this.role, kind);
    await producerSpan(subject, async (span) => {
      const h = natsHeaders();
      injectTrace(h, span);
      await this.js.publish(subject, encodeFrame({ tensors: {}, meta: { type: kind, role: this.role, actor: this.id, at: Date.now(), ...fields } }), { headers: h });
    });
  }

  private record(): ActorRecord {
    return {
      role: this.role,
      id: this.id,
      host: hostname(),
      pid: process.pid,
      state: this.state,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      version: VERSION,
      capabilities: this.capabilities,
    };
  }

  private async register(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.kv.put(`${this.role}.${this.id}`, JSON.stringify(this.record()));
  }

  // ---- control (core request/reply) ----

  private listenControl(): void {
    const handle = (msg: Msg) => void this.answerControl(msg);
    this.subs.push(this.nc.subscribe(Subject.control(this.role, this.id), { callback: (_e, m) => handle(m) }));
    this.subs.push(this.nc.subscribe(Subject.controlAny(this.role), { queue: this.role, callback: (_e, m) => handle(m) }));
  }

  private async answerControl(msg: Msg): Promise<void> {
    await consumerSpan(msg.subject, msg.headers, async () => {
      try {
        let req: ControlRequest;
        try {
          const meta = decodeFrame(msg.data).meta as Record<string, unknown> | undefined;
          if (!meta || typeof meta.type !== 'string') throw new CleaveError(ErrorCode.BAD_MESSAGE, 'control request has no `type`: send { type: "ping" } or another request type');
          req = meta as ControlRequest;
        } catch (e) {
          throw isCodec(e) ? new CleaveError(ErrorCode.BAD_MESSAGE, `control request is not a Cleave frame: ${(e as Error).message}`, { cause: e }) : e;
        }
        const result = await this.runControl(req);
        if (msg.reply) msg.respond(encodeFrame({ tensors: {}, meta: { ok: true, result } }));
      } catch (e) {
        const err = asCleaveError(e);
        this.log.warn('control request failed', { subject: msg.subject, code: err.code, error: err.message });
        if (msg.reply) {
          const h = natsHeaders();
          h.set(Header.ERROR_CODE, err.code);
          h.set(Header.ERROR, err.message.slice(0, 512).replace(/[\r\n]+/g, ' '));
          msg.respond(encodeFrame({ tensors: {}, meta: { ok: false, error: err.toWire() } }), { headers: h });
        }
      }
    }).catch(() => {});
  }

  private async runControl(req: ControlRequest): Promise<unknown> {
    const custom = this.behaviour.control?.[req.type];
    if (custom) return custom(req, this);
    if (req.type === ControlType.PING) {
      const r: PingResult = { role: this.role, id: this.id, pid: process.pid, host: hostname(), state: this.state, uptimeMs: Date.now() - this.startedAt };
      return r;
    }
    if (req.type === ControlType.STATUS) return this.record();
    const known = [ControlType.PING, ControlType.STATUS, ...Object.keys(this.behaviour.control ?? {})];
    throw new CleaveError(ErrorCode.UNKNOWN_CONTROL, `${this.role} does not answer '${req.type}'; it answers: ${known.join(', ')}`);
  }

  // ---- durable inbox (JetStream work queue) ----

  private async consumeInbox(): Promise<void> {
    const durable = `inbox-${this.role}`;
    const cfg = {
      durable_name: durable,
      filter_subject: Subject.inboxFilter(this.role),
      ack_policy: AckPolicy.Explicit,
      max_deliver: this.options.maxDeliver ?? 5,
      ack_wait: 30_000_000_000,
      max_ack_pending: 64,
    };
    try {
      await this.jsm.consumers.add(Stream.INBOX, cfg);
    } catch (e) {
      await this.jsm.consumers.info(Stream.INBOX, durable).catch(() => {
        throw e;
      });
    }
    const consumer = await this.js.consumers.get(Stream.INBOX, durable);
    // Small windows: large pull buffers collapse throughput on MB-sized messages.
    this.inboxMessages = await consumer.consume({ max_messages: 4 });
    const messages = this.inboxMessages;
    this.inboxLoop = (async () => {
      for await (const m of messages) {
        if (this.abort.signal.aborted) {
          m.nak();
          continue;
        }
        const p = this.handleInbox(m).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
        await p;
      }
    })().catch((e) => this.log.error('inbox loop ended', { error: String(e) }));
  }

  private async handleInbox(m: JsMsg): Promise<void> {
    await consumerSpan(m.subject, m.headers, async (span) => {
      let msg: InboxMessage;
      try {
        const frame = decodeFrame(m.data);
        const type = m.subject.split('.').slice(3).join('.');
        msg = { subject: m.subject, type, meta: (frame.meta ?? {}) as Record<string, unknown>, tensors: frame.tensors, deliveryCount: m.info.deliveryCount, headers: m.headers };
      } catch (e) {
        await this.park(m, asCleaveError(e).code === ErrorCode.INTERNAL ? ErrorCode.BAD_MESSAGE : asCleaveError(e).code, `malformed message: ${(e as Error).message}`);
        return;
      }
      span.setAttribute('cleave.message.type', msg.type);
      const handler = this.behaviour.inbox?.[msg.type];
      if (!handler) {
        await this.park(m, ErrorCode.UNKNOWN_MESSAGE, `${this.role} has no handler for '${msg.type}'; it handles: ${Object.keys(this.behaviour.inbox ?? {}).join(', ')}`);
        return;
      }
      try {
        await handler(msg, this);
        m.ack();
      } catch (e) {
        const err = asCleaveError(e);
        const max = this.options.maxDeliver ?? 5;
        if (m.info.deliveryCount >= max) {
          await this.park(m, err.code, `failed ${m.info.deliveryCount} times, last: ${err.message}`);
        } else {
          this.log.warn('inbox handler failed; will retry', { type: msg.type, delivery: m.info.deliveryCount, code: err.code, error: err.message });
          m.nak(Math.min(30_000, 250 * 2 ** m.info.deliveryCount));
        }
        throw e;
      }
    }).catch(() => {});
  }

  /** Moves a message an actor cannot handle to CLEAVE_PARKED with its reason, then terminates it. */
  private async park(m: JsMsg, code: string, reason: string): Promise<void> {
    this.log.warn('parked message', { subject: m.subject, code, reason });
    try {
      const h = natsHeaders();
      h.set(Header.PARK_REASON, reason.slice(0, 1024).replace(/[\r\n]+/g, ' '));
      h.set(Header.PARK_SUBJECT, m.subject);
      h.set(Header.PARK_ACTOR, `${this.role}/${this.id}`);
      h.set(Header.ERROR_CODE, code);
      await this.js.publish(Subject.parked(this.role), m.data, { headers: h });
      await this.publishEvent('parked', { subject: m.subject, code, reason });
      // The reason travels with the parked copy; an old server ignores a term that carries one.
      if (termTakesReason(this.nc)) m.term(reason.slice(0, 200));
      else m.term();
    } catch (e) {
      // Could not park: leave it to redelivery rather than lose it.
      this.log.error('could not park message; it will be redelivered', { error: String(e) });
      m.nak(1000);
    }
  }

  // ---- shutdown ----

  private installSignalHandlers(): void {
    const onSignal = (sig: string) => {
      this.log.info(`${sig}: draining`);
      void this.stop().then(
        () => process.exit(0),
        (e) => {
          this.log.error('drain failed', { error: String(e) });
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  }

  /** Drains: stops taking work, finishes what is in flight, deregisters, and closes the connection. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.abort.abort();
    this.setState('draining');
    await this.inboxMessages?.close().catch(() => {});
    const deadline = this.options.drainTimeoutMs ?? 30_000;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, deadline).unref())]);
    await this.inboxLoop;
    await this.behaviour.stop?.(this).catch((e) => this.log.warn('stop hook failed', { error: String(e) }));
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const s of this.subs) s.unsubscribe();
    // Each network step is bounded: a drain must end even when the server is already gone.
    await withTimeout(this.publishEvent('stopped', { pid: process.pid }), 2000, 'the stopped event').catch(() => {});
    await withTimeout(this.kv.delete(`${this.role}.${this.id}`), 2000, 'deregistering').catch(() => {});
    await withTimeout(this.nc.drain(), 5000, 'draining the connection').catch(() => this.nc.close().catch(() => {}));
    await shutdownTracing();
    this.log.info('stopped');
  }
}

function isCodec(e: unknown): boolean {
  return e instanceof CleaveError && e.code.startsWith('CODEC_');
}
