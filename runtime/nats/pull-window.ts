// The accounting behind a slot-bounded persistent pull (runtime/nats/pull.ts), kept free of I/O.
//
// A stage server works on `slots` messages at once. Every slot is either free, waiting on a pull
// request of one message the server holds for it ("outstanding"), or busy with a message ("in hand").
// All pull requests ask for exactly one message, so each ends in exactly one way: a message arrives,
// or a status (408 expired, 409 refused) says it ended without one. That keeps the count exact
// without knowing which request a status belongs to, and a replica never holds more than its slots
// (the fairness that `consume()` with refill buffers gives up).

export interface PullWindowState {
  slots: number;
  outstanding: number;
  inHand: number;
  stopped: boolean;
}

export class PullWindow {
  private outstandingPulls = 0;
  private held = 0;
  private isStopped = false;

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, got ${slots}`);
  }

  get state(): PullWindowState {
    return { slots: this.slots, outstanding: this.outstandingPulls, inHand: this.held, stopped: this.isStopped };
  }

  /** Pull requests to send now (each for one message) to keep every free slot asked for. */
  toRequest(): number {
    if (this.isStopped) return 0;
    const n = Math.max(0, this.slots - this.outstandingPulls - this.held);
    this.outstandingPulls += n;
    return n;
  }

  /**
   * A message arrived. Returns false when it must be handed back at once (the window is stopped): it
   * came on a request made before the stop.
   */
  onMessage(): boolean {
    if (this.outstandingPulls > 0) this.outstandingPulls--;
    if (this.isStopped) return false;
    this.held++;
    return true;
  }

  /** A status ended one request without a message. */
  onRequestEnded(): void {
    if (this.outstandingPulls > 0) this.outstandingPulls--;
  }

  /**
   * A message in hand is settled. Returns whether its acknowledgement should also ask for the next
   * message (JetStream's ack-next, one write instead of two); if so that request is counted.
   */
  onSettled(canAskNext: boolean): boolean {
    if (this.held > 0) this.held--;
    if (!canAskNext || this.isStopped || this.outstandingPulls + this.held >= this.slots) return false;
    this.outstandingPulls++;
    return true;
  }

  /** Requests were lost without a word (a reconnect, a server that forgot them): count none. */
  forgetRequests(): void {
    this.outstandingPulls = 0;
  }

  stop(): void {
    this.isStopped = true;
  }

  /** Stopped, nothing in hand and no request that could still bring a message. */
  get drained(): boolean {
    return this.isStopped && this.held === 0 && this.outstandingPulls === 0;
  }

  get busy(): number {
    return this.held;
  }
}
