// Codec frames over JetStream, whatever their size: a frame that fits the server's max_payload travels
// inline; a larger one is put in the `cleave-blobs` object store and the message carries a reference
// (so every replica of a stage can fetch it, which chunks spread over a shared work queue could not).
import { randomUUID } from 'node:crypto';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { objectStore } from './objects.js';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Header, ObjectStoreName } from '../../protocols/subjects.js';
import type { Tensor } from '../../protocols/tensor-codec.js';
import { formatShmRef, parseShmRef, type ShmPool, type ShmRef } from '../shm/pool.js';
import { fetchShmFrame } from '../shm/remote.js';

/** Header naming the blob that holds the frame, when it did not fit a message. */
export const BLOB_HEADER = 'Cleave-Blob';
/** Room left for headers under max_payload. */
const HEADROOM = 64 * 1024;
/** Default cap on one frame, inline or by reference. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 * 1024;

export function blobStore(nc: NatsConnection): Promise<ObjectStore> {
  return objectStore(nc, ObjectStoreName.BLOBS);
}

export interface PublishFrameOptions {
  headers?: MsgHdrs;
  msgID?: string;
  maxFrameBytes?: number;
}

/** Publishes a frame to a JetStream subject, inline or by reference. */
export async function publishFrame(nc: NatsConnection, js: JetStreamClient, subject: string, frame: Uint8Array, options: PublishFrameOptions = {}): Promise<PubAck> {
  const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (frame.byteLength > max) {
    throw new CleaveError(ErrorCode.CODEC_TOO_LARGE, `frame of ${frame.byteLength} bytes exceeds the ${max}-byte limit for ${subject}; split the model so that fewer bytes cross this cut, or raise the limit`);
  }
  const h = options.headers ?? natsHeaders();
  const limit = (nc.info?.max_payload ?? 1024 * 1024) - HEADROOM;
  let data = frame;
  if (frame.byteLength > limit) {
    const os = await blobStore(nc);
    const name = `${options.msgID ?? randomUUID()}`;
    await os.putBlob({ name, options: { max_chunk_size: Math.min(limit, 8 * 1024 * 1024) } }, frame);
    h.set(BLOB_HEADER, name);
    data = new Uint8Array(0);
  }
  return js.publish(subject, data, { headers: h, ...(options.msgID ? { msgID: options.msgID } : {}) });
}

/** The frame bytes of a received message, fetching the blob when it came by reference. */
export async function receiveFrame(nc: NatsConnection, data: Uint8Array, headers: MsgHdrs | undefined): Promise<Uint8Array> {
  const name = headers?.get(BLOB_HEADER);
  if (!name) return data;
  const os = await blobStore(nc);
  const blob = await os.getBlob(name);
  if (!blob) {
    throw new CleaveError(ErrorCode.CODEC_TRUNCATED, `the frame's blob '${name}' is gone from ${ObjectStoreName.BLOBS} (expired or already consumed); resend the request`);
  }
  return blob;
}

/** Deletes a by-reference frame's blob once the message that named it is done with. */
export async function releaseFrame(nc: NatsConnection, headers: MsgHdrs | undefined): Promise<void> {
  const name = headers?.get(BLOB_HEADER);
  if (!name) return;
  const os = await blobStore(nc);
  await os.delete(name).catch(() => {});
}

/** Marks a message whose tensors are in the shared-memory frame `ref` (its body carries the meta). */
export function setShmRef(h: MsgHdrs, ref: ShmRef): void {
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
  return (await fetchShmFrame(nc, ref)).tensors;
}
