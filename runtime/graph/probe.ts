// onnxruntime passes over a copy of the model: a probe run that measures every intermediate tensor's
// dtype and shape, and a profiling pass that times every node (Chrome-trace kernel events).
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { DType } from '../../protocols/graph.js';
import { encodeModel, onnx } from '../onnx/proto.js';
import { STAGE_SESSION_OPTIONS } from '../executor/session-options.js';

export interface Feed {
  dtype: DType;
  shape: number[];
}

export interface ProbeOptions {
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
}

/** A copy of `model` whose node names are `ids` (so ORT's profile events map back to our ids). */
function namedCopy(model: onnx.IModelProto, ids: readonly string[]): onnx.ModelProto {
  const copy = onnx.ModelProto.decode(encodeModel(model));
  (copy.graph?.node ?? []).forEach((n, i) => { n.name = ids[i]; });
  return copy;
}

// Loaded on first use: the TF.js path and pure callers never pay for the native binding.
const loadOrt = () => import('../ort.js');

async function zeroFeeds(feeds: Record<string, Feed>): Promise<Record<string, Tensor>> {
  const ort = await loadOrt();
  const out: Record<string, Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) {
    const n = f.shape.reduce((a, b) => a * b, 1);
    const t = f.dtype;
    const data =
      t === 'float32' ? new Float32Array(n) : t === 'float64' ? new Float64Array(n)
      : t === 'int64' ? new BigInt64Array(n) : t === 'uint64' ? new BigUint64Array(n)
      : t === 'int32' ? new Int32Array(n) : t === 'uint32' ? new Uint32Array(n)
      : t === 'int16' ? new Int16Array(n) : t === 'uint16' || t === 'float16' || t === 'bfloat16' ? new Uint16Array(n)
      : t === 'int8' ? new Int8Array(n) : t === 'string' ? Array<string>(n).fill('') : new Uint8Array(n);
    out[name] = new ort.Tensor(t === 'bfloat16' ? 'float16' : t, data as Float32Array, f.shape);
  }
  return out;
}

async function session(bytes: Uint8Array, opts: InferenceSession.SessionOptions, what: string): Promise<InferenceSession> {
  const ort = await loadOrt();
  try {
    return await ort.InferenceSession.create(bytes, { interOpNumThreads: 1, graphOptimizationLevel: 'disabled', logSeverityLevel: 4, ...opts });
  } catch (e) {
    throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED,
      `onnxruntime cannot load the model for the ${what} (${(e as Error).message.split('\n')[0]}); analyze without --input/--profile to use static shapes only`, { cause: e });
  }
}

/**
 * Dtype and shape of every node output (or of `only` those, plus the graph outputs), measured by one
 * run on zero-filled inputs of a copy whose graph outputs list those intermediates (outputs of nodes
 * inside subgraphs excluded).
 */
export async function probeShapes(
  model: onnx.IModelProto, ids: readonly string[], feeds: Record<string, Feed>, opts: ProbeOptions & { only?: ReadonlySet<string> } = {},
): Promise<Map<string, Feed>> {
  const copy = namedCopy(model, ids);
  const g = copy.graph!;
  g.output ??= [];
  const inputs = new Set((g.input ?? []).map((v) => v.name));
  const have = new Set(g.output.map((v) => v.name));
  // Every extra output stays alive for the whole run (no buffer reuse): expose only what is asked for.
  for (const n of g.node ?? []) for (const o of n.output ?? []) {
    if (o && !have.has(o) && !inputs.has(o) && (!opts.only || opts.only.has(o))) { have.add(o); g.output.push(onnx.ValueInfoProto.create({ name: o })); }
  }
  const s = await session(encodeModel(copy), { intraOpNumThreads: opts.threads ?? 1 }, 'shape probe');
  try {
    let out: InferenceSession.OnnxValueMapType;
    try {
      out = await s.run(await zeroFeeds(feeds), { logSeverityLevel: 4 });
    } catch (e) {
      // Zero-filled data can legitimately fail (data-dependent shapes), so this is not a shape conflict.
      throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED,
        `onnxruntime could not run the model on zero-filled inputs of the sample shapes (${(e as Error).message.split('\n')[0]}); if shapes look wrong, check the --input shapes against the model`, { cause: e });
    }
    const shapes = new Map<string, Feed>();
    for (const [name, v] of Object.entries(out)) {
      const t = v as Tensor;
      if (t && Array.isArray(t.dims)) shapes.set(name, { dtype: t.type as DType, shape: [...t.dims] });
    }
    return shapes;
  } finally {
    await s.release();
  }
}

export interface ProfileOptions extends ProbeOptions {
  /** Timed runs after one warm-up run (default 3). */
  runs?: number;
}

/**
 * Seconds per node id: the median over `runs` timed runs of the node's kernel time, read from
 * onnxruntime's Chrome-trace profile (events `<node name>_kernel_time`, cat "Node").
 */
export async function profileNodes(
  model: onnx.IModelProto, ids: readonly string[], feeds: Record<string, Feed>, opts: ProfileOptions = {},
): Promise<{ perNode: Map<string, number>; runSeconds: number }> {
  const runs = Math.max(1, opts.runs ?? 3);
  const dir = await mkdtemp(join(tmpdir(), 'cleave-profile-'));
  try {
    const s = await session(encodeModel(namedCopy(model, ids)), {
      intraOpNumThreads: opts.threads ?? 1, enableProfiling: true, profileFilePrefix: join(dir, 'ort'),
    }, 'profiling pass');
    const tensors = await zeroFeeds(feeds);
    try {
      for (let r = 0; r <= runs; r++) await s.run(tensors);
    } finally {
      s.endProfiling();
      await s.release();
    }
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    if (files.length === 0) throw new CleaveError(ErrorCode.INTERNAL, 'onnxruntime wrote no profile file; rerun without --profile');
    const events = JSON.parse(await readFile(join(dir, files[0]), 'utf8')) as TraceEvent[];
    return parseProfile(events, runs);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface TraceEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
}

/** Per-node median kernel seconds over the last `runs` model_run spans (the warm-up run is dropped). */
export function parseProfile(events: readonly TraceEvent[], runs: number): { perNode: Map<string, number>; runSeconds: number } {
  const spans = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
  const timed = spans.slice(-runs);
  const perRun: Map<string, number>[] = timed.map(() => new Map());
  const SUFFIX = '_kernel_time';
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith(SUFFIX)) continue;
    const ts = e.ts ?? 0;
    const r = timed.findIndex((sp) => ts >= (sp.ts ?? 0) && ts <= (sp.ts ?? 0) + (sp.dur ?? 0));
    if (r < 0) continue;
    const id = e.name.slice(0, -SUFFIX.length);
    perRun[r].set(id, (perRun[r].get(id) ?? 0) + (e.dur ?? 0) / 1e6);
  }
  const ids = new Set(perRun.flatMap((m) => [...m.keys()]));
  const perNode = new Map<string, number>();
  for (const id of ids) perNode.set(id, median(perRun.map((m) => m.get(id) ?? 0)));
  return { perNode, runSeconds: median(timed.map((sp) => (sp.dur ?? 0) / 1e6)) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface StageTimeOptions extends ProbeOptions {
  /** Timed runs per stage after one warm-up (default 7; the fastest is reported: a neighbour's burst
   *  only ever adds time, and one busy moment must not move a cut). */
  runs?: number;
}

/**
 * Seconds per run of each stage as executors run it: its extracted model with the executors' session
 * options (STAGE_SESSION_OPTIONS: fully optimised), on `threads` (default 1). Node times from profileNodes come
 * from an unoptimised run (so that node names map back), and optimisation speeds stages up unevenly
 * (fused convolutions in one, resizes in another) and adds layout reorders at cuts: this measures what
 * the plan will really cost. Stage k is fed what stages before it produced from zero-filled inputs.
 */
export async function measureStageSeconds(stageModels: readonly onnx.IModelProto[], feeds: Record<string, Feed>, opts: StageTimeOptions = {}): Promise<number[]> {
  return (await measurePlansSeconds([stageModels], feeds, opts))[0]!;
}

/**
 * measureStageSeconds for several plans at once, side by side: every stage of every plan is loaded,
 * and the timed runs go round all of them in turn, so that a burst of a neighbour on this VM (they
 * last 100s of ms) lands on every candidate alike instead of on the one being timed, and the plans
 * compare fairly. seconds[plan][stage], each the fastest of its runs.
 */
export async function measurePlansSeconds(plans: readonly (readonly onnx.IModelProto[])[], feeds: Record<string, Feed>, opts: StageTimeOptions = {}): Promise<number[][]> {
  const runs = Math.max(1, opts.runs ?? 7);
  const zero = await zeroFeeds(feeds);
  const loaded: { s: InferenceSession; feeds: Record<string, Tensor> }[][] = [];
  try {
    for (const [pi, stageModels] of plans.entries()) {
      const available: Record<string, Tensor> = { ...zero };
      const stages: { s: InferenceSession; feeds: Record<string, Tensor> }[] = [];
      loaded.push(stages);
      for (const [k, m] of stageModels.entries()) {
        const s = await session(encodeModel(m), { intraOpNumThreads: opts.threads ?? 1, ...STAGE_SESSION_OPTIONS }, `timing of stage ${k}${plans.length > 1 ? ` of plan ${pi}` : ''}`);
        const stageFeeds: Record<string, Tensor> = {};
        stages.push({ s, feeds: stageFeeds }); // listed before anything can throw: released in finally
        for (const name of s.inputNames) {
          const t = available[name];
          if (!t) throw new CleaveError(ErrorCode.INTERNAL, `stage ${k} reads '${name}', which no earlier stage produced`);
          stageFeeds[name] = t;
        }
        Object.assign(available, await s.run(stageFeeds)); // also the warm-up
      }
    }
    const best = loaded.map((stages) => stages.map(() => Infinity));
    for (let r = 0; r < runs; r++) {
      for (const [pi, stages] of loaded.entries()) {
        for (const [k, { s, feeds: f }] of stages.entries()) {
          const t0 = performance.now();
          await s.run(f);
          best[pi]![k] = Math.min(best[pi]![k]!, (performance.now() - t0) / 1000);
        }
      }
    }
    return best;
  } finally {
    for (const s of loaded.flat()) await s.s.release();
  }
}
