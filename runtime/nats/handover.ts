// Sending large NATS messages without copying them into one buffer first.
//
// nats.js (@nats-io/nats-core 3.x) queues a publish as its pieces (protocol line, headers, payload,
// CRLF) and, when it flushes, packs everything queued into one new buffer before the socket write: a
// 1 MB frame is allocated and copied once more on its way out, and the collections those allocations
// drive follow. Copying is what lets a caller reuse its payload the moment publish() returns, so it
// cannot simply go; what goes is the copy of buffers whose owner says it will never touch them again.
// `handOver(bytes)` says so (Cleave's encoded frames: made for the one publish and dropped after it);
// a flush that holds a handed-over buffer of HANDOVER_MIN_BYTES or more writes the queue as it is,
// the small pieces between large ones joined, on a corked socket (one writev), instead of packing it.
// A flush without one is nats.js's own.
//
// Measured in one process (`cleave bench hop`: a 1 MB frame's JetStream hop, publisher and consumer,
// 256 MB a round, twelve alternating pairs, `setHandOver` between them): median 570 MB/s and 1.49 ms of the process's CPU per
// MB packed, 595 MB/s and 1.44 ms handed over; 9 of the 12 pairs faster handed over. The profile shows
// why it is small: the pack was ~0.06 ms per MB, against ~0.3 for the socket writes themselves; a
// later six-round run: 617 against 627 MB/s, 1.40 against 1.65 ms CPU per MB (4 of 6 rounds faster).
//
// This reaches into ProtocolHandler's `outbound` (a DataBuffer: `buffers`, `byteLength`, `reset`),
// `infoReceived`, `connected` and its transport's `socket`, exported by `@nats-io/nats-core/internal`;
// it checks them when loaded and otherwise leaves nats.js alone (`handOverPatch()` says which). CLEAVE_NATS_PATCH=0 turns it off with the receive side's patch.
import { DataBuffer, ProtocolHandler } from '@nats-io/nats-core/internal';

/** Handed-over buffers smaller than this are packed as before: writing them apart gains nothing. */
export const HANDOVER_MIN_BYTES = 64 * 1024;

const handedOver = new WeakSet<ArrayBufferView>();
/** What to call once a handed-over buffer is in the kernel's hands (see handOver's `onWritten`). */
const whenWritten = new WeakMap<ArrayBufferView, () => void>();
/** Handed-over buffers not yet written (an upper bound: one whose publish threw stays counted). */
let pending = 0;
let enabled = true;

/** Turns handing over on or off at run time, for benchmarks that measure both side by side. */
export function setHandOver(on: boolean): void {
  enabled = on;
}

/**
 * Gives `bytes` to the next NATS publish that carries it: the caller, and anybody it shares the
 * memory with, will not write to it again. The connection then writes it to the socket as it is.
 * `onWritten` is called once the socket has written it (or the connection was closed without
 * writing it), when the memory may be used again: it lets a sender recycle its buffers instead of
 * allocating one per message (every allocation of MBs counts as external memory to V8, and a
 * producer that allocated 400 MB/s ran a full collection every 40-70 ms). It is never called when
 * the buffer was not handed over (smaller than HANDOVER_MIN_BYTES, handing over off, this nats.js
 * not patched) or went out some other way (nats.js copied it: a flush while not connected): then
 * nothing says when the connection is done with it, and the buffer is left to the collector.
 */
export function handOver<T extends Uint8Array>(bytes: T, onWritten?: () => void): T {
  if (enabled && status === 'on' && bytes.byteLength >= HANDOVER_MIN_BYTES && !handedOver.has(bytes)) {
    handedOver.add(bytes);
    if (onWritten) whenWritten.set(bytes, onWritten);
    pending++;
  }
  return bytes;
}

interface Outbound {
  buffers: Uint8Array[];
  byteLength: number;
  reset(): void;
  size(): number;
}
interface Handler {
  infoReceived: boolean;
  connected: boolean;
  outbound: Outbound;
  transport: { send(frame: Uint8Array): void; _send?(frame: Uint8Array): Promise<void>; socket?: { cork(): void; uncork(): void } };
}
/** ProtocolHandler's prototype as this module sees it (`flushPending` is private in its typings). */
const proto = ProtocolHandler?.prototype as unknown as { flushPending?: (this: Handler) => void } | undefined;

let status: 'on' | 'off' | 'unsupported' = 'off';

/** Whether handed-over buffers are written as they are ('on'), turned off, or not applicable to this nats.js. */
export function handOverPatch(): 'on' | 'off' | 'unsupported' {
  return status;
}

function applicable(): boolean {
  const probe = new DataBuffer() as unknown as Outbound;
  return typeof proto?.flushPending === 'function' && Array.isArray(probe.buffers) && probe.byteLength === 0 && typeof probe.reset === 'function' && typeof probe.size === 'function';
}

function install(): void {
  if (process.env.CLEAVE_NATS_PATCH === '0') return;
  if (!applicable()) {
    status = 'unsupported';
    return;
  }
  const flushPending = proto!.flushPending!;
  proto!.flushPending = function (this: Handler): void {
    // Flushes of small messages only (pulls, acks, PubAcks) go straight to nats.js.
    if (pending === 0) return flushPending.call(this);
    const ob = this.outbound;
    const socket = this.transport?.socket;
    if (!this.infoReceived || !this.connected || !ob || !Array.isArray(ob.buffers) || typeof socket?.cork !== 'function') return flushPending.call(this);
    if (!ob.buffers.some((b) => handedOver.has(b))) return flushPending.call(this);
    const queued = ob.buffers.slice();
    ob.reset();
    socket.cork();
    try {
      let small: Uint8Array[] = [];
      const sendSmall = () => {
        if (!small.length) return;
        this.transport.send(small.length === 1 ? small[0]! : DataBuffer.concat(...small));
        small = [];
      };
      for (const b of queued) {
        if (handedOver.has(b)) {
          handedOver.delete(b);
          pending = Math.max(0, pending - 1);
          sendSmall();
          const written = whenWritten.get(b);
          whenWritten.delete(b);
          // transport-node's _send resolves in the socket write's callback (and at once when closed).
          if (written && typeof this.transport._send === 'function') this.transport._send(b).then(written, () => {});
          else this.transport.send(b);
        } else small.push(b);
      }
      sendSmall();
    } finally {
      socket.uncork();
    }
  };
  status = 'on';
}

install();
