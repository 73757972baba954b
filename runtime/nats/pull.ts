// A persistent, slot-bounded pull on one JetStream durable consumer, for stage servers.
//
// `consumer.next()` per message costs a SUB, a pull request and an UNSUB: with the publish downstream
// and the ack, five socket writes per request, and on these VMs a small write to the loopback server
// costs 0.1-0.3 ms of the writer's CPU (it wakes the server on the other core). Here one subscription
// lives as long as the puller, each free slot has exactly one pull request of one message out
// (runtime/nats/pull-window.ts keeps the count), and a successful ack asks for the next message in the
// same write (JetStream's ack-next, `+NXT`): two writes per request. Unlike `consume()`, whose refill
// runs ahead of the handlers, a replica never holds more messages than its slots, so its siblings
// get the rest.
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { PullWindow } from './pull-window.js';

export interface PulledInfo {
  stream: string;
  consumer: string;
  deliveryCount: number;
  redelivered: boolean;
  streamSequence: number;
  deliverySequence: number;
  timestampNanos: number;
  pending: number;
}

/** The parts of a JetStream message a handler uses; settle it with exactly one of ack, nak, term. */
export interface PulledMsg {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly info: PulledInfo;
  ack(): void;
  nak(delayMs?: number): void;
  term(reason?: string): void;
  /** Resets the ack timer (still working on it). */
  working(): void;
}

export interface SlotPullerOptions {
  /** Messages worked on at once. */
  slots: number;
  /** How long one pull request waits on the server before it ends with a 408 and is sent again. */
  expiresMs?: number;
  /** Works on one message; must settle it (or leave it for redelivery by not settling). */
  onMessage: (m: PulledMsg) => Promise<void>;
  /** A pull was refused by the server (409: consumer deleted, leadership change...). */
  onRefused?: (description: string) => void;
}

const ACK = new TextEncoder().encode('+ACK');
const NAK = new TextEncoder().encode('-NAK');
const WPI = new TextEncoder().encode('+WPI');
const TERM = new TextEncoder().encode('+TERM');
/** Pause before pulling again after the server refused a pull. */
const REFUSED_BACKOFF_MS = 500;

/** `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`, or the 12-token form with domain and account hash. */
export function parseAckSubject(reply: string): PulledInfo {
  const t = reply.split('.');
  if (t.length === 9) t.splice(2, 0, '_', '');
  if (t.length < 11 || t[0] !== '$JS' || t[1] !== 'ACK') throw new Error(`'${reply}' is not a JetStream ack subject`);
  const deliveryCount = Number.parseInt(t[6]!, 10);
  return {
    stream: t[4]!,
    consumer: t[5]!,
    deliveryCount,
    redelivered: deliveryCount > 1,
    streamSequence: Number.parseInt(t[7]!, 10),
    deliverySequence: Number.parseInt(t[8]!, 10),
    timestampNanos: Number.parseInt(t[9]!, 10),
    pending: Number.parseInt(t[10]!, 10),
  };
}

/**
 * Whether the connected server terminates a message on `+TERM <reason>`. nats-server 2.9.10 (the one
 * bootstrapped here) does not: it ignores the whole ack and redelivers; only a plain `+TERM` works.
 * Reasons are sent to servers from 2.11 on.
 */
export function termTakesReason(nc: Pick<NatsConnection, 'info'>): boolean {
  const [major = 0, minor = 0] = (nc.info?.version ?? '0').split('.').map((x) => Number.parseInt(x, 10));
  return major > 2 || (major === 2 && minor >= 11);
}

export class SlotPuller {
  private readonly window: PullWindow;
  private readonly inbox = createInbox();
  private readonly nextSubject: string;
  private readonly pullBody: Uint8Array;
  private readonly ackNextBody: Uint8Array;
  private readonly expiresMs: number;
  private sub?: Subscription;
  private watchdog?: ReturnType<typeof setInterval>;
  private retry?: ReturnType<typeof setTimeout>;
  private lastHeard = 0;
  private handlers = new Set<Promise<void>>();
  private onDrained?: () => void;
  /** Requests sent and messages received, for tests and stats. */
  readonly counts = { pulls: 0, ackNexts: 0, messages: 0, statuses: 0, returned: 0 };

  constructor(
    private readonly nc: NatsConnection,
    stream: string,
    consumer: string,
    private readonly options: SlotPullerOptions,
  ) {
    this.window = new PullWindow(options.slots);
    this.expiresMs = options.expiresMs ?? 2000;
    this.nextSubject = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`;
    const body = JSON.stringify({ batch: 1, expires: this.expiresMs * 1_000_000 });
    this.pullBody = new TextEncoder().encode(body);
    this.ackNextBody = new TextEncoder().encode(`+NXT ${body}`);
  }

  start(): void {
    if (this.sub) return;
    this.sub = this.nc.subscribe(this.inbox, { callback: (_err, msg) => this.receive(msg) });
    this.lastHeard = Date.now();
    this.topUp();
    // Pull requests die silently with a reconnect (the server forgets them); idle ones end every
    // expiresMs with a 408, so a long silence means none is left.
    this.watchdog = setInterval(() => {
      if (this.window.state.outstanding > 0 && Date.now() - this.lastHeard > 2 * this.expiresMs + 1000) {
        this.window.forgetRequests();
        this.lastHeard = Date.now();
        this.topUp();
      }
    }, this.expiresMs);
  }

  /** Messages in hand. */
  get busy(): number {
    return this.window.busy;
  }

  /**
   * Stops asking for messages and resolves once every message in hand is settled and every request
   * still out has ended (a message that arrives on one goes straight back, nak'ed, so a sibling gets
   * it without waiting for its ack timer). Bounded by one request's expiry.
   */
  async drain(): Promise<void> {
    this.window.stop();
    if (this.retry) clearTimeout(this.retry);
    await Promise.allSettled([...this.handlers]);
    if (!this.window.drained && this.sub) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.expiresMs + 1000);
        this.onDrained = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    if (this.watchdog) clearInterval(this.watchdog);
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private topUp(): void {
    if (this.retry) return;
    const n = this.window.toRequest();
    for (let i = 0; i < n; i++) {
      this.nc.publish(this.nextSubject, this.pullBody, { reply: this.inbox });
      this.counts.pulls++;
    }
  }

  private checkDrained(): void {
    if (this.window.drained) this.onDrained?.();
  }

  private receive(msg: Msg): void {
    this.lastHeard = Date.now();
    const code = msg.headers?.code ?? 0;
    if (!msg.reply || code >= 100) {
      this.counts.statuses++;
      if (code === 100) return; // idle heartbeat
      this.window.onRequestEnded();
      if (code === 409 && !this.window.state.stopped) {
        this.options.onRefused?.(msg.headers?.description ?? 'refused');
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.topUp();
        }, REFUSED_BACKOFF_MS);
        return;
      }
      this.topUp();
      this.checkDrained();
      return;
    }
    this.counts.messages++;
    if (!this.window.onMessage()) {
      msg.respond(NAK);
      this.counts.returned++;
      this.checkDrained();
      return;
    }
    let settled = false;
    const settle = (body: Uint8Array, askNext: boolean): void => {
      if (settled) return;
      settled = true;
      if (this.window.onSettled(askNext)) {
        msg.respond(this.ackNextBody, { reply: this.inbox });
        this.counts.ackNexts++;
      } else {
        msg.respond(body);
        this.topUp();
      }
    };
    let info: PulledInfo;
    try {
      info = parseAckSubject(msg.reply);
    } catch {
      settle(NAK, false);
      return;
    }
    const m: PulledMsg = {
      subject: msg.subject,
      data: msg.data,
      headers: msg.headers,
      info,
      ack: () => settle(ACK, true),
      nak: (delayMs?: number) => settle(delayMs ? new TextEncoder().encode(`-NAK ${JSON.stringify({ delay: delayMs * 1_000_000 })}`) : NAK, false),
      term: (reason = '') => settle(reason && termTakesReason(this.nc) ? new TextEncoder().encode(`+TERM ${reason}`) : TERM, false),
      working: () => {
        if (!settled) msg.respond(WPI);
      },
    };
    const h = this.options
      .onMessage(m)
      .catch(() => undefined)
      .finally(() => {
        // A handler that left its message unsettled leaves it for redelivery; its slot is free again.
        if (!settled) {
          settled = true;
          this.window.onSettled(false);
          this.topUp();
        }
        this.handlers.delete(h);
        this.checkDrained();
      });
    this.handlers.add(h);
  }
}
