// GraphAnalyzer's pure library: model artifacts (ONNX, TF.js layers) → PartitionGraph with per-node
// cost, edges with bytes and every cut. Entry point; internals live beside it.
import { extname, basename } from 'node:path';
import type { PartitionGraph } from '../../protocols/graph.js';
import { loadModelFile } from '../onnx/proto.js';
import { analyzeOnnx, type AnalyzeOptions } from './onnx.js';
import { analyzeTfjsFile } from './tfjs.js';

export { analyzeOnnx } from './onnx.js';
export { analyzeTfjs, analyzeTfjsFile } from './tfjs.js';
export { buildCuts, buildEdges, topoOrder } from './order.js';
export { nodeFlops } from './flops.js';
export { parseProfile } from './probe.js';
export { STANDARD_ONNX_OPS } from './onnx-ops.js';

export type { AnalyzeOptions } from './onnx.js';
export type { DagNode } from './order.js';
export type { TfjsModelJson } from './tfjs.js';

/** Analyze a model file: `.json` as a TF.js layers model (model.json + weight files), anything else as ONNX. */
export async function analyzeModelFile(path: string, opts: AnalyzeOptions = {}): Promise<PartitionGraph> {
  const withPath = { ...opts, modelPath: opts.modelPath ?? basename(path) };
  if (extname(path).toLowerCase() === '.json') return analyzeTfjsFile(path, withPath);
  return analyzeOnnx(await loadModelFile(path), withPath);
}
