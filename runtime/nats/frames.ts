// Codec frames over JetStream, whatever their size: a frame up to CHUNK_BYTES travels inline; a larger
// one is published as raw chunks to CLEAVE_BLOBS (`cleave.blob.<id>.<i>`) and the message carries a
// reference, so every replica of a stage can fetch it (chunks spread over a shared work queue could
// not be), each chunk with one direct get. Single messages above ~8 MB move at a third of what 8 MB
// chunks do here (bench/pipeline.ts), so the chunk size, not max_payload, sets the threshold.
import { randomUUID } from 'node:crypto';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Header, Stream, Subject } from '../../protocols/subjects.js';
import { encodeFrame, type Tensor } from '../../protocols/tensor-codec.js';
import { decodeShmBytes, formatShmRef, parseShmRef, type ShmPool, type ShmRef } from '../shm/pool.js';
import { fetchShmBytes, releaseRemoteShm } from '../shm/remote.js';
import { BufferPool, uninitializedBytes } from '../shm/buffers.js';
import { windowed } from '../windowed.js';
import { handOver, HANDOVER_MIN_BYTES } from './handover.js';

/** Header naming the chunked blob that holds the frame: `<id>;<chunks>;<bytes>;<chunk bytes>`. */
export const BLOB_HEADER = 'Cleave-Blob';
/** Room left for headers under max_payload. */
const HEADROOM = 64 * 1024;
/** Largest inline frame and the size of a blob's chunks. */
export const CHUNK_BYTES = 8 * 1024 * 1024;
/** Default cap on one frame, inline or by reference. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 * 1024;
/** Chunk publishes (and gets) in flight at once. */
const WINDOW = 2;

export interface PublishFrameOptions {
  headers?: MsgHdrs;
  msgID?: string;
  maxFrameBytes?: number;
  /** The frame is this publish's own (nothing writes to it again): it goes to the socket uncopied. */
  handOver?: boolean;
  /** With `handOver`, for a frame sent inline: called once the socket has written it (see handOver). */
  onWritten?: () => void;
}

interface BlobRef {
  id: string;
  chunks: number;
  bytes: number;
  /** Bytes of every chunk but the last. */
  chunkBytes: number;
}

function blobRefOf(headers: MsgHdrs | undefined): BlobRef | undefined {
  const v = headers?.get(BLOB_HEADER);
  if (!v) return undefined;
  const [id, chunks, bytes, chunkBytes, ...rest] = v.split(';');
  const c = Number(chunks), b = Number(bytes), cb = Number(chunkBytes);
  if (rest.length || !id || !/^[A-Za-z0-9_:-]{1,200}$/.test(id) || ![c, b, cb].every((x) => Number.isSafeInteger(x) && x >= 1) || c !== Math.ceil(b / cb)) {
    throw new CleaveError(ErrorCode.BAD_MESSAGE, `blob reference '${v.slice(0, 200)}' is malformed; the sender runs a different Cleave version`);
  }
  return { id, chunks: c, bytes: b, chunkBytes: cb };
}

const managers = new WeakMap<NatsConnection, Promise<JetStreamManager>>();
function manager(nc: NatsConnection): Promise<JetStreamManager> {
  let m = managers.get(nc);
  if (!m) managers.set(nc, (m = jetstreamManager(nc)));
  return m;
}

/** Publishes a frame to a JetStream subject, inline or by reference. */
export async function publishFrame(nc: NatsConnection, js: JetStreamClient, subject: string, frame: Uint8Array, options: PublishFrameOptions = {}): Promise<PubAck> {
  const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (frame.byteLength > max) {
    throw new CleaveError(ErrorCode.CODEC_TOO_LARGE, `frame of ${frame.byteLength} bytes exceeds the ${max}-byte limit for ${subject}; split the model so that fewer bytes cross this cut, or raise the limit`);
  }
  const h = options.headers ?? natsHeaders();
  const chunk = Math.min(CHUNK_BYTES, (nc.info?.max_payload ?? 1024 * 1024) - HEADROOM);
  let data = frame;
  if (frame.byteLength > chunk) {
    // The dedup id names the blob too: a retried publish rewrites the same chunks (and JetStream drops them).
    const id = (options.msgID ?? randomUUID()).replace(/[^A-Za-z0-9_:-]/g, '_');
    const chunks = Math.ceil(frame.byteLength / chunk);
    await windowed(chunks, WINDOW, (i) => {
      const piece = frame.subarray(i * chunk, Math.min(frame.byteLength, (i + 1) * chunk));
      return js.publish(Subject.blob(id, i), options.handOver ? handOver(piece) : piece, { msgID: `${id}.${i}` });
    });
    h.set(BLOB_HEADER, `${id};${chunks};${frame.byteLength};${chunk}`);
    data = new Uint8Array(0);
  }
  if (options.msgID) h.set(Header.MSG_ID, options.msgID);
  if (data.byteLength >= ALIGN_MIN_BYTES) alignPayload(h);
  return js.publish(subject, options.handOver ? handOver(data, data === frame ? options.onWritten : undefined) : data, { headers: h });
}

/** Messages from this size on get their header block padded (alignPayload). */
const ALIGN_MIN_BYTES = 64 * 1024;

/**
 * Pads `h` with a Cleave-Pad header so that its encoding is a multiple of 8 bytes. A message that spans
 * socket reads arrives in a buffer of its own, headers first (runtime/nats/large-messages.ts), so its
 * payload then starts 8-aligned and the frame's tensors decode as views of it; after a header block
 * of any length, three times in four a float32 tensor started misaligned and decodeFrame copied it.
 * The header line is `\r\nCleave-Pad: <k bytes>` (14 + k bytes). Idempotent for reused headers.
 */
export function alignPayload(h: MsgHdrs): void {
  if (h.has(Header.PAD)) h.delete(Header.PAD);
  // nats.js's MsgHdrsImpl encodes itself as it goes on the wire; other implementations are left as they are.
  const encoded = (h as unknown as { encode?: () => Uint8Array }).encode?.();
  if (!encoded) return;
  const len = encoded.byteLength;
  if (len % 8 === 0) return;
  const k = 1 + ((8 - ((len + 15) % 8)) % 8);
  h.set(Header.PAD, 'p'.repeat(k));
}

/**
 * Memory for encoded frames that go out inline, recycled: a new MB-sized buffer per message counts
 * as external memory to V8 and drives full collections (a read service allocating 400 MB/s ran one
 * every 40-70 ms). A buffer comes back once its publish is over and the socket has written it.
 */
const frameBuffers = new BufferPool(32 * 1024 * 1024);
/** Frames too small to be handed over (never reported written) take the codec's default memory. */
const frameBytes = (n: number): Uint8Array | undefined => (n >= HANDOVER_MIN_BYTES ? frameBuffers.take(n) : undefined);
/** Bytes of encoded-frame memory written out and kept for the next frames (this thread's). */
export function keptFrameBytes(): number {
  return frameBuffers.heldBytes;
}

/** The frame bytes of a received message, fetching its chunks when it came by reference. */
export async function receiveFrame(nc: NatsConnection, data: Uint8Array, headers: MsgHdrs | undefined): Promise<Uint8Array> {
  const ref = blobRefOf(headers);
  if (!ref) return data;
  const jsm = await manager(nc);
  const out = uninitializedBytes(ref.bytes);
  await windowed(ref.chunks, WINDOW, async (i) => {
    const m = await jsm.direct.getMessage(Stream.BLOBS, { last_by_subj: Subject.blob(ref.id, i) }).catch(() => null);
    if (!m) throw new CleaveError(ErrorCode.FRAME_GONE, `chunk ${i} of the frame's blob '${ref.id}' is gone from ${Stream.BLOBS} (expired or already consumed); resend the request`, { details: { blob: ref.id } });
    const offset = i * ref.chunkBytes;
    if (m.data.byteLength !== Math.min(ref.chunkBytes, ref.bytes - offset)) throw new CleaveError(ErrorCode.CODEC_CORRUPT, `chunk ${i} of the blob '${ref.id}' has ${m.data.byteLength} bytes, not what its reference says`);
    out.set(m.data, offset);
  });
  return out;
}

/** Deletes a by-reference frame's chunks once the message that named it is done with. */
export async function releaseFrame(nc: NatsConnection, headers: MsgHdrs | undefined): Promise<void> {
  const ref = blobRefOf(headers);
  if (!ref) return;
  const jsm = await manager(nc);
  await jsm.streams.purge(Stream.BLOBS, { filter: Subject.blob(ref.id, '*') }).catch(() => {});
}

/** Marks a message whose tensors are in the shared-memory frame `ref` (its body carries the meta). */
function setShmRef(h: MsgHdrs, ref: ShmRef): void {
  h.set(Header.SHM, formatShmRef(ref));
}

/** The shared-memory frame a message names, if any (BAD_MESSAGE when the reference is malformed). */
export function shmRefOf(headers: MsgHdrs | undefined): ShmRef | undefined {
  const v = headers?.get(Header.SHM);
  return v ? parseShmRef(v) : undefined;
}

/**
 * Tensors of a shared-memory frame, in memory of their own: read from this host's pool, or fetched
 * from the frame's host when it is another (or when this process has no pool).
 */
export async function readShmTensors(nc: NatsConnection, pool: ShmPool | undefined, ref: ShmRef, allocate?: (n: number) => Uint8Array): Promise<Record<string, Tensor>> {
  if (pool && pool.domain === ref.domain) return pool.readFrame(ref, allocate).tensors;
  return decodeShmBytes(ref, await fetchShmBytes(nc, ref, undefined, allocate)).tensors;
}

/** A consumed shared-memory frame goes back to its host's pool: this one, or the producer's over NATS. */
export function releaseShmFrame(nc: NatsConnection, pool: ShmPool | undefined, ref: ShmRef): void {
  if (pool && pool.domain === ref.domain) pool.release(ref);
  else releaseRemoteShm(nc, ref);
}

export interface PublishWorkOptions {
  headers?: MsgHdrs;
  msgID?: string;
  /** The pool `tensors.shm` was written to, to release it if the publish fails or was a duplicate. */
  pool?: ShmPool;
}

/**
 * Publishes a work message or result: `meta` in the body, the tensors inline (or by reference in
 * CLEAVE_BLOBS) or, when they were written to shared memory, only their reference. A shared-memory
 * frame nobody will read (the publish failed, or JetStream dropped it as a duplicate whose stored
 * message names an earlier frame) goes back to its pool.
 */
export async function publishWork(nc: NatsConnection, js: JetStreamClient, subject: string, meta: Record<string, unknown>, tensors: { tensors: Record<string, Tensor> } | { shm: ShmRef }, options: PublishWorkOptions = {}): Promise<PubAck> {
  const h = options.headers ?? natsHeaders();
  const ref = 'shm' in tensors ? tensors.shm : undefined;
  if (ref) setShmRef(h, ref);
  const body = encodeFrame({ tensors: ref ? {} : (tensors as { tensors: Record<string, Tensor> }).tensors, meta }, { allocate: frameBytes });
  // Back to frameBuffers when both are over: the publish (nothing sends it again) and the socket write.
  let holds = 2;
  const drop = () => {
    if (--holds === 0) frameBuffers.give(body);
  };
  let ack: PubAck;
  try {
    ack = await publishFrame(nc, js, subject, body, { headers: h, handOver: true, onWritten: drop, ...(options.msgID ? { msgID: options.msgID } : {}) });
  } catch (e) {
    if (ref) options.pool?.release(ref);
    throw e;
  } finally {
    drop();
  }
  if (ack.duplicate && ref) options.pool?.release(ref);
  return ack;
}
