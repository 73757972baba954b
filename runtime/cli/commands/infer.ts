// `cleave infer <model>`: deploys the model across the running cluster's executors (or an embedded one
// started for the duration), streams requests through the stages, optionally checks every result
// against the unsplit model in this process, and reports per-stage times, transfer volumes and throughput.
import { resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import ort from '../../ort.js';
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import type { Deployment, TensorSpec } from '../../../protocols/deployment.js';
import { tensor, type Tensor } from '../../../protocols/tensor-codec.js';
import { connectNats, readRunFile } from '../../nats/connect.js';
import { isAlive } from '../../nats/server.js';
import { startLocalDeployment, type LocalDeployment } from '../../local-deployment.js';
import { deployModelFile, undeploy } from '../../pipeline/deploy.js';
import { InferenceClient, type InferenceResult } from '../../pipeline/client.js';
import { compareTensors } from '../../onnx/tensor-compare.js';
import { toOrtTensor, fromOrtTensor } from '../../executor/ort-tensors.js';
import { digitPage } from '../../../examples/digit-pages.js';
import { parseInputs as parseInputShapes } from './analyze.js';
import { fillUniform, seededRandom } from '../../random.js';
import { BufferPool, floats } from '../../shm/buffers.js';
import { parseCommandArgs } from '../args.js';
import { usageOf } from '../usage.js';

export interface InferReport {
  runId: string;
  model: string;
  requests: number;
  completed: number;
  failed: number;
  errors: string[];
  maxAbsDiff: number | null;
  throughputPerSec: number;
  wallSeconds: number;
  latencyMs: { p50: number; p95: number };
  stages: {
    index: number;
    executors: string[];
    nodes: number;
    computeMsMean: number;
    waitMsMean: number;
    inMBPerRequest: number;
    outMBPerRequest: number;
    predictedSeconds: number | null;
  }[];
  plan: { algorithm: string; bottleneckSeconds: number; explanation: string };
}

export default async function infer(argv: string[]): Promise<number> {
  const { positionals, values } = parseCommandArgs(usageOf('infer'), {
    args: argv,
    allowPositionals: true,
    options: {
      input: { type: 'string', multiple: true },
      executors: { type: 'string', default: '3' },
      requests: { type: 'string', default: '8' },
      rate: { type: 'string' },
      compare: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      images: { type: 'string' },
      'max-in-flight': { type: 'string', default: '4' },
      'max-stages': { type: 'string' },
      objective: { type: 'string', default: 'throughput' },
    },
  });
  const model = positionals[0];
  if (!model) throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'name a model: cleave infer <model.onnx> [--input NAME=d,d,...] [--executors N] [--requests N] [--compare]');
  const report = await runInference({
    model: resolve(model),
    inputs: parseInputShapes(values.input ?? []),
    executors: positiveInt('--executors', values.executors),
    requests: positiveInt('--requests', values.requests),
    rate: values.rate ? Number(values.rate) : undefined,
    compare: values.compare,
    images: values.images === 'digits' ? 'digits' : undefined,
    maxInFlight: positiveInt('--max-in-flight', values['max-in-flight']),
    maxStages: values['max-stages'] ? positiveInt('--max-stages', values['max-stages']) : undefined,
    objective: values.objective === 'latency' ? 'latency' : 'throughput',
    progress: !values.json,
  });
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else console.log(formatReport(report));
  return report.failed === 0 && (report.maxAbsDiff === null || report.maxAbsDiff <= 1e-4) ? 0 : 1;
}

function positiveInt(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${flag} takes a whole number ≥ 1, not '${v}'`);
  return n;
}

export interface RunInferenceOptions {
  model: string;
  inputs?: Record<string, number[]>;
  executors?: number;
  requests?: number;
  rate?: number;
  compare?: boolean;
  images?: 'digits';
  maxInFlight?: number;
  maxStages?: number;
  objective?: 'throughput' | 'latency';
  replicas?: 'none' | 'spare';
  progress?: boolean;
  /** Called with each result as it arrives (for demos). */
  onResult?: (r: InferenceResult, i: number) => void;
}

/** Uses the running deployment (NATS_URL or `cleave up`), else starts an embedded one for the duration. */
export async function runInference(o: RunInferenceOptions): Promise<InferReport> {
  const run = readRunFile();
  const external = Boolean(process.env.NATS_URL) || Boolean(run && isAlive(run.natsPid));
  let local: LocalDeployment | undefined;
  let home: string | undefined;
  if (!external) {
    home = mkdtempSync(join(tmpdir(), 'cleave-infer-'));
    local = await startLocalDeployment({ executors: o.executors ?? 3, dataDir: home, writeRunFile: false });
  }
  const nc = await connectNats(local ? local.servers : undefined, 'cleave-infer');
  let deployment: Deployment | undefined;
  try {
    deployment = await deployModelFile(nc, o.model, { inputs: o.inputs, objective: o.objective, maxStages: o.maxStages, replicas: o.replicas });
    return await stream(nc, deployment, o);
  } finally {
    if (deployment) await undeploy(nc, deployment.run).catch(() => {});
    await nc.close();
    await local?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  }
}

async function stream(nc: Awaited<ReturnType<typeof connectNats>>, d: Deployment, o: RunInferenceOptions): Promise<InferReport> {
  const n = o.requests ?? 8;
  // Input memory is reused once a request is settled (the client keeps inputs until then, to resend).
  const inputMemory = new BufferPool();
  const makeInputs = (i: number) => sampleInputs(d.inputs, o.inputs ?? {}, i, o.images, (b) => inputMemory.take(b));
  const giveBack = (inputs: Record<string, Tensor>) => {
    for (const t of Object.values(inputs)) if (ArrayBuffer.isView(t.data)) inputMemory.give(t.data);
  };
  const client = await InferenceClient.open(nc, d.run, { maxInFlight: o.maxInFlight ?? 4 });
  const bar = o.progress && process.stderr.isTTY ? new cliProgress.SingleBar({ format: ' {bar} {value}/{total} requests | {rate} req/s', hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(n, 0, { rate: '0.0' });
  const results: (InferenceResult | undefined)[] = new Array(n);
  const errors: string[] = [];
  const t0 = performance.now();
  let done = 0;
  const sends: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    if (o.rate) {
      const due = t0 + (i * 1000) / o.rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    // Wait for room before making the next input: memory stays bounded by the in-flight limit.
    await client.ready();
    const inputs = makeInputs(i);
    sends.push(
      client.infer(inputs).then(
        (r) => {
          results[i] = r;
          o.onResult?.(r, i);
          // Kept for the comparison afterwards; otherwise its memory serves the next result.
          if (!o.compare) r.release();
        },
        (e: Error) => {
          errors.push(e.message);
        },
      ).finally(() => {
        giveBack(inputs);
        done++;
        bar?.update(done, { rate: (done / ((performance.now() - t0) / 1000)).toFixed(1) });
      }),
    );
  }
  await Promise.all(sends);
  const wallSeconds = (performance.now() - t0) / 1000;
  bar?.stop();
  await client.close();

  let maxAbsDiff: number | null = null;
  if (o.compare) {
    maxAbsDiff = 0;
    const session = await ort.InferenceSession.create(await readFile(o.model), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    try {
      for (let i = 0; i < n; i++) {
        const r = results[i];
        if (!r) continue;
        const inputs = makeInputs(i);
        const feeds = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, toOrtTensor(k, t)]));
        const expected = await session.run(feeds);
        for (const name of session.outputNames) {
          const want = fromOrtTensor(name, expected[name]!);
          const got = r.outputs[name];
          if (!got) throw new CleaveError(ErrorCode.STAGE_FAILED, `result ${i} lacks model output '${name}'`);
          // Any finite difference passes here; its size is what gets reported (and judged by the caller).
          const cmp = compareTensors({ ...got, dims: got.shape }, { ...want, dims: want.shape }, { rtol: 0, atol: Infinity });
          if (!cmp.ok) throw new CleaveError(ErrorCode.STAGE_FAILED, `result ${i} output '${name}' differs from single-process onnxruntime: ${cmp.message}`);
          maxAbsDiff = Math.max(maxAbsDiff, cmp.maxAbsDiff);
        }
        giveBack(inputs);
      }
    } finally {
      await session.release();
    }
  }

  const ok = results.filter((r): r is InferenceResult => Boolean(r));
  const lat = ok.map((r) => r.latencyMs).sort((a, b) => a - b);
  const pct = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! : 0);
  return {
    runId: d.run,
    model: d.model,
    requests: n,
    completed: ok.length,
    failed: n - ok.length,
    errors: [...new Set(errors)].slice(0, 5),
    maxAbsDiff,
    throughputPerSec: ok.length / wallSeconds,
    wallSeconds,
    latencyMs: { p50: pct(0.5), p95: pct(0.95) },
    stages: d.stages.map((s) => {
      const hops = ok.map((r) => r.hops.find((h) => h.stage === s.index)).filter((h): h is NonNullable<typeof h> => Boolean(h));
      const mean = (f: (h: (typeof hops)[number]) => number) => (hops.length ? hops.reduce((a, h) => a + f(h), 0) / hops.length : 0);
      const served = [...new Set(hops.map((h) => h.executor))];
      return {
        index: s.index,
        executors: served.length ? served : s.executors,
        nodes: d.plan.stages[s.index]?.nodes.length ?? 0,
        computeMsMean: mean((h) => h.computeMs),
        waitMsMean: mean((h) => h.waitMs),
        inMBPerRequest: mean((h) => h.inBytes) / 1e6,
        outMBPerRequest: mean((h) => h.outBytes) / 1e6,
        predictedSeconds: s.predicted?.stageSeconds ?? null,
      };
    }),
    plan: { algorithm: d.plan.algorithm, bottleneckSeconds: d.plan.predicted.bottleneckSeconds, explanation: d.plan.explanation },
  };
}

/**
 * Deterministic inputs for request i: digit pages for image inputs when asked, else seeded noise. Float
 * tensors are made in memory from `alloc` when given (e.g. a BufferPool's `take`, given back once the
 * request is settled): a fresh 4.9 MB input per request cost page faults and garbage collections on
 * the cores the pipeline runs on.
 */
export function sampleInputs(specs: TensorSpec[], shapes: Record<string, number[]>, i: number, images?: 'digits', alloc?: (bytes: number) => Uint8Array): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const s of specs) {
    const given = shapes[s.name];
    const shape = s.shape.map((d, k) => {
      if (typeof d === 'number' && d > 0) return d;
      const g = given?.[k];
      if (g === undefined) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `input '${s.name}' has a dynamic dim ${k} (${String(d)}); give its shape with --input ${s.name}=${s.shape.map((x) => (typeof x === 'number' && x > 0 ? x : 'N')).join(',')}`);
      return g;
    });
    if (images === 'digits' && s.dtype === 'float32' && shape.length === 4 && shape[0] === 1 && shape[1] === 3) {
      out[s.name] = digitPage(i, shape[2], shape[3], alloc);
      continue;
    }
    out[s.name] = noise(s.dtype, shape, i * 7919 + s.name.length, alloc);
  }
  return out;
}

function noise(dtype: TensorSpec['dtype'], shape: number[], seed: number, alloc?: (bytes: number) => Uint8Array): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = seededRandom(seed);
  switch (dtype) {
    case 'float32': {
      const a = floats(Float32Array, n, alloc);
      fillUniform(a, seed, -1, 1);
      return tensor('float32', shape, a);
    }
    case 'float64': {
      const a = floats(Float64Array, n, alloc);
      fillUniform(a, seed, -1, 1);
      return tensor('float64', shape, a);
    }
    case 'int64': {
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) a[i] = BigInt(Math.floor(r() * 10));
      return tensor('int64', shape, a);
    }
    case 'int32': {
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) a[i] = Math.floor(r() * 10);
      return tensor('int32', shape, a);
    }
    case 'bool': {
      const a = new Uint8Array(n);
      for (let i = 0; i < n; i++) a[i] = r() < 0.5 ? 1 : 0;
      return tensor('bool', shape, a);
    }
    default:
      throw new CleaveError(ErrorCode.BAD_ARGUMENT, `cleave infer makes sample inputs of float32/float64/int32/int64/bool, not ${dtype}; use the library client for other inputs`);
  }
}

export function formatReport(r: InferReport): string {
  const lines = [
    `run ${r.runId}: ${r.model}, ${r.stages.length} stages (${r.plan.algorithm} plan, predicted bottleneck ${(r.plan.bottleneckSeconds * 1000).toFixed(1)} ms)`,
    `${r.completed}/${r.requests} requests in ${r.wallSeconds.toFixed(2)} s: ${r.throughputPerSec.toFixed(2)} req/s, latency p50 ${r.latencyMs.p50.toFixed(0)} ms, p95 ${r.latencyMs.p95.toFixed(0)} ms`,
    r.maxAbsDiff === null ? 'results not compared (add --compare)' : `every result checked against single-process onnxruntime: max |diff| = ${r.maxAbsDiff.toExponential(2)}`,
    '',
    'stage  executors               nodes  compute ms  wait ms   in MB/req  out MB/req',
    ...r.stages.map((s) => `${String(s.index).padEnd(6)} ${s.executors.join(',').padEnd(23)} ${String(s.nodes).padStart(5)}  ${s.computeMsMean.toFixed(1).padStart(10)}  ${s.waitMsMean.toFixed(1).padStart(7)}  ${s.inMBPerRequest.toFixed(2).padStart(10)}  ${s.outMBPerRequest.toFixed(2).padStart(10)}`),
  ];
  if (r.errors.length) lines.push('', 'errors:', ...r.errors.map((e) => `  ${e}`));
  lines.push('', `why this plan: ${r.plan.explanation}`);
  return lines.join('\n');
}
