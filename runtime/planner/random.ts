// Seeded random planning instances (chains and DAGs with skip connections, heterogeneous executors and
// links) for the planner's property tests and `cleave bench planner`. Same seed, same instance.
import type { ExecutorProfile, Link } from '../../protocols/plan.js';
import type { GraphInput } from './model.js';
import { seededRandom } from '../random.js';

/** mulberry32, seeded by a number (the project's one PRNG). */
export const rng = (seed: number): (() => number) => seededRandom(seed);

const logUniform = (r: () => number, lo: number, hi: number) => Math.exp(Math.log(lo) + r() * (Math.log(hi) - Math.log(lo)));

export interface RandomInstanceOptions {
  nodes: number;
  executors: number;
  /** `chain`: i → i+1 only; `dag`: plus skip connections (some tensors read several nodes later). */
  kind?: 'chain' | 'dag';
  /** Memory per executor as a fraction of the model's params (drawn in [min, max], independent of speed). */
  memoryFraction?: [number, number];
  /** Executor speeds span 1..speedSpread × the base. */
  speedSpread?: number;
}

export interface RandomInstance {
  graph: GraphInput;
  executors: ExecutorProfile[];
  links: Link[];
}

export function randomInstance(r: () => number, o: RandomInstanceOptions): RandomInstance {
  const n = o.nodes;
  const kind = o.kind ?? 'dag';
  const nodes = Array.from({ length: n }, (_, i) => ({
    id: `n${i}`,
    flops: Math.round(logUniform(r, 1e7, 2e9)),
    paramBytes: Math.round(logUniform(r, 1e4, 5e7)),
    outputBytes: Math.round(logUniform(r, 1e3, 2e7)),
  }));
  const edges: GraphInput['edges'] = [];
  for (let i = 0; i + 1 < n; i++) edges.push({ from: `n${i}`, to: `n${i + 1}`, bytes: nodes[i].outputBytes, tensor: `t${i}` });
  if (kind === 'dag') {
    for (let i = 0; i + 2 < n; i++) {
      if (r() < 0.3) {
        const j = i + 2 + Math.floor(r() * Math.min(6, n - i - 2));
        edges.push({ from: `n${i}`, to: `n${j}`, bytes: nodes[i].outputBytes, tensor: `t${i}` });
      }
    }
  }
  const totalParams = nodes.reduce((s, x) => s + x.paramBytes, 0);
  const [mlo, mhi] = o.memoryFraction ?? [0.3, 1.5];
  const spread = o.speedSpread ?? 8;
  const executors: ExecutorProfile[] = Array.from({ length: o.executors }, (_, i) => ({
    id: `e${i}`,
    flopsPerSec: Math.round(1e9 * (1 + r() * (spread - 1))),
    memoryBytes: Math.round(totalParams * (mlo + r() * (mhi - mlo)) + 4e7),
  }));
  const links: Link[] = [];
  for (let i = 0; i < o.executors; i++) {
    for (let j = i + 1; j < o.executors; j++) {
      links.push({ from: `e${i}`, to: `e${j}`, bandwidthBytesPerSec: Math.round(logUniform(r, 1e8, 1e10)), latencySeconds: logUniform(r, 5e-5, 2e-3) });
    }
  }
  return { graph: { nodes, edges }, executors, links };
}
