// Receiving large NATS messages without regrowing a buffer for each one.
//
// nats.js (@nats-io/nats-core 3.x) parses the socket's reads (64 KiB each from Node) in place; a
// message that spans reads is gathered in a DenoBuffer started as a copy of its first piece and grown
// by doubling: a 1 MB frame cost four allocations and ~1.7 MB of copying before it was whole, and the
// garbage collections those allocations drive. The parser knows the message's size by then (`ma.size`,
// headers included), so here the buffer is replaced, right after the parser made it, by one of exactly
// that size holding the same first piece: the rest is copied in once. What the parser hands on is the
// same bytes, now a view at offset 0 of a buffer of their own.
//
// Measured in one process (a 1 MB frame's JetStream hop, publisher and consumer, 6 x 256 MB, three
// alternating pairs): 3.06 / 3.12 / 3.28 ms of CPU per MB without, 2.71 / 2.64 / 2.34 with.
//
// A subscription can take its messages straight into memory of its own (`gatherInto`): a message
// without headers that spans reads is then gathered into the view its sink returns, where it would have
// been gathered into a new buffer and then copied to its destination. A shared-memory fetch
// (runtime/shm/remote.ts) lands each piece in the frame it assembles this way.
//
// This reaches into the parser's fields (`state`, `msgBuf`, `ma`) and DenoBuffer's (`_buf`, `_off`),
// exported by `@nats-io/nats-core/internal`: it checks they are there, as they are in 3.x, and leaves
// the parser alone otherwise (`largeMessagePatch()` says which). CLEAVE_NATS_PATCH=0 turns it off.
import { DenoBuffer, Parser, State } from '@nats-io/nats-core/internal';
import type { Subscription } from '@nats-io/nats-core';

interface GatherBuffer {
  _buf: Uint8Array;
  _off: number;
  readonly length: number;
  readonly capacity: number;
  bytes(o: { copy: boolean }): Uint8Array;
}
interface ParserFields {
  state: number;
  msgBuf?: GatherBuffer | SinkGather;
  ma: { size: number; sid: number; hdr: number };
  dispatcher?: { subscriptions?: { get(sid: number): unknown } };
}

const SINK = Symbol('cleave.gatherInto');

/**
 * Where a message of `size` bytes (no headers) goes: a view of exactly `size` bytes, or undefined for
 * a buffer of its own. `live()` false stops writes to views already handed out (the subscriber gave up
 * on them, e.g. a timed-out fetch whose buffer is reused): the rest of such a message is dropped.
 */
export interface Sink {
  (size: number): Uint8Array | undefined;
  live?: () => boolean;
}

/**
 * Messages of `sub` without headers that span socket reads are gathered straight into `sink(size)`.
 * Those that arrive within one read are handed on as views into it, as usual: the subscriber copies
 * what is not already in place (compare `data.buffer` and `data.byteOffset`).
 */
export function gatherInto(sub: Subscription, sink: Sink): void {
  (sub as unknown as Record<symbol, Sink>)[SINK] = sink;
}

/** The parser's gather buffer, over a sink's view: the parser uses length, write, writeByte, bytes. */
class SinkGather {
  constructor(
    private readonly view: Uint8Array,
    private len: number,
    private readonly live: () => boolean,
  ) {}

  get length(): number {
    return this.len;
  }

  get capacity(): number {
    return this.view.byteLength;
  }

  write(p: Uint8Array): number {
    const n = Math.min(p.byteLength, this.view.byteLength - this.len);
    if (this.live()) this.view.set(n === p.byteLength ? p : p.subarray(0, n), this.len);
    this.len += n;
    return n;
  }

  writeByte(b: number): void {
    if (this.len >= this.view.byteLength) return;
    if (this.live()) this.view[this.len] = b;
    this.len++;
  }

  bytes(): Uint8Array {
    return this.view.subarray(0, this.len);
  }
}

const always = () => true;

let status: 'on' | 'off' | 'unsupported' = 'off';

/** Whether the patch is in place ('on'), turned off, or not applicable to this nats.js. */
export function largeMessagePatch(): 'on' | 'off' | 'unsupported' {
  return status;
}

function applicable(): boolean {
  const probe = new DenoBuffer(new Uint8Array(4)) as unknown as GatherBuffer;
  return (
    typeof Parser?.prototype?.parse === 'function' &&
    typeof State?.MSG_PAYLOAD === 'number' &&
    probe._buf instanceof Uint8Array &&
    probe._off === 0 &&
    probe.length === 4 &&
    probe.capacity === 4 &&
    typeof probe.bytes === 'function'
  );
}

function install(): void {
  if (process.env.CLEAVE_NATS_PATCH === '0') return;
  if (!applicable()) {
    status = 'unsupported';
    return;
  }
  const parse = Parser.prototype.parse;
  const MSG_PAYLOAD = State.MSG_PAYLOAD;
  Parser.prototype.parse = function (this: Parser & ParserFields, buf: Uint8Array): void {
    parse.call(this, buf);
    const gather = this.msgBuf;
    // A gather begins: the parser's DenoBuffer over the first read's tail (a sized one stays as it is).
    if (!(gather instanceof DenoBuffer) || this.state !== MSG_PAYLOAD || gather.capacity >= this.ma.size) return;
    const have = gather.length;
    const sink = this.ma.hdr < 0 ? ((this.dispatcher?.subscriptions?.get(this.ma.sid) as Record<symbol, Sink> | undefined)?.[SINK]) : undefined;
    const into = sink && (sink.live?.() ?? true) ? sink(this.ma.size) : undefined;
    if (into && into.byteLength === this.ma.size) {
      into.set(gather.bytes({ copy: false }));
      (this as unknown as ParserFields).msgBuf = new SinkGather(into, have, sink!.live ?? always);
      return;
    }
    const whole = new Uint8Array(new ArrayBuffer(this.ma.size), 0, have);
    whole.set(gather.bytes({ copy: false }));
    // DenoBuffer grows by reslicing its ArrayBuffer from offset 0 while there is room: no more copies.
    gather._buf = whole;
    gather._off = 0;
  };
  status = 'on';
}

install();
