// Reading another host's shared-memory frame over core NATS. A producer with a pool always writes what
// it sends on into it; a consumer on the same host reads the file, one on another host reads it from
// this service, which every Cleave process of the producer's host answers (one queue group per domain),
// so the frame stays readable when the process that wrote it is gone. Bytes cross the NATS server once
// (a reply), where a stored JetStream message crosses it twice and is kept in its memory meanwhile.
import { headers as natsHeaders, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Header, Subject } from '../../protocols/subjects.js';
import { decodeShmBytes, type ShmPool, type ShmRef } from './pool.js';
import { uninitializedBytes } from './buffers.js';
import { windowed } from '../windowed.js';
import type { DecodedFrame } from '../../protocols/tensor-codec.js';

/** Bytes per read reply: well under max_payload, large enough to run near NATS speed. */
const RANGE_BYTES = 4 * 1024 * 1024;
/** Range reads in flight at once. */
const WINDOW = 3;

/**
 * Answers `{ name, offset, length }` reads of this host's live frames, and `{ name, release: true }`
 * from a remote consumer that is done with one.
 */
export function serveShmReads(nc: NatsConnection, pool: ShmPool): Subscription {
  return nc.subscribe(Subject.shmRead(pool.domain), {
    queue: `shm-${pool.domain}`,
    callback: (err, msg) => {
      if (err) return;
      try {
        const req = JSON.parse(new TextDecoder().decode(msg.data)) as { name?: unknown; offset?: unknown; length?: unknown; release?: unknown };
        if (req.release === true && typeof req.name === 'string') {
          pool.release({ domain: pool.domain, name: req.name, bytes: 1, id: 'release' });
          return;
        }
        const offset = Number(req.offset), length = Number(req.length);
        if (typeof req.name !== 'string' || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || length > RANGE_BYTES) {
          throw new CleaveError(ErrorCode.BAD_MESSAGE, 'a shared-memory read needs { name, offset, length } with length at most 4 MiB');
        }
        msg.respond(pool.readRange(req.name, offset, length));
      } catch (e) {
        const h = natsHeaders();
        const code = e instanceof CleaveError ? e.code : ErrorCode.INTERNAL;
        h.set(Header.ERROR_CODE, code);
        h.set(Header.ERROR, String((e as Error).message).slice(0, 500).replace(/[\r\n]+/g, ' '));
        msg.respond(new Uint8Array(0), { headers: h });
      }
    },
  });
}

/**
 * The bytes of the frame `ref` names, read over NATS from its host's service (decode them with
 * decodeShmBytes, which checks them against the reference). FRAME_GONE when that host no longer has
 * it, NATS_UNAVAILABLE when no process of that host answers.
 */
export async function fetchShmBytes(nc: NatsConnection, ref: ShmRef, timeoutMs = 10_000, allocate?: (n: number) => Uint8Array): Promise<Uint8Array> {
  const out = allocate ? allocate(ref.bytes) : uninitializedBytes(ref.bytes);
  // A few ranges in flight: one at a time leaves the link idle for a round trip per range.
  await windowed(Math.ceil(ref.bytes / RANGE_BYTES), WINDOW, async (i) => {
    const offset = i * RANGE_BYTES;
    const length = Math.min(RANGE_BYTES, ref.bytes - offset);
    let reply;
    try {
      reply = await nc.request(Subject.shmRead(ref.domain), JSON.stringify({ name: ref.name, offset, length }), { timeout: timeoutMs });
    } catch (e) {
      throw new CleaveError(ErrorCode.NATS_UNAVAILABLE, `no process of host domain ${ref.domain} answers reads of its shared-memory frames (${(e as Error).message}); the frame's host is down`, { cause: e, details: { domain: ref.domain } });
    }
    const code = reply.headers?.get(Header.ERROR_CODE);
    if (code) {
      throw new CleaveError(code === ErrorCode.FRAME_GONE ? ErrorCode.FRAME_GONE : ErrorCode.INTERNAL, `reading shared-memory frame ${ref.name} from domain ${ref.domain}: ${reply.headers?.get(Header.ERROR) ?? code}`, { details: { domain: ref.domain, name: ref.name } });
    }
    if (reply.data.byteLength !== length) {
      throw new CleaveError(ErrorCode.FRAME_GONE, `shared-memory frame ${ref.name} in domain ${ref.domain} is shorter than its reference says; it was recycled`, { details: { domain: ref.domain, name: ref.name } });
    }
    out.set(reply.data, offset);
  });
  return out;
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
