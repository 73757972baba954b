// The shared-memory frame pool on its own (no NATS): frames round-trip, files are recycled and never
// read as someone else's, references are checked, and two processes share one pool safely.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ShmPool, formatShmRef, parseShmRef, measureShm, readerOf } from '../runtime/shm/pool.js';
import { BufferPool, Scratch } from '../runtime/shm/buffers.js';
import { tensor, type Tensor } from '../protocols/tensor-codec.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

const dirs: string[] = [];
function freshPool(opts: Parameters<typeof ShmPool.open>[0] = {}): ShmPool {
  const dir = mkdtempSync(join(tmpdir(), 'cleave-shm-'));
  dirs.push(dir);
  const p = ShmPool.open({ dir, ...opts });
  assert.ok(p, 'a pool opens on a writable directory');
  return p;
}
test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The pool's free files, as (capacity, path), whatever directory of the free list they are in. */
function freeFiles(pool: ShmPool): { cap: number; path: string }[] {
  const free = join(pool.dir, 'free');
  return readdirSync(free).flatMap((d) => readdirSync(join(free, d)).map((f) => ({ cap: Number(d.replace('size-', '')), path: join(free, d, f) })));
}

const isCode = (code: ErrorCode) => (e: unknown) => e instanceof CleaveError && e.code === code;

function sample(): Record<string, Tensor> {
  return {
    a: tensor('float32', [2, 3], Float32Array.from([1, -2, 3.5, Number.NaN, -0, 1e-40])),
    b: tensor('int64', [2], BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n])),
    c: tensor('bool', [3], Uint8Array.from([1, 0, 1])),
    s: tensor('string', [2], ['x', 'ünï']),
  };
}

function assertSame(got: Record<string, Tensor>, want: Record<string, Tensor>): void {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const [k, w] of Object.entries(want)) {
    assert.equal(got[k]!.dtype, w.dtype);
    assert.deepEqual(got[k]!.shape, w.shape);
    if (Array.isArray(w.data)) assert.deepEqual(got[k]!.data, w.data);
    else assert.deepEqual(Buffer.from((got[k]!.data as Uint8Array).buffer, (got[k]!.data as Uint8Array).byteOffset, w.data.byteLength), Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength));
  }
}

test('shm pool - frames round-trip bit-exact into owned memory, a reused scratch buffer, or an allocator', () => {
  const pool = freshPool();
  const ref = pool.writeFrame(sample());
  assertSame(pool.readFrame(ref).tensors, sample());
  const scratch = new Scratch();
  const viewed = pool.readFrame(ref, scratch).tensors;
  assertSame(viewed, sample());
  assert.equal((viewed.a!.data as Float32Array).buffer, scratch.get(1).buffer, 'decoded as views into the scratch buffer');
  const buffers = new BufferPool();
  const taken = pool.readFrame(ref, (n) => buffers.take(n)).tensors;
  assertSame(taken, sample());
  buffers.give(taken.a!.data as Float32Array);
  assert.ok(buffers.heldBytes > 0, 'given back for the next result');
});

test('shm pool - a released file is recycled for the next frame, and the old reference is FRAME_GONE', () => {
  const pool = freshPool();
  const big = (v: number) => ({ t: tensor('float32', [256 * 1024], new Float32Array(256 * 1024).fill(v)) });
  const first = pool.writeFrame(big(1));
  pool.release(first);
  assert.throws(() => pool.readFrame(first), isCode(ErrorCode.FRAME_GONE));
  const second = pool.writeFrame(big(2));
  assert.equal(pool.stats.reused, 1, 'the released file was taken again');
  assert.equal((pool.readFrame(second).tensors.t!.data as Float32Array)[123], 2);
  // The recycled file under its new name, asked for with the first frame's id: recognised, not misread.
  assert.throws(() => pool.readFrame({ ...second, id: first.id }), isCode(ErrorCode.FRAME_GONE));
  pool.release(second);
  pool.release(second); // twice is harmless
});

test('shm pool - references are checked: malformed ones are BAD_MESSAGE, and no name leaves the pool', () => {
  const pool = freshPool();
  const ref = pool.writeFrame(sample());
  assert.deepEqual(parseShmRef(formatShmRef(ref)), ref);
  for (const bad of ['', 'a;b', `${ref.domain};../../etc/passwd;10;x`, `${ref.domain};${ref.name};-1;${ref.id}`, `dom.ain;${ref.name};10;${ref.id}`, `${formatShmRef(ref)};extra`]) {
    assert.throws(() => parseShmRef(bad), isCode(ErrorCode.BAD_MESSAGE), bad);
  }
  assert.throws(() => pool.readPieces('../domain', 0, 10, 4, () => {}), isCode(ErrorCode.BAD_ARGUMENT));
  assert.throws(() => pool.readFrame({ ...ref, name: '..' }), isCode(ErrorCode.FRAME_GONE));
  assert.throws(() => pool.readFrame({ ...ref, domain: 'elsewhere' }), isCode(ErrorCode.BAD_ARGUMENT));
  pool.release({ ...ref, name: '../domain' }); // ignored
  assert.ok(readdirSync(pool.dir).includes('domain'));
});

test('shm pool - beyond its free budget a released file is deleted; sweep removes stale live frames', () => {
  const pool = freshPool({ freeBudgetBytes: 0 });
  const ref = pool.writeFrame(sample());
  pool.release(ref);
  assert.equal(pool.stats.deleted, 1);
  assert.deepEqual(freeFiles(pool), []);
  const stale = pool.writeFrame(sample());
  const fresh = pool.writeFrame(sample());
  const old = (Date.now() - 2 * 3600_000) / 1000;
  utimesSync(join(pool.dir, 'live', stale.name), old, old);
  assert.equal(pool.sweep(3600_000), 1);
  assert.throws(() => pool.readFrame(stale), isCode(ErrorCode.FRAME_GONE));
  assertSame(pool.readFrame(fresh).tensors, sample());
});

test('shm pool - a full free list makes room for the sizes in use: the least recently released files go first', async () => {
  const pool = freshPool({ freeBudgetBytes: 4 * 1024 * 1024 });
  const frame = (floats: number) => ({ t: tensor('float32', [floats], new Float32Array(floats).fill(1)) });
  // Six files of 576 KiB (a past model's cut) fill the free list to 3.4 of its 4 MiB.
  const small = Array.from({ length: 6 }, () => pool.writeFrame(frame(128 * 1024)));
  const inodes = small.map((r) => statSync(join(pool.dir, 'live', r.name)).ino);
  for (const r of small) {
    pool.release(r);
    await new Promise((res) => setTimeout(res, 5)); // distinct release times
  }
  assert.equal(freeFiles(pool).length, 6);
  const big = pool.writeFrame(frame(512 * 1024));
  assert.equal(pool.stats.created, 7, 'no small file fits the 2 MiB frame');
  pool.release(big);
  // 5.4 MiB asked for 4: the four oldest small files (2.25 MiB) make room, the big one is kept.
  assert.equal(pool.stats.evicted, 4);
  assert.equal(pool.stats.deleted, 0);
  const free = freeFiles(pool).map((f) => f.cap).sort((a, b) => a - b);
  assert.deepEqual(free, [576 * 1024, 576 * 1024, 2112 * 1024]);
  const kept = freeFiles(pool).map((f) => statSync(f.path).ino);
  assert.ok(kept.includes(inodes[4]!) && kept.includes(inodes[5]!), 'the two most recently released small files are the ones kept');
  pool.writeFrame(frame(512 * 1024));
  pool.writeFrame(frame(128 * 1024));
  assert.equal(pool.stats.created, 7, 'both sizes now come from warm files');
  assert.equal(pool.stats.reused, 2);
});

test('shm pool - the free list is kept by capacity: a frame takes a file of its own size first, else the smallest larger one that fits; files of the flat layout of earlier versions are dropped', () => {
  const pool = freshPool();
  const frame = (floats: number) => ({ t: tensor('float32', [floats], new Float32Array(floats).fill(2)) });
  const refs = [pool.writeFrame(frame(300 * 1024)), pool.writeFrame(frame(100 * 1024)), pool.writeFrame(frame(150 * 1024))];
  const caps = refs.map((r) => statSync(join(pool.dir, 'live', r.name)).size);
  const inodes = refs.map((r) => statSync(join(pool.dir, 'live', r.name)).ino);
  refs.forEach((r) => pool.release(r));
  assert.deepEqual(readdirSync(join(pool.dir, 'free')).sort(), caps.map((c) => `size-${c}`).sort(), 'one directory per capacity');
  // 120 K floats (a 512 KiB file): none of its own capacity; the 640 KiB one fits, the 1216 KiB one is too big.
  const mid = pool.writeFrame(frame(120 * 1024));
  assert.equal(statSync(join(pool.dir, 'live', mid.name)).ino, inodes[2]);
  const own = pool.writeFrame(frame(100 * 1024));
  assert.equal(statSync(join(pool.dir, 'live', own.name)).ino, inodes[1], 'a file of the frame\'s own capacity');
  assertSame(pool.readFrame(own).tensors, frame(100 * 1024));
  assert.equal(pool.stats.reused, 2);
  assert.equal(pool.writeFrame(frame(10 * 1024)) && pool.stats.created, 4, 'a 4x larger file is not taken for a small frame');
  // An earlier version's free file, `free/<capacity>.<rand>`, is gone once a pool opens the directory.
  writeFileSync(join(pool.dir, 'free', `${caps[0]}.0123abcd`), new Uint8Array(caps[0]!));
  ShmPool.open({ dir: pool.dir });
  assert.deepEqual(readdirSync(join(pool.dir, 'free')).filter((f) => f.includes('.')), []);
  assert.equal(freeFiles(pool).length, 1, 'the 1.2 MiB file is still on the free list');
});

test('shm pool - pools on one directory share a domain; another directory is another domain; CLEAVE_SHM=0 turns it off', () => {
  const a = freshPool();
  const again = ShmPool.open({ dir: a.dir })!;
  assert.equal(again.domain, a.domain);
  assertSame(again.readFrame(a.writeFrame(sample())).tensors, sample());
  assert.notEqual(freshPool().domain, a.domain);
  process.env.CLEAVE_SHM = '0';
  try {
    assert.equal(ShmPool.open({ dir: a.dir }), undefined);
  } finally {
    delete process.env.CLEAVE_SHM;
  }
  assert.ok(measureShm(a, 1024 * 1024, 2) > 0);
});

test('shm pool - two processes churning one pool never read each other’s frames', async () => {
  const pool = freshPool();
  const run = (who: number) => promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/helpers/shm-churn.ts', pool.dir, String(who), '300'], { cwd: new URL('..', import.meta.url).pathname });
  const results = (await Promise.all([run(1), run(2)])).map((r) => JSON.parse(r.stdout) as { bad: number; reused: number; written: number });
  for (const r of results) {
    assert.equal(r.bad, 0);
    assert.equal(r.written, 300);
  }
  assert.ok(results.reduce((a, r) => a + r.reused, 0) > 300, 'files were recycled between the processes');
});

test('shm pool - readPieces hands out a range in order, in pieces of at most the size asked, each kept intact', () => {
  const pool = freshPool();
  // 2.3 MB: several read blocks, a last piece shorter than the others, a range starting mid-file.
  const values = Float32Array.from({ length: 600_000 }, (_, i) => Math.sin(i));
  const ref = pool.writeFrame({ t: tensor('float32', [values.length], values) });
  const whole = new Uint8Array(readFileSync(join(pool.dir, 'live', ref.name)));
  for (const [offset, length, piece] of [[0, ref.bytes, 32 * 1024], [12_345, ref.bytes - 12_345 - 7, 32 * 1024], [5, 100, 4096], [0, ref.bytes, 3 * 1024 * 1024]] as const) {
    const pieces: Uint8Array[] = [];
    pool.readPieces(ref.name, offset, length, piece, (p) => pieces.push(p));
    assert.ok(pieces.every((p) => p.byteLength > 0 && p.byteLength <= piece), 'no piece above the size asked');
    assert.equal(pieces.length, Math.ceil(length / piece));
    const joined = new Uint8Array(length);
    let at = 0;
    for (const p of pieces) { joined.set(p, at); at += p.byteLength; }
    assert.equal(at, length);
    assert.deepEqual(joined, whole.subarray(offset, offset + length), `range ${offset}+${length} in ${piece}-byte pieces`);
  }
  assert.throws(() => pool.readPieces(ref.name, 0, whole.byteLength + 1, 32 * 1024, () => {}), isCode(ErrorCode.FRAME_GONE), 'past the end of the file');
});

test('shm pool - two pools under one reader token (an executor and its inference worker) never name a frame alike', () => {
  const a = freshPool();
  const b = ShmPool.open({ dir: a.dir, reader: a.reader })!;
  const refs = [];
  for (let i = 0; i < 50; i++) refs.push(a.writeFrame(sample()), b.writeFrame(sample()));
  assert.equal(new Set(refs.map((r) => r.name)).size, refs.length, 'file names are unique');
  assert.equal(new Set(refs.map((r) => r.id)).size, refs.length, 'frame ids are unique');
  for (const r of refs) assert.equal(readerOf(r.name), a.reader, 'every name says who wrote it');
  // Released and written again: recycled files keep unique names on the free list too.
  for (const r of refs) (refs.indexOf(r) % 2 ? b : a).release(r);
  const again = Array.from({ length: 20 }, (_, i) => (i % 2 ? b : a).writeFrame(sample()));
  for (const r of again) assertSame((again.indexOf(r) % 2 ? b : a).readFrame(r).tensors, sample());
  assert.equal(new Set([...refs, ...again].map((r) => r.id)).size, refs.length + again.length);
});
