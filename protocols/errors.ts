// Typed errors with stable codes: the one error class every actor throws, and its wire form.
// A code never changes meaning once shipped; the message says what to do next.

/** Stable error codes. Group by area; add, never rename. */
export const ErrorCode = {
  // codec
  CODEC_TRUNCATED: 'CODEC_TRUNCATED',
  CODEC_CORRUPT: 'CODEC_CORRUPT',
  CODEC_BAD_DTYPE: 'CODEC_BAD_DTYPE',
  CODEC_SHAPE_MISMATCH: 'CODEC_SHAPE_MISMATCH',
  CODEC_TOO_LARGE: 'CODEC_TOO_LARGE',
  CODEC_VERSION: 'CODEC_VERSION',
  // transport / runtime
  NATS_UNAVAILABLE: 'NATS_UNAVAILABLE',
  NATS_SERVER_MISSING: 'NATS_SERVER_MISSING',
  NATS_SERVER_START: 'NATS_SERVER_START',
  BAD_MESSAGE: 'BAD_MESSAGE',
  UNKNOWN_MESSAGE: 'UNKNOWN_MESSAGE',
  UNKNOWN_CONTROL: 'UNKNOWN_CONTROL',
  TIMEOUT: 'TIMEOUT',
  BAD_ARGUMENT: 'BAD_ARGUMENT',
  UNKNOWN_ROLE: 'UNKNOWN_ROLE',
  INTERNAL: 'INTERNAL',
  // model / graph
  MODEL_NOT_FOUND: 'MODEL_NOT_FOUND',
  MODEL_INVALID: 'MODEL_INVALID',
  MODEL_UNKNOWN_OP: 'MODEL_UNKNOWN_OP',
  MODEL_MISSING_INITIALIZER: 'MODEL_MISSING_INITIALIZER',
  MODEL_SHAPE_CONFLICT: 'MODEL_SHAPE_CONFLICT',
  MODEL_UNSUPPORTED: 'MODEL_UNSUPPORTED',
  // planning
  PLAN_INFEASIBLE_MEMORY: 'PLAN_INFEASIBLE_MEMORY',
  PLAN_INFEASIBLE_PIN: 'PLAN_INFEASIBLE_PIN',
  PLAN_INFEASIBLE: 'PLAN_INFEASIBLE',
  PLAN_INVALID: 'PLAN_INVALID',
  // inference
  INPUT_INVALID: 'INPUT_INVALID',
  STAGE_FAILED: 'STAGE_FAILED',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  ARTIFACT_INTEGRITY: 'ARTIFACT_INTEGRITY',
  // executor: the inference worker died (create a new runner) / was closed by its owner
  RUNNER_FAILED: 'RUNNER_FAILED',
  RUNNER_CLOSED: 'RUNNER_CLOSED',
  // a message names a frame (shared memory, blob) that is no longer there: done already, or expired
  FRAME_GONE: 'FRAME_GONE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** NATS header that carries an error's code across the wire. */
export const ERROR_CODE_HEADER = 'Cleave-Error-Code';
/** NATS header that carries an error's message across the wire. */
export const ERROR_MESSAGE_HEADER = 'Cleave-Error';

export interface CleaveErrorOptions {
  cause?: unknown;
  /** Structured facts for machines (stage, executor, tensor name, …). */
  details?: Record<string, unknown>;
}

export class CleaveError extends Error {
  override readonly name = 'CleaveError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: CleaveErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  toWire(): CleaveErrorWire {
    return { code: this.code, message: this.message, details: this.details };
  }

  static fromWire(w: unknown): CleaveError {
    if (w && typeof w === 'object' && typeof (w as CleaveErrorWire).code === 'string') {
      const ww = w as CleaveErrorWire;
      const code = KNOWN_CODES.has(ww.code) ? (ww.code as ErrorCode) : ErrorCode.INTERNAL;
      return new CleaveError(code, String(ww.message ?? ''), { details: ww.details ?? {} });
    }
    return new CleaveError(ErrorCode.INTERNAL, `unparseable error from peer: ${safeString(w)}`);
  }
}

export interface CleaveErrorWire {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** Any thrown value as a CleaveError (unknown failures become INTERNAL, cause kept). */
export function asCleaveError(e: unknown): CleaveError {
  if (e instanceof CleaveError) return e;
  const msg = e instanceof Error ? e.message : safeString(e);
  return new CleaveError(ErrorCode.INTERNAL, msg, { cause: e });
}

export function isCleaveError(e: unknown, code?: ErrorCode): e is CleaveError {
  return e instanceof CleaveError && (code === undefined || e.code === code);
}

function safeString(v: unknown): string {
  try {
    return typeof v === 'string' ? v : JSON.stringify(v);
  } catch {
    return String(v);
  }
}
