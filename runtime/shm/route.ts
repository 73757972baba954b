// Which way a frame goes: through the producer's shared-memory pool (only a reference on NATS) or
// inline in its JetStream message. Pure.
//
// Within a host the pool wins at every size that matters (bench pipeline: 3-8x raw core NATS from 1 MB
// up). Between hosts the consumer fetches a pooled frame from the producer's host: a read request and
// the frame streamed back, after the JetStream message and its pull. Below ~2 MB that is bound by those
// round trips: a 1 MB hop measured 0.36-0.63x raw NATS fetched against 0.36-1.09x stored inline (six
// runs side by side, median 0.62 against 0.77); at 8 MB the fetch won (0.72-0.99x against 0.48-0.74x),
// because a stored frame crosses the NATS server twice and stays in its memory meanwhile.

/** Frames below this go inline when no consumer shares the producer's host. */
export const REMOTE_INLINE_MAX_BYTES = 2 * 1024 * 1024;

/**
 * The least bytes a frame from a pool of `domain` needs to go through that pool, given the
 * shared-memory domains of the processes that may read it: `undefined` when they are not known (then
 * always the pool: any reader can fetch it), `[]` when none has a pool. 0 when a reader shares the
 * host, else the inline limit. For producers that learn a frame's size only once they have computed it.
 */
export function sharedMemoryMinBytes(domain: string, consumerDomains: readonly string[] | undefined): number {
  return consumerDomains === undefined || consumerDomains.includes(domain) ? 0 : REMOTE_INLINE_MAX_BYTES;
}

/** True when a frame of `bytes` should go through the pool (see sharedMemoryMinBytes). */
export function viaSharedMemory(bytes: number, domain: string, consumerDomains: readonly string[] | undefined): boolean {
  return bytes >= sharedMemoryMinBytes(domain, consumerDomains);
}
