// A deployed plan (an epoch of a run) and the pure routing rules every stage follows: which tensors a
// stage reads, which it must pass on, where its output goes, and the work message's meta.
import type { DType, Dim } from './graph.js';
import type { Plan, StagePrediction } from './plan.js';
import { CleaveError, ErrorCode } from './errors.js';

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: Dim[];
}

export interface DeployedStage {
  index: number;
  /** Key of the stage's ONNX file in the artifacts object store: `sha256-<hex>`. */
  artifact: string;
  artifactBytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Tensor names the message leaving this stage carries (own outputs and pass-through). */
  forward: string[];
  /** Executors serving this stage (one durable consumer shared by all). */
  executors: string[];
  /**
   * Shared-memory domains of those executors (one per host; executors without a pool add none), for
   * producers choosing how to send this stage its input (runtime/shm/route.ts). Absent: not known.
   */
  domains?: string[];
  predicted?: StagePrediction;
}

export interface Deployment {
  run: string;
  epoch: number;
  model: string;
  /** Key of the whole model in the artifacts store. */
  modelArtifact: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  stages: DeployedStage[];
  plan: Plan;
  createdAt: number;
  /** How long a stage may hold a request before it is redelivered to another replica. */
  ackWaitMs: number;
  /** Deliveries of one request to a stage before it is dead-lettered. */
  maxDeliver: number;
}

/** Meta of a work message (and of a result, which adds `error` or nothing). */
export interface WorkMeta {
  /** Request id: unique per request; with the stage it is the JetStream de-duplication id. */
  req: string;
  run: string;
  epoch: number;
  /** The stage this message is for (`stages.length` for a result). */
  stage: number;
  /** Subject the final result goes to. */
  reply: string;
  /** The caller's shared-memory domain, null when it has no pool (how the last stage sends it the
   *  result: runtime/shm/route.ts); absent when not known. */
  replyDomain?: string | null;
  /** Caller's sequence number, for restoring order. */
  seq: number;
  /** When the caller sent it (ms since epoch). */
  sentAt: number;
  /** Per-stage timings and sizes, appended by each stage. */
  hops: Hop[];
  error?: { code: string; message: string; stage: number; executor: string };
}

export interface Hop {
  stage: number;
  executor: string;
  /** Time in the stage's model run. */
  computeMs: number;
  /** Time from the message's publish to the stage taking it (queueing + transfer). */
  waitMs: number;
  inBytes: number;
  outBytes: number;
}

/** Token-safe run id: letters, digits, '-', '_' (it appears in subjects and consumer names). */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,48}$/;

export const workSubject = (run: string, epoch: number, stage: number) => `cleave.work.${run}.${epoch}.${stage}`;
export const workDurable = (run: string, epoch: number, stage: number) => `stage-${run}-${epoch}-${stage}`;
export const resultSubject = (run: string, client: string) => `cleave.results.${run}.${client}`;
export const dedupId = (req: string, epoch: number, stage: number) => `${req}:${epoch}:${stage}`;

/**
 * For each stage, the tensors its outgoing message must carry: everything a later stage reads or the
 * caller gets back, that exists by then (model inputs, or outputs of this or an earlier stage).
 */
export function forwardSets(stages: { inputs: string[]; outputs: string[] }[], modelInputs: string[], modelOutputs: string[]): string[][] {
  const available = new Set(modelInputs);
  const out: string[][] = [];
  for (let k = 0; k < stages.length; k++) {
    for (const o of stages[k]!.outputs) available.add(o);
    const needed = new Set(modelOutputs);
    for (let j = k + 1; j < stages.length; j++) for (const i of stages[j]!.inputs) needed.add(i);
    out.push([...needed].filter((n) => available.has(n)).sort());
  }
  const last = out[out.length - 1];
  if (last) {
    const missing = modelOutputs.filter((o) => !last.includes(o));
    if (missing.length) throw new CleaveError(ErrorCode.PLAN_INVALID, `no stage produces model output(s) ${missing.join(', ')}; the split is incomplete`);
  }
  for (let k = 0; k < stages.length; k++) {
    const have = new Set(k === 0 ? modelInputs : out[k - 1]);
    const lacking = stages[k]!.inputs.filter((i) => !have.has(i));
    if (lacking.length) throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${k} reads ${lacking.join(', ')}, which no earlier stage passes on`);
  }
  return out;
}

/** Checks a request's tensors against the model's inputs: names, dtypes, ranks and fixed dims. */
export function checkInputs(specs: TensorSpec[], tensors: Record<string, { dtype: string; shape: number[] }>): void {
  const names = Object.keys(tensors);
  const expected = specs.map((s) => s.name);
  const unknown = names.filter((n) => !expected.includes(n));
  const missing = expected.filter((n) => !names.includes(n));
  if (unknown.length || missing.length) {
    throw new CleaveError(
      ErrorCode.INPUT_INVALID,
      `inputs do not match the model: ${missing.length ? `missing ${missing.join(', ')}` : ''}${missing.length && unknown.length ? '; ' : ''}${unknown.length ? `unknown ${unknown.join(', ')}` : ''}. The model takes: ${specs.map(fmtSpec).join(', ')}`,
      { details: { missing, unknown } },
    );
  }
  for (const s of specs) {
    const t = tensors[s.name]!;
    if (t.dtype !== s.dtype) {
      throw new CleaveError(ErrorCode.INPUT_INVALID, `input '${s.name}' is ${t.dtype} but the model takes ${s.dtype}; convert it before sending`, { details: { input: s.name } });
    }
    if (t.shape.length !== s.shape.length) {
      throw new CleaveError(ErrorCode.INPUT_INVALID, `input '${s.name}' has shape [${t.shape}] (rank ${t.shape.length}) but the model takes ${fmtSpec(s)} (rank ${s.shape.length})`, { details: { input: s.name } });
    }
    s.shape.forEach((d, i) => {
      if (typeof d === 'number' && d >= 0 && t.shape[i] !== d) {
        throw new CleaveError(ErrorCode.INPUT_INVALID, `input '${s.name}' has ${t.shape[i]} at dim ${i} but the model fixes it to ${d} (${fmtSpec(s)})`, { details: { input: s.name, dim: i } });
      }
    });
  }
}

function fmtSpec(s: TensorSpec): string {
  return `${s.name}: ${s.dtype}[${s.shape.join(',')}]`;
}
