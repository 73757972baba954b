// Transfer measurements of the benches: one pipeline hop (a tensor frame published to a JetStream work
// queue, pulled, received, decoded, acked, as stage servers do) and raw core NATS pub/sub of the same
// bytes. Each runs with its consumer in this process or, as in the product (one stage's executor
// hands to the next stage's, another process), in a peer process (`TransferPeer`): measured here,
// one process playing both ends of a hop runs every copy, checksum and parse of both on one thread,
// which the product never does, and raw core NATS, doing less of that work, loses less to it.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager, AckPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
// As every Cleave connection receives large messages (raw core NATS here measured the same way).
import '../runtime/nats/large-messages.js';
import { connectNats } from '../runtime/nats/connect.js';
import { publishWork, receiveFrame, releaseFrame, releaseShmFrame, shmRefOf } from '../runtime/nats/frames.js';
import { windowed } from '../runtime/windowed.js';
import { SlotPuller } from '../runtime/nats/pull.js';
import { ShmPool } from '../runtime/shm/pool.js';
import { Scratch } from '../runtime/shm/buffers.js';
import { fetchShmFrame, serveShmReads } from '../runtime/shm/remote.js';
import { coreThroughput, publishPaced } from '../runtime/pipeline/link-probe.js';
import { decodeFrame, tensor } from '../protocols/tensor-codec.js';

/** Tensors of `mb` MB one transfer measurement sends (at least 256 MB in all). */
export const hopCount = (mb: number) => Math.max(8, Math.ceil(256 / mb));

/** Raw core NATS messages are at most this large (chunks above the server's max_payload). */
const RAW_CHUNK_BYTES = 8 * 1024 * 1024;

/** Pulls a consumer keeps going at once, as many as a stage server's slots. */
const HOP_SLOTS = 2;

export interface HopOptions {
  /** The tensors go into this shared-memory pool and only a reference is published. */
  pool?: ShmPool;
  /** With `pool`: the consumer fetches the frame over core NATS as another host would. */
  remote?: boolean;
  slots?: number;
  /** The consumer runs there instead of in this process. */
  peer?: TransferPeer;
  /** Frames to send (default hopCount(mb)). */
  count?: number;
}

/**
 * Raw core NATS: the same bytes as a hop measurement (hopCount tensors), published and received by a
 * second connection (chunks of 8 MB above max_payload). Same bytes, not fewer: with 64 MB (8 messages
 * at 8 MB) its rounds swung 91-289 MB/s here, with 256 MB 272-308, and the short ones read low. With
 * `peer`, the receiving connection is the peer process's.
 */
export async function rawCoreMBps(url: string, mb: number, peer?: TransferPeer, count = hopCount(mb)): Promise<number> {
  const total = count * mb * 1024 * 1024;
  const chunk = Math.min(mb * 1024 * 1024, RAW_CHUNK_BYTES);
  const pub = await connect({ servers: url });
  try {
    if (peer) return (await peer.raw(pub, url, total, chunk)) / 1e6;
    const sub = await connect({ servers: url });
    try {
      return (await coreThroughput(pub, sub, total, chunk)) / 1e6;
    } finally {
      await sub.close();
    }
  } finally {
    await pub.close();
  }
}

/**
 * One pipeline hop as the stages do it: publishWork to a memory work queue (PubAck), pulled by a
 * SlotPuller on two slots (one pull request per free slot, the ack asking for the next, as a stage
 * server does), received, decoded, acked. With `pool` the tensors go into the producer's shared-memory
 * pool and only a reference is published; the consumer reads the file (same host) or, with `remote`,
 * fetches it from the producer's read service over core NATS (another host), into a reused buffer.
 */
export async function hopMBps(nc: NatsConnection, mb: number, opts: HopOptions = {}): Promise<number> {
  const { pool, remote = false, slots = HOP_SLOTS, peer } = opts;
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const name = `BENCH_HOP_${mb}_${randomBytes(3).toString('hex')}`;
  const subject = `bench.hop.${name}`;
  await jsm.streams.add({ name, subjects: [subject], retention: RetentionPolicy.Workqueue, storage: StorageType.Memory });
  await jsm.consumers.add(name, { durable_name: 'c', ack_policy: AckPolicy.Explicit });
  const reads = remote && pool ? serveShmReads(nc, pool) : undefined;
  if (reads) await nc.flush();
  const floats = (mb * 1024 * 1024) / 4;
  const data = new Float32Array(floats).fill(0.5);
  const count = opts.count ?? hopCount(mb);
  const spec: HopSpec = { url: nc.getServer(), stream: name, count, slots, ...(pool ? { shmDir: pool.dir } : {}), remote };
  const local = peer ? undefined : await HopConsumer.open(spec);
  try {
    const consumed = peer ? (await peer.hop(spec)).finished : local!.start();
    const t0 = performance.now();
    await Promise.all([
      consumed,
      windowed(count, 2, (i) => {
        const t = { t: tensor('float32', [floats], data) };
        return publishWork(nc, js, subject, { i }, pool ? { shm: pool.writeFrame(t) } : { tensors: t }, pool ? { pool } : {});
      }),
    ]);
    return (count * mb * 1.048576) / ((performance.now() - t0) / 1000);
  } catch (e) {
    peer?.cancel();
    throw e;
  } finally {
    // The stream first: its deletion ends the consumer's outstanding pulls (a 409 each), which a drain
    // would otherwise wait out (up to the pull expiry, 2 s a round).
    await jsm.streams.delete(name).catch(() => {});
    await local?.close();
    reads?.unsubscribe();
  }
}

interface HopSpec {
  url: string;
  stream: string;
  count: number;
  slots: number;
  /** Frames come by reference to the shared-memory pool in this directory. */
  shmDir?: string;
  /** Fetched over NATS rather than read from this host's pool. */
  remote: boolean;
}

/** The consuming end of a hop, in whichever process it runs. */
class HopConsumer {
  private constructor(
    private readonly conn: NatsConnection,
    private readonly spec: HopSpec,
    private readonly pool: ShmPool | undefined,
  ) {}

  static async open(spec: HopSpec): Promise<HopConsumer> {
    // Connected as a stage server is (runtime/nats/connect.ts).
    const conn = await connectNats([spec.url], 'bench-hop-consumer');
    return new HopConsumer(conn, spec, spec.shmDir !== undefined && !spec.remote ? ShmPool.open({ dir: spec.shmDir }) : undefined);
  }

  private puller?: SlotPuller;

  /** Starts pulling; resolves when all `count` frames were received, decoded and acked. */
  start(): Promise<void> {
    const { count, slots, remote } = this.spec;
    const conn = this.conn;
    const pool = this.pool;
    const scratches = Array.from({ length: slots }, () => new Scratch());
    let received = 0;
    let settle!: (e?: unknown) => void;
    const consumed = new Promise<void>((resolve, reject) => (settle = (e) => (e === undefined ? resolve() : reject(e))));
    this.puller = new SlotPuller(conn, this.spec.stream, 'c', {
      slots,
      onMessage: async (m) => {
        try {
          const scratch = scratches.pop() ?? new Scratch();
          const bytes = await receiveFrame(conn, m.data, m.headers);
          decodeFrame(bytes);
          const ref = shmRefOf(m.headers);
          // A consumer on another host fetches the frame from the producer's host over core NATS.
          if (ref && remote) await fetchShmFrame(conn, ref, 10_000, (n) => scratch.get(n));
          else if (ref && pool) pool.readFrame(ref, scratch);
          else if (ref) throw new Error('a shared-memory frame but no pool to read it from');
          scratches.push(scratch);
          m.ack();
          if (ref) releaseShmFrame(conn, remote ? undefined : pool, ref);
          else await releaseFrame(conn, m.headers);
          if (++received === count) settle();
        } catch (e) {
          m.term();
          settle(e);
        }
      },
    });
    this.puller.start();
    return consumed;
  }

  async close(): Promise<void> {
    await this.puller?.drain();
    await this.conn.close();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
// Each request has an id its replies carry: a late reply of an earlier one (its teardown failing after
// it was done) is not taken for the current one's.
type PeerRequest = { id: number } & ({ type: 'raw'; url: string; subject: string; count: number } | { type: 'hop'; spec: HopSpec } | { type: 'cancel' });
type PeerReply = { id: number } & ({ type: 'ready' } | { type: 'done' } | { type: 'failed'; message: string });

/**
 * A process of its own that plays the consuming end of transfer measurements, one at a time, started
 * as executors are (node with tsx). `stop()` ends it.
 */
export class TransferPeer {
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: PeerReply) => m.id === this.current && this.onReply?.(m));
  }

  private onReply?: (m: PeerReply) => void;
  private current = 0;

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(): Promise<TransferPeer> {
    const child = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', (m: PeerReply) => (m.type === 'ready' ? resolve() : reject(new Error('transfer peer did not start'))));
      child.once('exit', (code) => reject(new Error(`transfer peer exited (${code})`)));
    });
    return new TransferPeer(child);
  }

  /**
   * Sends `req` and resolves once the peer is ready for the producer; `finished` settles when the peer
   * has received everything.
   */
  private begin(req: DistributiveOmit<PeerRequest, 'id'>): Promise<{ finished: Promise<void> }> {
    const id = ++this.current;
    // The completion is wrapped: a promise resolved with a promise would wait for it.
    return new Promise((ready, failedEarly) => {
      let done!: () => void, failed!: (e: Error) => void;
      const finished = new Promise<void>((res, rej) => ((done = res), (failed = rej)));
      // Nobody may wait for it (the producer failed first): its failure then is not an unhandled one.
      finished.catch(() => {});
      let started = false;
      this.onReply = (m) => {
        if (m.type === 'ready') {
          started = true;
          ready({ finished });
        } else if (m.type === 'done') done();
        else if (started) failed(new Error(`transfer peer: ${m.message}`));
        else failedEarly(new Error(`transfer peer: ${m.message}`));
      };
      this.child.send({ ...req, id });
    });
  }

  /** Bytes per second of `total` bytes in `chunk`-byte core NATS messages from `pub` to the peer. */
  async raw(pub: NatsConnection, url: string, total: number, chunk: number): Promise<number> {
    const subject = `cleave.probe.${randomBytes(6).toString('hex')}`;
    const count = Math.max(1, Math.floor(total / chunk));
    const payload = new Uint8Array(chunk).fill(1);
    const { finished } = await this.begin({ type: 'raw', url, subject, count });
    const t0 = performance.now();
    try {
      await publishPaced(pub, subject, payload, count); // as coreThroughput publishes
    } catch (e) {
      this.cancel();
      throw e;
    }
    await finished;
    return (count * chunk) / Math.max((performance.now() - t0) / 1000, 1e-6);
  }

  /** Starts the peer's consumer of `spec`; resolves once it pulls, with its completion. */
  hop(spec: HopSpec): Promise<{ finished: Promise<void> }> {
    return this.begin({ type: 'hop', spec });
  }

  /** Ends the current measurement's consumer (its producer failed: it would wait for frames forever). */
  cancel(): void {
    if (this.child.connected) this.child.send({ type: 'cancel', id: this.current } satisfies PeerRequest);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

async function servePeer(): Promise<void> {
  const cancels = new Map<number, () => void>();
  process.on('message', async (m: PeerRequest) => {
    if (m.type === 'cancel') return cancels.get(m.id)?.();
    const send = (r: DistributiveOmit<PeerReply, 'id'>) => process.send!({ ...r, id: m.id });
    const cancelled = new Promise<never>((_, reject) => cancels.set(m.id, () => reject(new Error('cancelled by the producer'))));
    cancelled.catch(() => {});
    try {
      if (m.type === 'raw') {
        const sub = await connect({ servers: m.url });
        let got = 0;
        const all = new Promise<void>((resolve) => {
          sub.subscribe(m.subject, { callback: () => void (++got === m.count && resolve()) });
        });
        await sub.flush();
        send({ type: 'ready' });
        try {
          await Promise.race([all, cancelled]);
        } finally {
          await sub.close();
        }
      } else {
        const c = await HopConsumer.open(m.spec);
        const consumed = c.start();
        send({ type: 'ready' });
        try {
          await Promise.race([consumed, cancelled]);
          // Done is when the last frame is in, before the puller's drain (up to its pull expiry).
          send({ type: 'done' });
        } finally {
          await c.close();
        }
        return;
      }
      send({ type: 'done' });
    } catch (e) {
      send({ type: 'failed', message: (e as Error).message });
    } finally {
      cancels.delete(m.id);
    }
  });
  process.send!({ type: 'ready', id: 0 } satisfies PeerReply);
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) await servePeer();
