// Bounding a wait: one helper for every await that must not outlive its deadline.
import { CleaveError, ErrorCode } from '../protocols/errors.js';

/** `p`, or a TIMEOUT error naming `what` once `ms` have passed (p keeps running; its outcome is ignored). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CleaveError(ErrorCode.TIMEOUT, `${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
