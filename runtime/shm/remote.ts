// Reading another host's shared-memory frame over core NATS. A producer with a pool always writes what
// it sends on into it; a consumer on the same host reads the file, one on another host reads it from
// this service, which every Cleave process of the producer's host answers (one queue group per domain),
// so the frame stays readable when the process that wrote it is gone. Bytes cross the NATS server once
// (a reply), where a stored JetStream message crosses it twice and is kept in its memory meanwhile.
import { createInbox, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Header, Subject } from '../../protocols/subjects.js';
import { decodeShmBytes, readerOf, type ShmPool, type ShmRef } from './pool.js';
import { BufferPool, uninitializedBytes } from './buffers.js';
// Pieces are views of blocks read for this reply alone: the connection may write them uncopied.
import { handOver } from '../nats/handover.js';
import { gatherInto } from '../nats/large-messages.js';
import type { DecodedFrame } from '../../protocols/tensor-codec.js';

/**
 * Bytes per reply message (at most: under a server's max_payload less room for headers). Pieces were
 * 32 KiB while the client's parser regrew a message spanning its 64 KiB socket reads by doubling
 * (16-32 KiB ran at 1.0-1.4x raw core NATS then, 1-4 MiB at 0.73-0.89x); with that gone
 * (runtime/nats/large-messages.ts), an 8 MB frame fetched in 1 MiB pieces against 32 KiB, four
 * alternating process pairs of three rounds each beside raw core NATS: fetch/raw median 1.14 against
 * 0.95 (about 530 against 420 MB/s), 8 messages a frame instead of 256; with the pieces handed over
 * (runtime/nats/handover.ts), three more pairs: 1.07 against 0.94.
 */
const PIECE_BYTES = 1024 * 1024;
/** Read blocks kept for reuse by one read service (a few frames in flight). */
const READ_BLOCKS_KEPT_BYTES = 32 * 1024 * 1024;
/** Room left for headers under max_payload. */
const PIECE_HEADROOM = 64 * 1024;
/** The piece size for replies on `nc`: PIECE_BYTES, or less under a smaller max_payload. */
const pieceBytes = (nc: NatsConnection) => Math.max(4096, Math.min(PIECE_BYTES, (nc.info?.max_payload ?? PIECE_BYTES) - PIECE_HEADROOM));

interface ReadRequest { name?: unknown; offset?: unknown; length?: unknown; release?: unknown }

function errorReply(e: unknown): { data: Uint8Array; headers: ReturnType<typeof natsHeaders> } {
  const h = natsHeaders();
  const code = e instanceof CleaveError ? e.code : ErrorCode.INTERNAL;
  h.set(Header.ERROR_CODE, code);
  h.set(Header.ERROR, String((e as Error).message).slice(0, 500).replace(/[\r\n]+/g, ' '));
  return { data: new Uint8Array(0), headers: h };
}

/**
 * Answers `{ name, offset, length }` reads of this host's live frames with the bytes streamed back as
 * ceil(length / PIECE_BYTES) reply messages in order (one request per frame, not one round trip per range),
 * and `{ name, release: true }` from a remote consumer that is done with one. A read that fails part
 * way ends with an empty message carrying the error code. Two subscriptions: the host's queue group,
 * and this process's own subject for the frames its pool (or its inference worker, under the same
 * reader token) wrote, which fetches ask first: measured inside `bench pipeline`, reads spread over
 * the group went mostly to the host's idle executors, which answered slower than the writer.
 */
/** The read service of one process's pool; `unsubscribe` ends it. */
export interface ShmReadService {
  unsubscribe(): void;
  /** Bytes of read blocks written out and kept for the next reads. */
  readonly keptBlockBytes: number;
}

export function serveShmReads(nc: NatsConnection, pool: ShmPool): ShmReadService {
  // Read blocks, recycled: a block per MB served, each new, made V8 run a full collection every
  // 40-70 ms at 400 MB/s (external memory), fetches at 0.76x raw core NATS; recycled 0.85-0.87x.
  const blocks = new BufferPool(READ_BLOCKS_KEPT_BYTES);
  const callback = (err: Error | null, msg: Msg): void => {
      if (err) return;
      let req: ReadRequest;
      try {
        req = JSON.parse(new TextDecoder().decode(msg.data)) as ReadRequest;
      } catch (e) {
        if (msg.reply) {
          const r = errorReply(new CleaveError(ErrorCode.BAD_MESSAGE, `a shared-memory read must be JSON { name, offset, length } (${(e as Error).message})`));
          msg.respond(r.data, { headers: r.headers });
        }
        return;
      }
      if (req.release === true && typeof req.name === 'string') {
        pool.release({ domain: pool.domain, name: req.name, bytes: 1, id: 'release' });
        return;
      }
      if (!msg.reply) return;
      try {
        const offset = Number(req.offset), length = Number(req.length);
        if (typeof req.name !== 'string' || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) {
          throw new CleaveError(ErrorCode.BAD_MESSAGE, 'a shared-memory read needs { name, offset, length } with a positive length');
        }
        // Each block back to `blocks` once the socket has written its last piece (writes complete in
        // order); a block whose pieces went out another way is left to the collector.
        pool.readPieces(req.name, offset, length, pieceBytes(nc), (piece, endsBlock) => nc.publish(msg.reply!, handOver(piece, endsBlock ? () => blocks.give(piece) : undefined)), (n) => blocks.take(n));
      } catch (e) {
        const r = errorReply(e);
        nc.publish(msg.reply, r.data, { headers: r.headers });
      }
  };
  // This process's own frames by name (a fetch asks here first), and any frame of the host in its group.
  const own = nc.subscribe(Subject.shmReadBy(pool.domain, pool.reader), { callback });
  const group = nc.subscribe(Subject.shmRead(pool.domain), { queue: `shm-${pool.domain}`, callback });
  return {
    unsubscribe: () => {
      own.unsubscribe();
      group.unsubscribe();
    },
    get keptBlockBytes() {
      return blocks.heldBytes;
    },
  };
}

/**
 * The bytes of the frame `ref` names, read over NATS from its host's service (decode them with
 * decodeShmBytes, which checks them against the reference): one request, the bytes streamed back.
 * FRAME_GONE when that host no longer has it, NATS_UNAVAILABLE when no process of that host answers.
 * The pieces land in a subscription callback, copied into place as the parser hands them over: an
 * async iterator (requestMany) costs a queue entry and a microtask for each piece.
 */
export async function fetchShmBytes(nc: NatsConnection, ref: ShmRef, timeoutMs = 10_000, allocate?: (n: number) => Uint8Array): Promise<Uint8Array> {
  const out = allocate ? allocate(ref.bytes) : uninitializedBytes(ref.bytes);
  // The process that wrote the frame first; when it is gone (no responders), any process of its host.
  const reader = readerOf(ref.name);
  if (reader) {
    try {
      return await fetchFrom(nc, Subject.shmReadBy(ref.domain, reader), ref, timeoutMs, out);
    } catch (e) {
      if (!(e instanceof NoReader)) throw e;
    }
  }
  return fetchFrom(nc, Subject.shmRead(ref.domain), ref, timeoutMs, out);
}

/** Nobody subscribes to the writer's own read subject. */
class NoReader extends Error {}

function fetchFrom(nc: NatsConnection, subject: string, ref: ShmRef, timeoutMs: number, out: Uint8Array): Promise<Uint8Array> {
  const ownReader = subject !== Subject.shmRead(ref.domain);
  const unavailable = (why: string, cause?: unknown) =>
    new CleaveError(ErrorCode.NATS_UNAVAILABLE, `no process of host domain ${ref.domain} answers reads of its shared-memory frames (${why}); the frame's host is down`, { cause, details: { domain: ref.domain } });
  return new Promise<Uint8Array>((resolve, reject) => {
    let got = 0;
    let done = false;
    let sub: Subscription | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = (e?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sub?.unsubscribe();
      if (e) reject(e);
      else resolve(out);
    };
    const onReply = (err: Error | null, reply: Msg): void => {
      if (done) return;
      if (err) return finish(unavailable(err.message, err));
      const code = reply.headers?.get(Header.ERROR_CODE);
      if (code) {
        return finish(new CleaveError(code === ErrorCode.FRAME_GONE ? ErrorCode.FRAME_GONE : ErrorCode.INTERNAL, `reading shared-memory frame ${ref.name} from domain ${ref.domain}: ${reply.headers?.get(Header.ERROR) ?? code}`, { details: { domain: ref.domain, name: ref.name } }));
      }
      // A status reply: 503 when no process of that host serves reads (or the writer's read service is gone).
      if (reply.headers?.hasError || (reply.headers?.code ?? 0) >= 300) {
        if (ownReader && got === 0 && reply.headers?.code === 503) return finish(new NoReader());
        return finish(unavailable(reply.headers?.description || String(reply.headers?.code)));
      }
      if (got + reply.data.byteLength > ref.bytes) return finish(new CleaveError(ErrorCode.INTERNAL, `shared-memory frame ${ref.name} from domain ${ref.domain} came back longer than its reference says`));
      // A piece that spanned socket reads was gathered in place (gatherInto below); others are copied.
      const inPlace = reply.data.buffer === out.buffer && reply.data.byteOffset === out.byteOffset + got;
      if (!inPlace) out.set(reply.data, got);
      got += reply.data.byteLength;
      if (got === ref.bytes) finish();
    };
    try {
      const inbox = createInbox();
      sub = nc.subscribe(inbox, { callback: onReply });
      // Each piece straight into its place in `out` (pieces come in order, each after the one before
      // was handled); nothing more once this fetch is over, as `out` may then be reused.
      const sink = Object.assign((size: number) => (!done && got + size <= ref.bytes ? out.subarray(got, got + size) : undefined), { live: () => !done });
      gatherInto(sub, sink);
      timer = setTimeout(() => {
        finish(got === 0
          ? unavailable(`no reply in ${timeoutMs} ms`)
          : new CleaveError(ErrorCode.FRAME_GONE, `shared-memory frame ${ref.name} in domain ${ref.domain} came back shorter than its reference says (${got} of ${ref.bytes} bytes); it was recycled or its host went away mid-read`, { details: { domain: ref.domain, name: ref.name } }));
      }, timeoutMs);
      nc.publish(subject, JSON.stringify({ name: ref.name, offset: 0, length: ref.bytes }), { reply: inbox });
    } catch (e) {
      finish(unavailable((e as Error).message, e));
    }
  });
}

/** The frame `ref` names, fetched from its host and decoded (see fetchShmBytes). */
export async function fetchShmFrame(nc: NatsConnection, ref: ShmRef, timeoutMs = 10_000, allocate?: (n: number) => Uint8Array): Promise<DecodedFrame> {
  return decodeShmBytes(ref, await fetchShmBytes(nc, ref, timeoutMs, allocate));
}

/** Tells the frame's host that a consumer elsewhere is done with it (best effort: the host sweeps). */
export function releaseRemoteShm(nc: NatsConnection, ref: ShmRef): void {
  try {
    nc.publish(Subject.shmRead(ref.domain), JSON.stringify({ name: ref.name, release: true }));
  } catch {
    // closed connection: the host's sweep removes the file
  }
}
