// Prompt collection of big dead buffers. A tensor's bytes live outside V8's heap and its small wrapper
// in the young generation, which fills slowly: a stage whose outputs (fresh memory from onnxruntime
// each run) are dead once written to shared memory held ~7 dead 9 MB copies at its peak and kept
// faulting in new pages. A young-generation collection (~0.1-0.2 ms) before the next run frees them.
import v8 from 'node:v8';
import vm from 'node:vm';

const gc: ((o?: { type: 'minor' | 'major' }) => void) | undefined = (() => {
  try {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
  } catch {
    return undefined;
  }
})();

/** A young-generation collection now (no-op where the runtime does not allow it). */
export function collectYoung(): void {
  gc?.({ type: 'minor' });
}

/**
 * A full collection now: after a one-off burst of big buffers that lived long enough to be promoted
 * (an artifact's download chunks, say), so their memory is free for what comes next instead of waiting
 * for the old generation to fill. Milliseconds on a small heap: not for the request path.
 */
export function collectAll(): void {
  gc?.({ type: 'major' });
}
