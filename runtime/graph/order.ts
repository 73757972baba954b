// Format-independent DAG core: a topological order that keeps live bytes low, node→node edges, and the
// cut after every prefix of the order — all in O(nodes + edges + output size).
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { Cut, GraphEdge } from '../../protocols/graph.js';

/** The minimum a node needs for ordering: tensors read (params excluded) and written. */
export interface DagNode {
  id: string;
  inputs: readonly string[];
  outputs: readonly string[];
}

/**
 * Indices of `nodes` in a topological order. The given order is kept when it is already valid;
 * otherwise Kahn's algorithm picks, among ready nodes, the one whose run frees the most live bytes
 * (ties by original position). Tensors no node produces are taken as available from the start.
 */
export function topoOrder(nodes: readonly DagNode[], bytesOf: (tensor: string) => number): number[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.outputs.forEach((t) => { if (t) producer.set(t, i); }));
  let valid = true;
  for (let i = 0; i < nodes.length && valid; i++) {
    for (const t of nodes[i].inputs) {
      const p = producer.get(t);
      if (p !== undefined && p >= i) { valid = false; break; }
    }
  }
  if (valid) return nodes.map((_, i) => i);

  const indeg = new Int32Array(nodes.length);
  const consumers: number[][] = nodes.map(() => []);
  const remainingUses = new Map<string, number>();
  nodes.forEach((n, i) => {
    const seen = new Set<string>();
    for (const t of n.inputs) {
      if (!t || seen.has(t)) continue;
      seen.add(t);
      remainingUses.set(t, (remainingUses.get(t) ?? 0) + 1);
      const p = producer.get(t);
      if (p !== undefined) { indeg[i]++; consumers[p].push(i); }
    }
  });
  // Score: bytes a node adds minus bytes it frees (inputs it is the last reader of), when it becomes ready.
  const score = (i: number): number => {
    let s = 0;
    for (const t of nodes[i].outputs) if (t) s += bytesOf(t);
    for (const t of new Set(nodes[i].inputs)) if (t && remainingUses.get(t) === 1) s -= bytesOf(t);
    return s;
  };
  const heap = new MinHeap<number>((a, b) => a[0] - b[0] || a[1] - b[1]);
  nodes.forEach((_, i) => { if (indeg[i] === 0) heap.push([score(i), i], i); });
  const order: number[] = [];
  while (heap.size > 0) {
    const i = heap.pop();
    order.push(i);
    for (const t of new Set(nodes[i].inputs)) if (t) remainingUses.set(t, (remainingUses.get(t) ?? 1) - 1);
    for (const c of consumers[i]) if (--indeg[c] === 0) heap.push([score(c), c], c);
  }
  if (order.length !== nodes.length) {
    const stuck = nodes.filter((_, i) => indeg[i] > 0).slice(0, 5).map((n) => n.id);
    throw new CleaveError(ErrorCode.MODEL_INVALID,
      `the graph has a cycle through nodes ${stuck.join(', ')}; re-export the model (ONNX graphs must be acyclic)`,
      { details: { nodes: stuck } });
  }
  return order;
}

/** One edge per (producer, consumer, tensor), in the order given; tensors from graph inputs have no edge. */
export function buildEdges(ordered: readonly DagNode[], bytesOf: (tensor: string) => number): GraphEdge[] {
  const producer = new Map<string, string>();
  for (const n of ordered) for (const t of n.outputs) if (t) producer.set(t, n.id);
  const edges: GraphEdge[] = [];
  for (const n of ordered) {
    for (const t of new Set(n.inputs)) {
      const from = t ? producer.get(t) : undefined;
      if (from !== undefined) edges.push({ from, to: n.id, bytes: bytesOf(t), tensor: t });
    }
  }
  return edges;
}

/**
 * Cuts after 0..N nodes of `ordered`. A tensor crosses the cut after i nodes when it is produced at a
 * position ≤ i (graph inputs at 0) and read at a position > i or is a graph output. One sweep: each
 * tensor enters the live set at its producer and leaves after its last reader.
 */
export function buildCuts(
  ordered: readonly DagNode[],
  graphInputs: readonly string[],
  graphOutputs: readonly string[],
  bytesOf: (tensor: string) => number,
): Cut[] {
  const n = ordered.length;
  const isOutput = new Set(graphOutputs);
  const lastUse = new Map<string, number>(); // 1-based position of last reader; n+1 for graph outputs
  ordered.forEach((node, k) => { for (const t of node.inputs) if (t) lastUse.set(t, k + 1); });
  for (const t of isOutput) lastUse.set(t, n + 1);
  // deaths[p] = tensors whose last reader is at position p (they stop crossing from cut p on)
  const deaths: string[][] = Array.from({ length: n + 2 }, () => []);
  const live = new Map<string, number>();
  const birth = (t: string): void => {
    const last = lastUse.get(t);
    if (last === undefined || live.has(t)) return;
    live.set(t, bytesOf(t));
    deaths[last].push(t);
  };
  let liveBytes = 0;
  const snapshot = (after: number): Cut => {
    const tensors = [...live].map(([name, bytes]) => ({ name, bytes }));
    return { after, tensors, bytes: liveBytes };
  };
  for (const t of graphInputs) { birth(t); }
  liveBytes = sum(live.values());
  const cuts: Cut[] = [snapshot(0)];
  for (let k = 1; k <= n; k++) {
    for (const t of deaths[k]) { liveBytes -= live.get(t) ?? 0; live.delete(t); }
    for (const t of ordered[k - 1].outputs) {
      if (!t || live.has(t)) continue;
      birth(t);
      liveBytes += live.get(t) ?? 0;
    }
    cuts.push(snapshot(k));
  }
  return cuts;
}

function sum(xs: Iterable<number>): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** Binary min-heap of values keyed by a comparable tuple. */
class MinHeap<V> {
  private keys: [number, number][] = [];
  private vals: V[] = [];
  constructor(private readonly cmp: (a: [number, number], b: [number, number]) => number) {}
  get size(): number { return this.vals.length; }
  push(key: [number, number], v: V): void {
    this.keys.push(key); this.vals.push(v);
    let i = this.vals.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.cmp(this.keys[i], this.keys[p]) >= 0) break;
      this.swap(i, p); i = p;
    }
  }
  pop(): V {
    const top = this.vals[0];
    const lastK = this.keys.pop()!; const lastV = this.vals.pop()!;
    if (this.vals.length > 0) {
      this.keys[0] = lastK; this.vals[0] = lastV;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.vals.length && this.cmp(this.keys[l], this.keys[m]) < 0) m = l;
        if (r < this.vals.length && this.cmp(this.keys[r], this.keys[m]) < 0) m = r;
        if (m === i) break;
        this.swap(i, m); i = m;
      }
    }
    return top;
  }
  private swap(a: number, b: number): void {
    [this.keys[a], this.keys[b]] = [this.keys[b], this.keys[a]];
    [this.vals[a], this.vals[b]] = [this.vals[b], this.vals[a]];
  }
}
