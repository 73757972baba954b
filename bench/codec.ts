// `cleave bench codec [--json] [--sizes 1,8,64] [--runs N]`: tensor-codec throughput next to a plain
// memory copy of the same bytes measured in the same run, and msgpackr's own packing for comparison.
import { Packr } from 'msgpackr';
import { decodeFrame, encodeFrame, crc32, tensor, splitFrame, FrameAssembler, type Tensor } from '../protocols/tensor-codec.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

export interface CodecBenchRow {
  mb: number;
  /** encodeFrame, default options (fresh output buffer, payload CRC on). */
  encodeMBps: number;
  /** decodeFrame of that frame (zero-copy views, payload CRC verified). */
  decodeMBps: number;
  /** TypedArray.set into a preallocated buffer. */
  memcpyMBps: number;
  /** encodeMBps / memcpyMBps (fresh output memory vs. a preallocated copy target). */
  encodeVsMemcpy: number;
  /** decodeMBps / memcpyMBps (views plus one CRC pass vs. a copy). */
  decodeVsMemcpy: number;
  /** Like for like: encodeMBps / allocCopyMBps, both writing into fresh memory. */
  encodeVsAllocCopy: number;
  /** Like for like: encodeReuseMBps / memcpyMBps, both writing into reused memory. */
  encodeReuseVsMemcpy: number;
  encodeReuseNoChecksumVsMemcpy: number;
  /** msgpackr pack / unpack of { data: Float32Array } with moreTypes (copies both ways). */
  msgpackrPackMBps: number;
  msgpackrUnpackMBps: number;
  /** msgpackr pack of the tensor as a plain bin (msgpackr's own bin handling, the rejected layout). */
  msgpackrBinPackMBps: number;
  /** Fresh Buffer.allocUnsafe + set: the floor for any encoder that returns new memory. */
  allocCopyMBps: number;
  encodeNoChecksumMBps: number;
  /** encodeFrame into a reused buffer via `allocate`. */
  encodeReuseMBps: number;
  encodeReuseNoChecksumMBps: number;
  decodeNoChecksumMBps: number;
  decodeCopyMBps: number;
  crc32MBps: number;
  /** splitFrame into 1 MiB chunks + FrameAssembler in order. */
  chunkRoundTripMBps: number;
  decodeZeroCopy: boolean;
  runs: number;
}

export default async function codecBench(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const sizes = parseList(option(argv, '--sizes') ?? '1,8,64');
  const runsArg = option(argv, '--runs');
  const rows: CodecBenchRow[] = [];
  for (const mb of sizes) {
    const runs = runsArg ? Number(runsArg) : mb >= 64 ? 5 : mb >= 8 ? 9 : 15;
    rows.push(benchSize(mb, runs));
  }
  if (json) {
    console.log(JSON.stringify({ node: process.version, sizes: rows }, null, 2));
    return 0;
  }
  const cols: [string, keyof CodecBenchRow][] = [
    ['MB', 'mb'], ['memcpy', 'memcpyMBps'], ['alloc+copy', 'allocCopyMBps'], ['encode', 'encodeMBps'], ['enc/memcpy', 'encodeVsMemcpy'],
    ['enc/alloc+copy', 'encodeVsAllocCopy'], ['enc nocrc', 'encodeNoChecksumMBps'],
    ['enc reuse', 'encodeReuseMBps'], ['reuse/memcpy', 'encodeReuseVsMemcpy'], ['enc reuse nocrc', 'encodeReuseNoChecksumMBps'], ['nocrc/memcpy', 'encodeReuseNoChecksumVsMemcpy'],
    ['decode', 'decodeMBps'], ['dec/memcpy', 'decodeVsMemcpy'], ['dec nocrc', 'decodeNoChecksumMBps'], ['dec copy', 'decodeCopyMBps'],
    ['msgpackr pack', 'msgpackrPackMBps'], ['msgpackr unpack', 'msgpackrUnpackMBps'], ['msgpackr bin', 'msgpackrBinPackMBps'],
    ['crc32', 'crc32MBps'], ['chunk rt', 'chunkRoundTripMBps'],
  ];
  console.log('tensor codec, float32, MB/s (median); ratios are codec / memcpy in the same run');
  for (const [label, key] of cols) {
    console.log(`${label.padEnd(16)}${rows.map((r) => fmt(r[key]).padStart(12)).join('')}`);
  }
  console.log(`zero-copy decode: ${rows.map((r) => r.decodeZeroCopy).join(', ')}`);
  console.log('fresh memory (first touch of new pages) is slow on these VMs: compare "encode" with "alloc+copy", "enc reuse" with "memcpy"');
  return 0;
}

function benchSize(mb: number, runs: number): CodecBenchRow {
  const n = Math.round(mb * 1024 * 1024);
  const data = new Float32Array(n / 4);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 1e3;
  const src = new Uint8Array(data.buffer);
  const t: Tensor = tensor('float32', [data.length], data);
  const frame = { tensors: { x: t }, meta: { requestId: 'bench', stage: 1, epoch: 7 } };

  const dst = new Uint8Array(n);
  const memcpy = time(runs, () => { dst.set(src); });
  const allocCopy = time(runs, () => { Buffer.allocUnsafe(n).set(src); });

  const encoded = encodeFrame(frame);
  const encodedNoCrc = encodeFrame(frame, { checksum: false });
  const encode = time(runs, () => { encodeFrame(frame); });
  const encodeNoCrc = time(runs, () => { encodeFrame(frame, { checksum: false }); });
  const reuse = Buffer.allocUnsafe(encoded.length);
  const allocate = (len: number): Uint8Array => reuse.subarray(0, len);
  const encodeReuse = time(runs, () => { encodeFrame(frame, { allocate }); });
  const encodeReuseNoCrc = time(runs, () => { encodeFrame(frame, { allocate, checksum: false }); });

  const decode = time(runs, () => { decodeFrame(encoded); });
  const decodeNoCrc = time(runs, () => { decodeFrame(encodedNoCrc); });
  const decodeCopy = time(runs, () => { decodeFrame(encoded, { copy: true }); });
  const decoded = decodeFrame(encoded).tensors.x.data as Float32Array;
  const zeroCopy = decoded.buffer === encoded.buffer;
  if (!Buffer.from(decoded.buffer, decoded.byteOffset, decoded.byteLength).equals(src)) {
    throw new CleaveError(ErrorCode.INTERNAL, 'bench codec: decoded tensor differs from the input');
  }

  const packr = new Packr({ moreTypes: true, useRecords: false });
  const mpFrame = { tensors: { x: { dtype: 'float32', shape: [data.length], data } }, meta: frame.meta };
  const packed = packr.pack(mpFrame);
  const msgpackrPack = time(runs, () => { packr.pack(mpFrame); });
  const msgpackrUnpack = time(runs, () => { packr.unpack(packed); });
  const binFrame = { tensors: { x: { dtype: 'float32', shape: [data.length], data: src } }, meta: frame.meta };
  const msgpackrBin = time(runs, () => { packr.pack(binFrame); });

  const crc = time(runs, () => { crc32(src); });
  const chunkRt = time(Math.max(3, Math.ceil(runs / 2)), () => {
    const asm = new FrameAssembler();
    let whole: Uint8Array | undefined;
    for (const c of splitFrame(encoded, 1024 * 1024)) whole = asm.add(c) ?? whole;
    if (!whole) throw new CleaveError(ErrorCode.INTERNAL, 'bench codec: reassembly did not complete');
  });

  const mbps = (ms: number): number => round(mb / (ms / 1000));
  return {
    mb,
    encodeMBps: mbps(encode),
    decodeMBps: mbps(decode),
    memcpyMBps: mbps(memcpy),
    encodeVsMemcpy: round(memcpy / encode, 3),
    decodeVsMemcpy: round(memcpy / decode, 3),
    encodeVsAllocCopy: round(allocCopy / encode, 3),
    encodeReuseVsMemcpy: round(memcpy / encodeReuse, 3),
    encodeReuseNoChecksumVsMemcpy: round(memcpy / encodeReuseNoCrc, 3),
    msgpackrPackMBps: mbps(msgpackrPack),
    msgpackrUnpackMBps: mbps(msgpackrUnpack),
    msgpackrBinPackMBps: mbps(msgpackrBin),
    allocCopyMBps: mbps(allocCopy),
    encodeNoChecksumMBps: mbps(encodeNoCrc),
    encodeReuseMBps: mbps(encodeReuse),
    encodeReuseNoChecksumMBps: mbps(encodeReuseNoCrc),
    decodeNoChecksumMBps: mbps(decodeNoCrc),
    decodeCopyMBps: mbps(decodeCopy),
    crc32MBps: mbps(crc),
    chunkRoundTripMBps: mbps(chunkRt),
    decodeZeroCopy: zeroCopy,
    runs,
  };
}

/** Median wall time in ms of `runs` calls, after two warm-up calls. */
function time(runs: number, f: () => void): number {
  f(); f();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    f();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  return Math.max(ms[ms.length >> 1], 1e-4);
}

function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

function parseList(s: string): number[] {
  const out = s.split(',').map(Number);
  if (out.some((x) => !(x > 0))) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `--sizes takes MB values like 1,8,64, got '${s}'`);
  return out;
}

const round = (x: number, digits = 0): number => Number(x.toFixed(digits));
const fmt = (v: unknown): string => String(v);
