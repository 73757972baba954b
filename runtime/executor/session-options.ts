// How an executor runs a partition in onnxruntime, in one place: the executor's runner and the stage
// timing that predicts it (runtime/graph/probe.ts measureStageSeconds) must run the same thing.

/**
 * Fully optimised; memory-pattern planning off: it pre-sizes one block for every intermediate, and on
 * PP-OCRv4 det stage 0 at 640x640 that costs ~30 MB more resident memory for no speed gain.
 */
export const STAGE_SESSION_OPTIONS = { graphOptimizationLevel: 'all', enableMemPattern: false } as const;
