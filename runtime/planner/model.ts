// The planner's view of its inputs: graphs normalised to a topological order with crossing bytes per
// cut, executors with label sets and a link matrix, and the one cost model every algorithm prices with.
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { PartitionGraph } from '../../protocols/graph.js';
import type { Constraints, ExecutorProfile, LinkTable, StagePrediction } from '../../protocols/plan.js';

/** The minimal GRAPH.json form; a PartitionGraph is accepted too (extra fields are used when present). */
export interface GraphInput {
  model?: string;
  nodes: { id: string; flops: number; paramBytes: number; outputBytes: number; measuredSeconds?: number }[];
  edges: { from: string; to: string; bytes: number; tensor?: string }[];
}

/** Link used for pairs the link table does not list: 1 GB/s, 0.2 ms. */
export const DEFAULT_LINK = { bandwidthBytesPerSec: 1e9, latencySeconds: 2e-4 } as const;

/** A tensor (or, without tensor names, one producer's output) that may cross cuts; paid once per cut. */
export interface CrossingUnit {
  name: string;
  producer: number;
  lastConsumer: number;
  /** Positions of every node reading it. */
  consumers: number[];
  bytes: number;
}

export interface PlannerGraph {
  model?: string;
  /** Node ids in the normalised topological order (the given order when it already is one). */
  ids: string[];
  index: Map<string, number>;
  /** Work per node in FLOP units: `flops`, or `measuredSeconds × measuredFlopsPerSec` when asked. */
  work: Float64Array;
  params: Float64Array;
  outputBytes: Float64Array;
  /** Edges as order positions (for validation). */
  edges: { from: number; to: number }[];
  units: CrossingUnit[];
  /** cross[k]: bytes crossing the cut after k nodes (cross[0] = cross[n] = 0: graph I/O is not priced). */
  cross: Float64Array;
  /** act[j] = cross[j] + outputBytes[j]: live bytes while node j runs. */
  act: Float64Array;
  /** Prefix sums (length n + 1). */
  workPrefix: Float64Array;
  paramPrefix: Float64Array;
}

export interface NormaliseOptions {
  /** FLOP/s of the host that measured `measuredSeconds`; when given, measured nodes are priced from it. */
  measuredFlopsPerSec?: number;
}

export function normaliseGraph(g: GraphInput | PartitionGraph, opts: NormaliseOptions = {}): PlannerGraph {
  if (!g || !Array.isArray(g.nodes) || !Array.isArray(g.edges)) {
    throw new CleaveError(ErrorCode.PLAN_INVALID, 'graph must have `nodes` and `edges` arrays (GRAPH.json form: { nodes: [{ id, flops, paramBytes, outputBytes }], edges: [{ from, to, bytes }] }); fix the graph file');
  }
  const n = g.nodes.length;
  if (n === 0) throw new CleaveError(ErrorCode.PLAN_INVALID, 'graph has no nodes; there is nothing to plan');
  const given = new Map<string, number>();
  g.nodes.forEach((node, i) => {
    if (typeof node.id !== 'string' || node.id === '') throw new CleaveError(ErrorCode.PLAN_INVALID, `graph node #${i} has no string id; give every node a unique id`);
    if (given.has(node.id)) throw new CleaveError(ErrorCode.PLAN_INVALID, `graph node id '${node.id}' appears twice; node ids must be unique`);
    for (const f of ['flops', 'paramBytes', 'outputBytes'] as const) {
      const v = node[f] ?? 0;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new CleaveError(ErrorCode.PLAN_INVALID, `graph node '${node.id}' has ${f}=${String(v)}; it must be a finite number ≥ 0`);
    }
    given.set(node.id, i);
  });
  const gEdges = g.edges.map((e, i) => {
    const f = given.get(e.from);
    const t = given.get(e.to);
    if (f === undefined || t === undefined) throw new CleaveError(ErrorCode.PLAN_INVALID, `graph edge #${i} ${e.from} → ${e.to} names an unknown node; every edge must join two listed nodes`);
    if (f === t) throw new CleaveError(ErrorCode.PLAN_INVALID, `graph edge #${i} is a self-loop on '${e.from}'; remove it`);
    return { f, t, bytes: e.bytes ?? 0, tensor: e.tensor };
  });
  const order = stableTopoOrder(n, gEdges, g.nodes.map((x) => x.id));
  const pos = new Int32Array(n);
  order.forEach((orig, p) => { pos[orig] = p; });

  const ids = order.map((i) => g.nodes[i].id);
  const index = new Map(ids.map((id, p) => [id, p]));
  const work = new Float64Array(n);
  const params = new Float64Array(n);
  const outputBytes = new Float64Array(n);
  const ref = opts.measuredFlopsPerSec;
  order.forEach((orig, p) => {
    const node = g.nodes[orig];
    const m = node.measuredSeconds;
    work[p] = ref !== undefined && typeof m === 'number' && m >= 0 ? m * ref : node.flops ?? 0;
    params[p] = node.paramBytes ?? 0;
    outputBytes[p] = node.outputBytes ?? 0;
  });

  // One crossing unit per tensor name, or per producer when edges carry no tensor name.
  const byKey = new Map<string, CrossingUnit>();
  const edges: { from: number; to: number }[] = [];
  for (const e of gEdges) {
    const from = pos[e.f];
    const to = pos[e.t];
    edges.push({ from, to });
    const key = e.tensor !== undefined && e.tensor !== '' ? `t:${e.tensor}` : `n:${e.f}`;
    let u = byKey.get(key);
    if (!u) {
      u = { name: e.tensor ?? g.nodes[e.f].id, producer: from, lastConsumer: to, consumers: [], bytes: 0 };
      byKey.set(key, u);
    }
    u.consumers.push(to);
    u.lastConsumer = Math.max(u.lastConsumer, to);
    const bytes = e.bytes > 0 ? e.bytes : outputBytes[from];
    u.bytes = Math.max(u.bytes, bytes);
  }
  const units = [...byKey.values()];
  const cross = crossingBytes(n, units);
  const act = new Float64Array(n);
  for (let j = 0; j < n; j++) act[j] = cross[j] + outputBytes[j];
  return {
    model: g.model, ids, index, work, params, outputBytes, edges, units, cross, act,
    workPrefix: prefix(work), paramPrefix: prefix(params),
  };
}

/** Bytes crossing each cut k (after k nodes) for units with positions in one order. */
export function crossingBytes(n: number, units: readonly CrossingUnit[]): Float64Array {
  const diff = new Float64Array(n + 2);
  for (const u of units) {
    if (u.lastConsumer <= u.producer) continue;
    diff[u.producer + 1] += u.bytes;
    diff[u.lastConsumer + 1] -= u.bytes;
  }
  const cross = new Float64Array(n + 1);
  let run = 0;
  for (let k = 0; k <= n; k++) { run += diff[k]; cross[k] = Math.abs(run) < 1e-9 ? 0 : run; }
  cross[0] = 0;
  cross[n] = 0;
  return cross;
}

function prefix(a: Float64Array): Float64Array {
  const p = new Float64Array(a.length + 1);
  for (let i = 0; i < a.length; i++) p[i + 1] = p[i] + a[i];
  return p;
}

/** Kahn's algorithm that always takes the lowest given index ready: a given topological order is kept. */
function stableTopoOrder(n: number, edges: { f: number; t: number }[], ids: string[]): number[] {
  const indeg = new Int32Array(n);
  const out: number[][] = Array.from({ length: n }, () => []);
  let ordered = true;
  for (const e of edges) { indeg[e.t]++; out[e.f].push(e.t); if (e.f > e.t) ordered = false; }
  if (ordered) return Array.from({ length: n }, (_, i) => i);
  const heap = new MinHeap();
  for (let i = 0; i < n; i++) if (indeg[i] === 0) heap.push(i);
  const order: number[] = [];
  while (heap.size > 0) {
    const v = heap.pop();
    order.push(v);
    for (const w of out[v]) if (--indeg[w] === 0) heap.push(w);
  }
  if (order.length !== n) {
    const stuck = ids.filter((_, i) => indeg[i] > 0).slice(0, 5);
    throw new CleaveError(ErrorCode.PLAN_INVALID, `graph has a cycle through ${stuck.join(', ')}; a partition graph must be acyclic`, { details: { nodes: stuck } });
  }
  return order;
}

class MinHeap {
  private a: number[] = [];
  get size(): number { return this.a.length; }
  push(v: number): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) { const p = (i - 1) >> 1; if (a[p] <= a[i]) break; [a[p], a[i]] = [a[i], a[p]]; i = p; }
  }
  pop(): number {
    const a = this.a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && a[l] < a[m]) m = l;
        if (r < a.length && a[r] < a[m]) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// Executors and links

export interface PlannerExecutor {
  id: string;
  index: number;
  speed: number;
  memory: number;
  labels: Set<string>;
}

export interface Cluster {
  executors: PlannerExecutor[];
  byId: Map<string, PlannerExecutor>;
  /** bandwidth[i][j], latency[i][j] for executor indices. */
  bandwidth: Float64Array[];
  latency: Float64Array[];
  /** Executors named in an explicit link (not interchangeable with look-alikes). */
  linked: Set<number>;
}

export function labelSet(labels: ExecutorProfile['labels']): Set<string> {
  if (!labels) return new Set();
  if (Array.isArray(labels)) return new Set(labels.map(String));
  return new Set(Object.entries(labels).map(([k, v]) => `${k}=${v}`));
}

export function normaliseCluster(executors: readonly ExecutorProfile[], links: LinkTable | readonly LinkTableEntry[] = {}): Cluster {
  if (!Array.isArray(executors) || executors.length === 0) {
    throw new CleaveError(ErrorCode.PLAN_INVALID, 'no executors given; list at least one as { id, flopsPerSec, memoryBytes }');
  }
  const byId = new Map<string, PlannerExecutor>();
  const list = executors.map((e, i) => {
    if (typeof e.id !== 'string' || e.id === '') throw new CleaveError(ErrorCode.PLAN_INVALID, `executor #${i} has no string id; give every executor a unique id`);
    if (byId.has(e.id)) throw new CleaveError(ErrorCode.PLAN_INVALID, `executor id '${e.id}' appears twice; executor ids must be unique`);
    if (!(e.flopsPerSec > 0) || !Number.isFinite(e.flopsPerSec)) throw new CleaveError(ErrorCode.PLAN_INVALID, `executor '${e.id}' has flopsPerSec=${String(e.flopsPerSec)}; it must be a finite number > 0`);
    if (!(e.memoryBytes >= 0)) throw new CleaveError(ErrorCode.PLAN_INVALID, `executor '${e.id}' has memoryBytes=${String(e.memoryBytes)}; it must be a number ≥ 0 (Infinity allowed)`);
    const x: PlannerExecutor = { id: e.id, index: i, speed: e.flopsPerSec, memory: e.memoryBytes, labels: labelSet(e.labels) };
    byId.set(e.id, x);
    return x;
  });
  const table: LinkTable = Array.isArray(links) ? { links: links as LinkTableEntry[] } : (links as LinkTable);
  const def = table.default ?? DEFAULT_LINK;
  const k = list.length;
  const bandwidth = Array.from({ length: k }, () => new Float64Array(k).fill(def.bandwidthBytesPerSec));
  const latency = Array.from({ length: k }, () => new Float64Array(k).fill(def.latencySeconds));
  const linked = new Set<number>();
  const explicit = new Set<string>();
  for (const l of table.links ?? []) {
    const a = byId.get(l.from);
    const b = byId.get(l.to);
    if (!a || !b) continue; // links to executors not in this plan request are irrelevant
    if (!(l.bandwidthBytesPerSec > 0) || !(l.latencySeconds >= 0)) {
      throw new CleaveError(ErrorCode.PLAN_INVALID, `link ${l.from} → ${l.to} needs bandwidthBytesPerSec > 0 and latencySeconds ≥ 0`);
    }
    bandwidth[a.index][b.index] = l.bandwidthBytesPerSec;
    latency[a.index][b.index] = l.latencySeconds;
    explicit.add(`${a.index}>${b.index}`);
    if (!explicit.has(`${b.index}>${a.index}`)) {
      bandwidth[b.index][a.index] = l.bandwidthBytesPerSec;
      latency[b.index][a.index] = l.latencySeconds;
    }
    linked.add(a.index); linked.add(b.index);
  }
  return { executors: list, byId, bandwidth, latency, linked };
}

type LinkTableEntry = NonNullable<LinkTable['links']>[number];

/** Seconds to move `bytes` over the link i → j: latency + bytes / bandwidth (one message per request). */
export function transferSeconds(c: Cluster, i: number, j: number, bytes: number): number {
  return c.latency[i][j] + bytes / c.bandwidth[i][j];
}

// ---------------------------------------------------------------------------------------------
// Constraints resolved to positions

export interface ResolvedConstraints {
  /** allowed[e][j]: node j may run on executor e (pins). */
  allowed: Uint8Array[];
  /** Required cut positions (after k nodes), sorted, 1 ≤ k ≤ n − 1. */
  boundaries: number[];
  maxStages: number;
  /** Each pin with its resolved range and the executors satisfying it. */
  pins: { from: number; to: number; labels: string[]; executors: number[] }[];
}

export function resolveConstraints(g: PlannerGraph, c: Cluster, cons: Constraints = {}): ResolvedConstraints {
  const n = g.ids.length;
  const allowed = c.executors.map(() => new Uint8Array(n).fill(1));
  const pins: ResolvedConstraints['pins'] = [];
  for (const [i, pin] of (cons.pins ?? []).entries()) {
    const [fromId, toId] = typeof pin.nodes === 'string' ? [pin.nodes, pin.nodes]
      : Array.isArray(pin.nodes) ? pin.nodes : [pin.nodes?.from, pin.nodes?.to];
    const from = g.index.get(fromId as string);
    const to = g.index.get(toId as string);
    if (from === undefined || to === undefined) {
      throw new CleaveError(ErrorCode.PLAN_INVALID, `pin #${i} names node '${from === undefined ? fromId : toId}' which is not in the graph; pin existing node ids`, { details: { pin: i } });
    }
    if (from > to) throw new CleaveError(ErrorCode.PLAN_INVALID, `pin #${i} range ${fromId}..${toId} runs backwards in the graph's topological order; give it as [first, last]`);
    const labels = (pin.labels ?? []).map(String);
    const execs = c.executors.filter((e) => labels.every((l) => e.labels.has(l))).map((e) => e.index);
    if (execs.length === 0) {
      throw new CleaveError(ErrorCode.PLAN_INFEASIBLE_PIN,
        `pin on node ${fromId === toId ? `'${fromId}'` : `range '${fromId}'..'${toId}'`} requires labels [${labels.join(', ')}] but no executor has them all; add an executor with those labels or relax the pin`,
        { details: { node: fromId, to: toId, labels } });
    }
    const ok = new Set(execs);
    for (const e of c.executors) if (!ok.has(e.index)) allowed[e.index].fill(0, from, to + 1);
    pins.push({ from, to, labels, executors: execs });
  }
  const boundaries = [...new Set((cons.boundaries ?? []).map((b, i) => {
    const k = typeof b === 'number' ? b : (g.index.get(b) ?? -1) + 1;
    if (typeof b === 'string' && k === 0) throw new CleaveError(ErrorCode.PLAN_INVALID, `boundary #${i} names node '${b}' which is not in the graph; give node ids (cut after that node) or cut positions`);
    if (!Number.isInteger(k) || k < 1 || k > n - 1) throw new CleaveError(ErrorCode.PLAN_INVALID, `boundary #${i} (${String(b)}) is not a cut inside the graph; a cut position must be an integer in 1..${n - 1} (nodes before it)`);
    return k;
  }))].sort((a, b) => a - b);
  const maxStages = cons.maxStages ?? Infinity;
  if (!(maxStages >= 1)) throw new CleaveError(ErrorCode.PLAN_INVALID, `maxStages=${String(cons.maxStages)}; it must be ≥ 1`);
  if (boundaries.length + 1 > maxStages) {
    throw new CleaveError(ErrorCode.PLAN_INFEASIBLE, `${boundaries.length} manual boundaries need ${boundaries.length + 1} stages but maxStages is ${maxStages}; drop boundaries or raise maxStages`);
  }
  return { allowed, boundaries, maxStages, pins };
}

// ---------------------------------------------------------------------------------------------
// The cost model, priced from scratch for any stage list (used for every plan the library returns).

export interface StageAssignment {
  executor: string;
  nodes: string[];
  replicaExecutors?: string[];
}

export interface Evaluation {
  stages: StagePrediction[];
  bottleneckSeconds: number;
  bottleneckStage: number;
  latencySeconds: number;
  /** Stage of each node position in the plan's order. */
  order: number[];
}

/** Bytes crossing each cut k (after k nodes) when the graph runs in `order` (node indices, every node once). */
export function crossingInOrder(g: PlannerGraph, order: readonly number[]): Float64Array {
  const posOf = new Int32Array(g.ids.length).fill(-1);
  order.forEach((j, p) => { posOf[j] = p; });
  const units = g.units.map((u) => ({
    ...u, producer: posOf[u.producer], lastConsumer: Math.max(...u.consumers.map((q) => posOf[q])),
  }));
  return crossingBytes(order.length, units);
}

/**
 * Prices stages in the plan's own order. Stage time = compute + receive input cut + send output cut
 * (the executor does all three per request); with replicas the stage's rate is Σ 1/time of each
 * executor (one work-queue consumer, each subscriber pulls when free). Latency = Σ compute of the
 * primaries + each inter-stage transfer once.
 */
export function evaluateStages(g: PlannerGraph, c: Cluster, stages: readonly StageAssignment[]): Evaluation {
  const order: number[] = [];
  const stageOf: number[] = [];
  const bounds: number[] = [0];
  stages.forEach((s, si) => {
    for (const id of s.nodes) {
      const j = g.index.get(id);
      if (j === undefined) throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${si} lists node '${id}' which is not in the graph; re-plan against this graph`);
      order.push(j);
      stageOf.push(si);
    }
    bounds.push(order.length);
  });
  const cross = crossingInOrder(g, order);
  const preds: StagePrediction[] = [];
  let latency = 0;
  let bottleneck = -1;
  let bottleneckStage = 0;
  stages.forEach((s, si) => {
    const ex = c.byId.get(s.executor);
    if (!ex) throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${si} names executor '${s.executor}' which is not in the executor list; re-plan with the current executors`);
    const a = bounds[si];
    const b = bounds[si + 1];
    let work = 0, params = 0, activation = 0;
    for (let p = a; p < b; p++) {
      const j = order[p];
      work += g.work[j];
      params += g.params[j];
      activation = Math.max(activation, cross[p] + g.outputBytes[j]);
    }
    const prev = si > 0 ? c.byId.get(stages[si - 1].executor) : undefined;
    const next = si < stages.length - 1 ? c.byId.get(stages[si + 1].executor) : undefined;
    const inputBytes = si > 0 ? cross[a] : 0;
    const outputBytes = next ? cross[b] : 0;
    const timeOn = (e: PlannerExecutor) => {
      const compute = work / e.speed;
      const tin = prev ? transferSeconds(c, prev.index, e.index, inputBytes) : 0;
      const tout = next ? transferSeconds(c, e.index, next.index, outputBytes) : 0;
      return { compute, tin, tout, total: compute + tin + tout };
    };
    const main = timeOn(ex);
    let rate = 1 / main.total;
    for (const r of s.replicaExecutors ?? []) {
      const re = c.byId.get(r);
      if (!re) throw new CleaveError(ErrorCode.PLAN_INVALID, `stage ${si} names replica executor '${r}' which is not in the executor list`);
      rate += 1 / timeOn(re).total;
    }
    const stageSeconds = 1 / rate;
    latency += main.compute + main.tin;
    if (stageSeconds > bottleneck) { bottleneck = stageSeconds; bottleneckStage = si; }
    preds.push({
      computeSeconds: main.compute, transferInSeconds: main.tin, transferOutSeconds: main.tout, stageSeconds,
      memoryBytes: params + activation, paramBytes: params, activationBytes: activation, inputBytes, outputBytes,
    });
  });
  return { stages: preds, bottleneckSeconds: bottleneck, bottleneckStage, latencySeconds: latency, order: stageOf };
}
