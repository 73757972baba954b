// Tensor frames through shared memory between the processes of one host: a producer writes the frame
// into a file under /dev/shm, only a reference crosses NATS, the consumer reads it back. Files are
// recycled through a free list every process of the host shares (claimed by an atomic rename), because
// on these machines fresh tmpfs pages cost ~3x what rewriting warm ones does (bench/pipeline.ts).
//
// Layout under the pool's root (default /dev/shm/cleave-<uid>, CLEAVE_SHM_DIR moves it):
//   domain          the id of everything that sees this directory (one host, one /dev/shm)
//   live/<name>     frames referenced by a message that is not yet done with
//   free/size-<capacity>/<rand>  recycled files by capacity in bytes, rewritten in place by the next
//                   producer: a claim lists only the directory of its size (one flat list cost a
//                   write a listing of every free file: 0.93 ms a frame with 191 of them, 0.25 with 7).
//                   The prefix keeps earlier versions (flat `free/<capacity>.<rand>`) from taking a
//                   directory for a file should both run on one host during an upgrade.
// Safety: a file goes back to the free list only after the message naming it was acked (so the work
// it carried is durably downstream). The frame's meta carries the reference's id and the header CRC
// covers it, so a late redelivery that finds the file recycled is recognised (FRAME_GONE), never read
// as somebody else's tensors.
import { randomBytes } from 'node:crypto';
import {
  closeSync, fstatSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync,
  rmSync, statSync, statfsSync, unlinkSync, writeFileSync, writeSync, writevSync, constants as fsConstants,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { decodeFrame, encodeFrameParts, type DecodedFrame, type Tensor } from '../../protocols/tensor-codec.js';
import { Scratch, uninitializedBytes } from './buffers.js';

/** Bytes read from a pool file at once when serving it in pieces (see readPieces). */
const READ_BLOCK_BYTES = 1024 * 1024;

/** Names one frame in one pool: which pool (domain), which file, how many bytes, and the writer's id. */
export interface ShmRef {
  domain: string;
  name: string;
  bytes: number;
  id: string;
}

const TOKEN = /^[A-Za-z0-9_.-]{1,128}$/;
/** File names the pool makes (and the only ones it opens: a remote read names one). */
const NAME = /^[a-z0-9-]{1,64}$/;
/** A domain is also a subject token (the remote read service's subject). */
const DOMAIN = /^[A-Za-z0-9_-]{1,64}$/;

/** The reference as one header value: `domain;name;bytes;id`. */
export function formatShmRef(r: ShmRef): string {
  return `${r.domain};${r.name};${r.bytes};${r.id}`;
}

export function parseShmRef(s: string): ShmRef {
  const [domain, name, bytes, id, ...rest] = s.split(';');
  const n = Number(bytes);
  if (rest.length || !domain || !name || !id || !DOMAIN.test(domain) || !NAME.test(name) || !TOKEN.test(id) || !Number.isSafeInteger(n) || n <= 0) {
    throw new CleaveError(ErrorCode.BAD_MESSAGE, `shared-memory reference '${s.slice(0, 200)}' is malformed; the sender runs a different Cleave version`);
  }
  return { domain, name, bytes: n, id };
}

export interface ShmPoolOptions {
  /** Root directory; default `$CLEAVE_SHM_DIR` or `/dev/shm/cleave-<uid>`. */
  dir?: string;
  /** Bytes of recycled files kept for reuse; beyond that a released file is deleted. Default 512 MiB. */
  freeBudgetBytes?: number;
  /** Refuse to write (callers send inline instead) when the file system has less free than this. Default 256 MiB. */
  minFreeBytes?: number;
  /**
   * The process that answers remote reads of the frames this pool writes (its read service's token,
   * READER: 12 hex digits), named in every frame's file name. Default: a token of this pool's own. A
   * worker thread writing for its process passes the process pool's `reader`.
   */
  reader?: string;
}

/** A pool's reader token: 12 hex digits. */
const READER = /^[0-9a-f]{12}$/;

/** The reader token a frame's file name carries (`<reader>-<time>-<random>`), if any. */
export function readerOf(name: string): string | undefined {
  const [reader, ...rest] = name.split('-');
  return rest.length === 2 && READER.test(reader!) ? reader : undefined;
}

export interface ShmStats {
  written: number;
  reused: number;
  created: number;
  read: number;
  released: number;
  deleted: number;
  /** Free files deleted to make room for a newer release (the least recently released first). */
  evicted: number;
}

const DEFAULT_FREE_BUDGET = 512 * 1024 * 1024;
const DEFAULT_MIN_FREE = 256 * 1024 * 1024;
/** New files are sized up to this granule so that frames of similar size reuse each other's files. */
const GRANULE = 64 * 1024;
/** The free list's directory of files of one capacity: `free/size-<bytes>`. */
const SIZE_DIR = 'size-';
/** How long a free-space or free-list measurement is trusted before it is taken again. */
const RECHECK_MS = 250;

export class ShmPool {
  readonly stats: ShmStats = { written: 0, reused: 0, created: 0, read: 0, released: 0, deleted: 0, evicted: 0 };
  private readonly live: string;
  private readonly free: string;
  private room = false;
  private roomCheckedAt = -Infinity;
  private freeTotal = 0;
  private freeCountedAt = -Infinity;
  /**
   * Unique names and frame ids without a randomBytes call each (three per frame cost ~0.1 ms apiece
   * on an executor's threads, their code cold at 20 frames a second): random once per pool, which
   * tells apart this pool from others under the same reader token (an executor and its worker), then
   * counted.
   */
  private readonly tag = randomBytes(6).toString('hex');
  private seq = 0;
  private unique(): string {
    return this.tag + (++this.seq).toString(36);
  }

  private constructor(
    readonly dir: string,
    readonly domain: string,
    private readonly freeBudget: number,
    private readonly minFree: number,
    /** Who answers remote reads of this pool's frames (see ShmPoolOptions.reader). */
    readonly reader: string,
  ) {
    this.live = join(dir, 'live');
    this.free = join(dir, 'free');
  }

  /**
   * The host's pool, or undefined when shared memory is off (`CLEAVE_SHM=0`) or unusable here (no
   * /dev/shm, not writable): callers then send every frame inline over NATS.
   */
  static open(options: ShmPoolOptions = {}): ShmPool | undefined {
    if (process.env.CLEAVE_SHM === '0') return undefined;
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
    const dir = options.dir ?? process.env.CLEAVE_SHM_DIR ?? `/dev/shm/cleave-${uid}`;
    const reader = options.reader ?? randomBytes(6).toString('hex');
    if (!READER.test(reader)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `'${reader}' is not a pool reader token (12 hex digits); pass another pool's \`reader\``);
    try {
      if (!options.dir && !process.env.CLEAVE_SHM_DIR && !statSync('/dev/shm').isDirectory()) return undefined;
      mkdirSync(join(dir, 'live'), { recursive: true, mode: 0o700 });
      mkdirSync(join(dir, 'free'), { recursive: true, mode: 0o700 });
      dropFlatFreeFiles(join(dir, 'free'));
      return new ShmPool(dir, readDomain(dir), options.freeBudgetBytes ?? DEFAULT_FREE_BUDGET, options.minFreeBytes ?? DEFAULT_MIN_FREE, reader);
    } catch {
      return undefined;
    }
  }

  /** Room for more frames without starving the host's memory; otherwise callers send them inline. */
  hasRoom(): boolean {
    // statfs per frame measured ~0.1-0.3 ms here; free space does not swing much within a quarter second.
    const now = performance.now();
    if (now - this.roomCheckedAt > RECHECK_MS) {
      this.roomCheckedAt = now;
      try {
        const s = statfsSync(this.dir);
        this.room = s.bavail * s.bsize >= this.minFree;
      } catch {
        this.room = false;
      }
    }
    return this.room;
  }

  /**
   * Writes `tensors` as one frame into a pool file and returns its reference. No payload CRC: the bytes
   * never leave this host's memory (the header, which names and shapes them, is still checksummed).
   */
  writeFrame(tensors: Record<string, Tensor>): ShmRef {
    const id = this.unique();
    // A vectored write straight from the tensors' memory: one copy (into the file), not two.
    const { parts, byteLength } = encodeFrameParts({ tensors, meta: { shm: id } }, { checksum: false });
    const name = `${this.reader}-${Date.now().toString(36)}-${this.unique()}`;
    this.writeFile(name, parts, byteLength);
    this.stats.written++;
    return { domain: this.domain, name, bytes: byteLength, id };
  }

  /**
   * The frame a reference names. Tensors are views into `into` when given: a Scratch (valid until its
   * next use) or an allocator (e.g. BufferPool.take); else into memory of their own. FRAME_GONE when
   * the file was already released (a redelivery of work that was done), BAD_ARGUMENT for another
   * pool's reference.
   */
  readFrame(ref: ShmRef, into?: Scratch | ((n: number) => Uint8Array)): DecodedFrame {
    if (ref.domain !== this.domain) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `frame ${ref.name} lives in shared memory of domain ${ref.domain}, not this host's (${this.domain}); fetch it with fetchShmFrame`);
    let fd: number;
    try {
      if (!NAME.test(ref.name)) throw new Error('not a pool file name');
      fd = openSync(join(this.live, ref.name), 'r');
    } catch (e) {
      throw gone(ref, e);
    }
    let bytes: Uint8Array;
    try {
      bytes = into instanceof Scratch ? into.get(ref.bytes) : into ? into(ref.bytes) : uninitializedBytes(ref.bytes);
      let off = 0;
      while (off < ref.bytes) {
        const n = readSync(fd, bytes, off, ref.bytes - off, off);
        if (n === 0) throw gone(ref);
        off += n;
      }
    } finally {
      closeSync(fd);
    }
    this.stats.read++;
    return decodeShmBytes(ref, bytes);
  }

  /**
   * Reads `length` bytes of live frame `name` from `offset` in pieces of at most `pieceBytes`, each
   * handed to `onPiece` in order, `endsBlock` true for the last piece of its block; the file is opened
   * once. Reads go in blocks of READ_BLOCK_BYTES cut into pieces: one allocation and one read per
   * block, not per piece (32 KiB pieces each in a buffer of its own slowed a host's replies by ~20 %
   * under V8's small young generation, from the garbage collections they caused). Blocks come from
   * `allocate` (default: new memory, which the callee may keep); a caller that recycles them gives a
   * block back only once every piece of it is done with. FRAME_GONE when the file is missing or
   * shorter than asked.
   */
  readPieces(name: string, offset: number, length: number, pieceBytes: number, onPiece: (piece: Uint8Array, endsBlock: boolean) => void, allocate: (n: number) => Uint8Array = uninitializedBytes): void {
    if (!NAME.test(name)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `'${name}' is not a pool file name`);
    let fd: number;
    try {
      fd = openSync(join(this.live, name), 'r');
    } catch (e) {
      throw new CleaveError(ErrorCode.FRAME_GONE, `shared-memory frame ${name} is gone`, { cause: e });
    }
    const blockBytes = Math.max(pieceBytes, Math.floor(READ_BLOCK_BYTES / pieceBytes) * pieceBytes);
    try {
      for (let at = 0; at < length; at += blockBytes) {
        const block = allocate(Math.min(blockBytes, length - at));
        let off = 0;
        while (off < block.byteLength) {
          const n = readSync(fd, block, off, block.byteLength - off, offset + at + off);
          if (n === 0) throw new CleaveError(ErrorCode.FRAME_GONE, `shared-memory frame ${name} is shorter than the ${offset + length} bytes asked for; it was recycled`);
          off += n;
        }
        for (let p = 0; p < block.byteLength; p += pieceBytes) {
          const end = Math.min(p + pieceBytes, block.byteLength);
          onPiece(block.subarray(p, end), end === block.byteLength);
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  /** The message naming `ref` is done with (acked): its file goes back to the free list, or away. */
  release(ref: ShmRef): void {
    if (ref.domain !== this.domain || !NAME.test(ref.name)) return;
    const path = join(this.live, ref.name);
    let size: number;
    try {
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st) return; // released already
      size = st.size;
    } catch {
      return;
    }
    try {
      // The free list is a cache of warm files (a fresh tmpfs file costs page faults on every write):
      // the sizes in use now displace the least recently released, e.g. a past model's, never the reverse.
      if (size <= this.freeBudget && this.freeBytes() + size > this.freeBudget) this.evict(this.freeBytes() + size - this.freeBudget);
      if (this.freeBytes() + size <= this.freeBudget) {
        const dir = join(this.free, `${SIZE_DIR}${size}`);
        const to = join(dir, this.unique());
        try {
          renameSync(path, to);
        } catch (e) {
          // The first file of this size: make its directory (or another process has just done so).
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          renameSync(path, to);
        }
        this.freeTotal += size;
        this.stats.released++;
        return;
      }
    } catch {
      // fall through to deleting it
    }
    try {
      unlinkSync(path);
      this.stats.deleted++;
    } catch {
      // someone else released it
    }
  }

  /**
   * Deletes free files, least recently released first (a rename into free/ sets a file's ctime), until
   * `bytes` plus an eighth of the budget are gone, so the next releases find room without evicting again.
   */
  private evict(bytes: number): void {
    const files = [];
    for (const { cap, dir } of this.capacities()) {
      for (const f of safeReaddir(dir)) {
        try {
          files.push({ f: join(dir, f), cap, at: statSync(join(dir, f)).ctimeMs });
        } catch {
          // claimed meanwhile
        }
      }
    }
    files.sort((a, b) => a.at - b.at);
    const target = bytes + this.freeBudget / 8;
    let gone = 0;
    for (const { f, cap } of files) {
      if (gone >= target) break;
      try {
        unlinkSync(f);
      } catch {
        continue; // another process claimed or evicted it
      }
      gone += cap;
      this.freeTotal = Math.max(0, this.freeTotal - cap);
      this.stats.evicted++;
    }
  }

  /** Deletes live files older than `maxAgeMs` (their messages expired or were dropped). */
  sweep(maxAgeMs: number): number {
    let removed = 0;
    const now = Date.now();
    for (const f of safeReaddir(this.live)) {
      try {
        if (now - statSync(join(this.live, f)).mtimeMs > maxAgeMs) {
          unlinkSync(join(this.live, f));
          removed++;
        }
      } catch {
        // raced with a release
      }
    }
    return removed;
  }

  /**
   * Bytes on the free list: counted from the directory at most every RECHECK_MS (other processes of
   * the host share it), kept up to date in between with this process's own moves.
   */
  private freeBytes(): number {
    const now = performance.now();
    if (now - this.freeCountedAt > RECHECK_MS) {
      this.freeCountedAt = now;
      this.freeTotal = 0;
      for (const { cap, dir } of this.capacities()) this.freeTotal += cap * safeReaddir(dir).length;
    }
    return this.freeTotal;
  }

  private writeFile(name: string, parts: Uint8Array[], byteLength: number): void {
    const path = join(this.live, name);
    const fd = this.claimFree(byteLength, path) ?? this.create(path, byteLength);
    try {
      const written = writevSync(fd, parts, 0);
      if (written < byteLength) {
        // A short vectored write (rare on tmpfs): finish part by part from where it stopped.
        let pos = 0;
        for (const p of parts) {
          const end = pos + p.byteLength;
          for (let off = Math.max(0, written - pos); pos + off < end && off < p.byteLength;) off += writeSync(fd, p, off, p.byteLength - off, pos + off);
          pos = end;
        }
      }
    } catch (e) {
      closeSync(fd);
      rmSync(path, { force: true });
      throw new CleaveError(ErrorCode.INTERNAL, `could not write a frame to shared memory (${(e as Error).message}); free space under ${this.dir} or set CLEAVE_SHM=0`, { cause: e });
    }
    closeSync(fd);
  }

  /**
   * Takes the smallest free file that fits (and is not wastefully large) by renaming it to `path`:
   * first one of the capacity a new file of `bytes` would have (frames of one cut are all one size),
   * else of the larger capacities that fit, smallest first.
   */
  private claimFree(bytes: number, path: string): number | undefined {
    const exact = Math.ceil(bytes / GRANULE) * GRANULE;
    const fd = this.claimOf(exact, path);
    if (fd !== undefined) return fd;
    const most = Math.max(bytes * 2, bytes + 4 * GRANULE);
    for (const { cap } of this.capacities().filter((c) => c.cap >= bytes && c.cap <= most && c.cap !== exact).sort((a, b) => a.cap - b.cap)) {
      const fd = this.claimOf(cap, path);
      if (fd !== undefined) return fd;
    }
    return undefined;
  }

  /** A free file of capacity `cap`, renamed to `path` and opened; undefined when there is none left. */
  private claimOf(cap: number, path: string): number | undefined {
    const dir = join(this.free, `${SIZE_DIR}${cap}`);
    for (const f of safeReaddir(dir)) {
      try {
        renameSync(join(dir, f), path);
      } catch {
        continue; // another process took it first
      }
      this.freeTotal = Math.max(0, this.freeTotal - cap);
      this.stats.reused++;
      return openSync(path, fsConstants.O_RDWR);
    }
    return undefined;
  }

  /** The free list's capacity directories. */
  private capacities(): { cap: number; dir: string }[] {
    const out = [];
    for (const d of safeReaddir(this.free)) {
      const cap = d.startsWith(SIZE_DIR) ? Number(d.slice(SIZE_DIR.length)) : NaN;
      if (Number.isSafeInteger(cap) && cap > 0) out.push({ cap, dir: join(this.free, d) });
    }
    return out;
  }

  private create(path: string, bytes: number): number {
    const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    // Sized to the granule now, so the file's capacity (its name on the free list) covers near sizes.
    const cap = Math.ceil(bytes / GRANULE) * GRANULE;
    if (cap > bytes) writeSync(fd, new Uint8Array(1), 0, 1, cap - 1);
    if (fstatSync(fd).size < bytes) throw new CleaveError(ErrorCode.INTERNAL, 'shared-memory file could not be sized');
    this.stats.created++;
    return fd;
  }
}

/** The bytes of the frame `ref` names (read here or fetched from its host), checked against the reference. */
export function decodeShmBytes(ref: ShmRef, bytes: Uint8Array): DecodedFrame {
  let frame: DecodedFrame;
  try {
    frame = decodeFrame(bytes);
  } catch (e) {
    throw gone(ref, e);
  }
  if (frame.meta.shm !== ref.id) throw gone(ref);
  return frame;
}

function gone(ref: ShmRef, cause?: unknown): CleaveError {
  return new CleaveError(
    ErrorCode.FRAME_GONE,
    `shared-memory frame ${ref.name} (domain ${ref.domain}) is gone or was recycled: the work it carried was already done (a late redelivery), or its file expired`,
    { details: { name: ref.name, domain: ref.domain }, ...(cause === undefined ? {} : { cause }) },
  );
}

/** Free files of the flat layout of earlier versions (`free/<capacity>.<rand>`): a cache, dropped. */
function dropFlatFreeFiles(free: string): void {
  for (const f of safeReaddir(free)) if (f.includes('.')) rmSync(join(free, f), { force: true });
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The pool's domain id, created once by whichever process gets there first (atomic link). */
function readDomain(dir: string): string {
  const file = join(dir, 'domain');
  for (let i = 0; i < 3; i++) {
    try {
      const id = readFileSync(file, 'utf8').trim();
      if (DOMAIN.test(id)) return id;
    } catch {
      // not there yet
    }
    const host = hostname().replace(/[^A-Za-z0-9_-]/g, '').slice(0, 32) || 'host';
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, `${host}-${randomBytes(6).toString('hex')}\n`, { mode: 0o600 });
    try {
      linkSync(tmp, file);
    } catch {
      // another process won; read its id
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  throw new Error(`could not establish a shared-memory domain in ${dir}`);
}

/**
 * One side of a shared-memory hop, in bytes/s: the slower of writing a frame of `bytes` (encode and
 * write into a recycled file) and reading it back (read and decode). Best of `rounds`, after one
 * round that warms the free list: what the planner should charge each side of a same-host cut.
 */
export function measureShm(pool: ShmPool, bytes = 8 * 1024 * 1024, rounds = 4): number {
  const t: Tensor = { dtype: 'float32', shape: [bytes / 4], data: new Float32Array(bytes / 4).fill(0.5) };
  const scratch = new Scratch();
  let best = Infinity;
  for (let i = 0; i <= rounds; i++) {
    const t0 = performance.now();
    const ref = pool.writeFrame({ t });
    const t1 = performance.now();
    pool.readFrame(ref, scratch);
    const t2 = performance.now();
    pool.release(ref);
    if (i > 0) best = Math.min(best, Math.max(t1 - t0, t2 - t1));
  }
  return bytes / (Math.max(best, 1e-3) / 1000);
}
