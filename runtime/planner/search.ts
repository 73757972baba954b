// The planner's search: for a fixed executor sequence, exact sweeps over contiguous segments (bisection
// on the bottleneck for throughput, a shortest path for latency); over sequences, exact DFS or local search.
import type { Objective } from '../../protocols/plan.js';
import type { Cluster, PlannerGraph, ResolvedConstraints } from './model.js';

export interface SearchProblem {
  graph: PlannerGraph;
  cluster: Cluster;
  constraints: ResolvedConstraints;
  /** Treat every executor's memory as unbounded (used to diagnose infeasibility). */
  ignoreMemory?: boolean;
  /** Ignore pins (used to diagnose infeasibility). */
  ignorePins?: boolean;
}

export interface SearchResult {
  /** Executor indices, one per stage, in pipeline order. */
  sequence: number[];
  /** Stage i covers positions [bounds[i], bounds[i + 1]) of the normalised order. */
  bounds: number[];
  /** Objective value as the search's prefix arithmetic saw it. */
  value: number;
  /** `exact` when every sequence was covered (optimal), `heuristic` when the search gave up on that. */
  method: 'exact' | 'heuristic';
  /** Sequences solved exactly / prefix sweeps run (for reporting). */
  stats: { sweeps: number; steps: number; seedSweeps: number; sequencesSolved: number };
}

export interface SearchOptions {
  objective: Objective;
  /** Positions scanned the exact DFS may spend before handing over to local search. */
  exactBudget?: number;
  /** Force `heuristic` (for comparing) or `exact` (no budget). */
  method?: 'auto' | 'exact' | 'heuristic';
  /** Dominance memo in the exact search (default on; off only to cross-check it). */
  memo?: boolean;
}

const DEFAULT_BUDGET = 2e7;
/** Positions scanned the local search may spend (it keeps the best plan found when it runs out). */
const LOCAL_BUDGET = 2e7;
/** A sweep's fixed cost in budget steps (set-up, bookkeeping, the caller's per-sweep work). */
const SWEEP_OVERHEAD = 200;

type Found = { value: number; seq: number[]; bounds: number[] };
const REL = 1e-9;
/** Memory the exact search's dominance memo may hold. */
const MEMO_BYTES = 64e6;

class BudgetExceeded extends Error {}

/** Per-executor earliest start lo[e][b] of a segment ending at b (memory, pins, manual boundaries); b means none. */
export function segmentStarts(p: SearchProblem): Int32Array[] {
  const { graph: g, cluster: c, constraints: rc } = p;
  const n = g.ids.length;
  const dq = new Int32Array(n);
  return c.executors.map((ex) => {
    const lo = new Int32Array(n + 1);
    const mem = p.ignoreMemory ? Infinity : ex.memory;
    const allowed = rc.allowed[ex.index];
    let a = 0, head = 0, tail = 0, lastForbidden = -1, bi = 0, boundLo = 0;
    for (let b = 1; b <= n; b++) {
      const j = b - 1;
      while (tail > head && g.act[dq[tail - 1]] <= g.act[j]) tail--;
      dq[tail++] = j;
      while (a < b) {
        while (dq[head] < a) head++;
        if (g.paramPrefix[b] - g.paramPrefix[a] + g.act[dq[head]] <= mem) break;
        a++;
      }
      if (!p.ignorePins && !allowed[j]) lastForbidden = j;
      while (bi < rc.boundaries.length && rc.boundaries[bi] < b) boundLo = rc.boundaries[bi++];
      lo[b] = Math.max(a, lastForbidden + 1, boundLo);
    }
    return lo;
  });
}

/** Everything a sweep needs, precomputed once per problem. */
interface Ctx {
  n: number;
  k: number;
  W: Float64Array;
  C: Float64Array;
  speed: Float64Array;
  lo: Int32Array[];
  /** Most work any segment fitting executor e (memory, pins, boundaries) holds. */
  capWork: Float64Array;
  bw: Float64Array[];
  lat: Float64Array[];
  maxStages: number;
  dqIdx: Int32Array;
  dqVal: Float64Array;
  sweeps: number;
  /** Positions scanned by sweeps (what the exact budget counts). */
  steps: number;
  sequencesSolved: number;
  budget: number;
}

function makeCtx(p: SearchProblem, budget: number): Ctx {
  const n = p.graph.ids.length;
  const W = p.graph.workPrefix;
  const lo = segmentStarts(p);
  const capWork = Float64Array.from(lo.map((l) => {
    let most = 0;
    for (let b = 1; b <= n; b++) if (l[b] < b) most = Math.max(most, W[b] - W[l[b]]);
    return most;
  }));
  return {
    n, k: p.cluster.executors.length, W, C: p.graph.cross, capWork,
    speed: Float64Array.from(p.cluster.executors.map((e) => e.speed)), lo,
    bw: p.cluster.bandwidth, lat: p.cluster.latency,
    maxStages: Math.min(p.constraints.maxStages, p.cluster.executors.length, n),
    dqIdx: new Int32Array(n + 1), dqVal: new Float64Array(n + 1), sweeps: 0, steps: 0, sequencesSolved: 0, budget,
  };
}

/** Positions where a stage may start (or end): bits are meaningful only within [first, last]. */
interface PosSet {
  bits: Uint8Array;
  first: number;
  /** < first when empty. */
  last: number;
}

function posSet(n: number): PosSet {
  return { bits: new Uint8Array(n + 1), first: 0, last: -1 };
}

function startSet(n: number): PosSet {
  const s = posSet(n);
  s.bits[0] = 1;
  s.last = 0;
  return s;
}

/** Largest b ≤ cap with W[b] ≤ limit (W is nondecreasing); from ≤ result. */
function lastWithin(W: Float64Array, from: number, cap: number, limit: number): number {
  if (!(limit < Infinity)) return cap;
  let lo = from, hi = cap;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (W[mid] <= limit) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/** Most work these executors can do as stages of at most B each: Σ min(B × speed, most work fitting its memory). */
function workWithin(x: Ctx, execs: readonly number[], B: number): number {
  let w = 0;
  for (const e of execs) w += Math.min(B * x.speed[e], x.capWork[e]);
  return w;
}

/** Smallest b in [from, to) with W[b] ≥ limit, or `to`. */
function firstAtLeast(W: Float64Array, from: number, to: number, limit: number): number {
  let lo = from, hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (W[mid] >= limit) hi = mid; else lo = mid + 1;
  }
  return lo;
}

/**
 * Stage on executor e (after prev p, before next q; −1 for none) starting at any a in R: marks in
 * `out` every end b with stage time ≤ B. Stage time = (W[b]−W[a])/s + in(a) + out(b), so with
 * g(a) = W[a]/s − in(a) the test is W[b]/s + out(b) − B ≤ max g over the window [lo[b], b−1]
 * (a monotone deque). Only ends whose compute alone can stay ≤ B are scanned.
 */
function sweepThroughput(x: Ctx, e: number, p: number, q: number, restWork: number, R: PosSet, B: number, out: PosSet, parent?: Int32Array): boolean {
  const { n, W, C, dqIdx, dqVal } = x;
  const bits = R.bits, ob = out.bits, rLast = R.last;
  x.sweeps++;
  out.first = n + 1; out.last = -1;
  if (R.last < R.first) return false;
  const last = q < 0;
  const cap = last ? n : n - 1;
  const bFrom = R.first + 1;
  const bTo = lastWithin(W, Math.min(bFrom, cap), cap, W[R.last] + B * x.speed[e] * (1 + 1e-12));
  // Ends that leave more work than the later stages can do at ≤ B each are useless.
  const bMin = last ? n : firstAtLeast(W, bFrom, bTo + 1, W[n] - restWork * (1 + 1e-12));
  x.steps += bTo - bFrom + 1 + SWEEP_OVERHEAD;
  if (x.steps > x.budget) throw new BudgetExceeded();
  const inv = 1 / x.speed[e];
  const lo = x.lo[e];
  const inLat = p >= 0 ? x.lat[p][e] : 0, inInvBw = p >= 0 ? 1 / x.bw[p][e] : 0;
  const outLat = q >= 0 ? x.lat[e][q] : 0, outInvBw = q >= 0 ? 1 / x.bw[e][q] : 0;
  let head = 0, tail = 0;
  if (bTo >= bFrom) ob.fill(0, bFrom, bTo + 1);
  for (let b = bFrom; b <= bTo; b++) {
    const a = b - 1;
    if (a <= rLast && bits[a] !== 0) {
      const g = W[a] * inv - (p >= 0 ? inLat + C[a] * inInvBw : 0);
      while (tail > head && dqVal[tail - 1] <= g) tail--;
      dqIdx[tail] = a; dqVal[tail++] = g;
    }
    if (b < bMin) continue;
    const l = lo[b];
    while (head < tail && dqIdx[head] < l) head++;
    if (head === tail) continue;
    const need = W[b] * inv + (last ? 0 : outLat + C[b] * outInvBw) - B;
    if (need <= dqVal[head]) {
      ob[b] = 1;
      if (parent) parent[b] = dqIdx[head];
      if (b < out.first) out.first = b;
      out.last = b;
    }
  }
  return out.last >= out.first;
}

/** Can a last stage on e (after p) starting at some a in R end at n within B? */
function lastStageWithin(x: Ctx, e: number, p: number, R: PosSet, B: number): boolean {
  const { n, W, C } = x;
  const inv = 1 / x.speed[e];
  const lat = p >= 0 ? x.lat[p][e] : 0, invBw = p >= 0 ? 1 / x.bw[p][e] : 0;
  let g = -Infinity;
  const bits = R.bits;
  for (let a = Math.max(x.lo[e][n], R.first); a <= R.last && a < n; a++) {
    if (bits[a] === 0) continue;
    const v = W[a] * inv - (p >= 0 ? lat + C[a] * invBw : 0);
    if (v > g) g = v;
  }
  return g > -Infinity && W[n] * inv - B <= g;
}

/** Stage times of a sequence with given bounds, in prefix arithmetic. */
function stageTimes(x: Ctx, seq: number[], bounds: number[]): number[] {
  return seq.map((e, i) => {
    const a = bounds[i], b = bounds[i + 1];
    let t = x.W[b] * (1 / x.speed[e]) - x.W[a] * (1 / x.speed[e]);
    if (i > 0) t += x.lat[seq[i - 1]][e] + x.C[a] * (1 / x.bw[seq[i - 1]][e]);
    if (i < seq.length - 1) t += x.lat[e][seq[i + 1]] + x.C[b] * (1 / x.bw[e][seq[i + 1]]);
    return t;
  });
}

/** Any stage time is at most this (every node on the slowest executor plus the worst two transfers). */
function upperBound(x: Ctx): number {
  let minS = Infinity, maxLat = 0, minBw = Infinity, maxC = 0;
  for (const s of x.speed) minS = Math.min(minS, s);
  for (let i = 0; i < x.k; i++) for (let j = 0; j < x.k; j++) if (i !== j) { maxLat = Math.max(maxLat, x.lat[i][j]); minBw = Math.min(minBw, x.bw[i][j]); }
  for (const c of x.C) maxC = Math.max(maxC, c);
  const link = x.k > 1 ? maxLat + maxC / minBw : 0;
  return (x.W[x.n] / minS + 2 * link) * 1.01 + 1e-12;
}

/** Optimal bottleneck for one executor sequence (within 1e-10 relative), or null when none is < `below`. */
function solveSequenceThroughput(x: Ctx, seq: number[], below: number): { value: number; bounds: number[] } | null {
  x.sequencesSolved++;
  const m = seq.length;
  const sets = Array.from({ length: m }, () => posSet(x.n));
  const parents = Array.from({ length: m }, () => new Int32Array(x.n + 1));
  const start = startSet(x.n);
  const after = seq.map((_, i) => seq.slice(i + 1));
  const attempt = (B: number): number[] | null => {
    let R = start;
    for (let i = 0; i < m; i++) {
      const restWork = i < m - 1 ? workWithin(x, after[i], B) : 0;
      if (!sweepThroughput(x, seq[i], i > 0 ? seq[i - 1] : -1, i < m - 1 ? seq[i + 1] : -1, restWork, R, B, sets[i], parents[i])) return null;
      R = sets[i];
    }
    if (R.last !== x.n) return null;
    const bounds = new Array<number>(m + 1);
    bounds[m] = x.n;
    for (let i = m - 1; i >= 0; i--) bounds[i] = parents[i][bounds[i + 1]];
    return bounds;
  };
  let hi = Number.isFinite(below) ? below : upperBound(x);
  let best = attempt(hi);
  if (!best) return null;
  hi = Math.max(...stageTimes(x, seq, best));
  let sumS = 0;
  for (const e of seq) sumS += x.speed[e];
  let lo = x.W[x.n] / sumS * (1 - 1e-12);
  for (let it = 0; it < 200 && hi - lo > 1e-10 * hi; it++) {
    const mid = (lo + hi) / 2;
    const b = attempt(mid);
    if (b) { best = b; hi = Math.max(...stageTimes(x, seq, b)); } else lo = mid;
  }
  if (hi >= below) return null;
  return { value: hi, bounds: best };
}

/** Best latency so far ending at each position: values meaningful only within [first, last]. */
interface LatSet {
  f: Float64Array;
  first: number;
  last: number;
}

/**
 * What any continuation after a stage on e costs at least: one transfer out of e, plus the rest of the
 * work spread over the executors that may follow, fastest first, each taking at most the most work any
 * segment fitting its memory holds (a fractional relaxation: convex, piecewise linear in the work left).
 */
interface RestBound {
  /** False when no stage may follow (only the end counts). */
  canGoOn: boolean;
  /** cumWork[j] / cumTime[j]: work and time of the j fastest followers filled to their caps. */
  cumWork: Float64Array;
  cumTime: Float64Array;
  invSpeed: Float64Array;
  lat: number;
  invBw: number;
}

const NO_REST: RestBound = { canGoOn: false, cumWork: new Float64Array(1), cumTime: new Float64Array(1), invSpeed: new Float64Array(0), lat: 0, invBw: 0 };

function restBound(x: Ctx, followers: number[], lat: number, bw: number): RestBound {
  if (followers.length === 0) return NO_REST;
  const f = followers.slice().sort((a, b) => x.speed[b] - x.speed[a]);
  const cumWork = new Float64Array(f.length + 1), cumTime = new Float64Array(f.length + 1), invSpeed = new Float64Array(f.length);
  f.forEach((e, j) => {
    invSpeed[j] = 1 / x.speed[e];
    cumWork[j + 1] = cumWork[j] + x.capWork[e];
    cumTime[j + 1] = cumTime[j] + x.capWork[e] * invSpeed[j];
  });
  return { canGoOn: true, cumWork, cumTime, invSpeed, lat, invBw: 1 / bw };
}

/**
 * Latency stage: fOut[b] = W[b]/s + min over a in [lo[b], b−1] of (fPrev[a] + in(a) − W[a]/s).
 * One sweep gives the last-stage value fOut[n] and the ends a next stage may start from; ends whose
 * value plus the rest's lower bound cannot beat `below` are dropped, which narrows later sweeps.
 */
function sweepLatency(x: Ctx, e: number, p: number, prev: LatSet, out: LatSet, parent: Int32Array, below: number, rest: RestBound): boolean {
  const { n, W, C, dqIdx, dqVal } = x;
  const fPrev = prev.f, fOut = out.f, pLast = prev.last;
  x.sweeps++;
  out.first = n + 1; out.last = -1;
  if (pLast < prev.first) return false;
  const inv = 1 / x.speed[e];
  const lo = x.lo[e];
  const inLat = p >= 0 ? x.lat[p][e] : 0, inInvBw = p >= 0 ? 1 / x.bw[p][e] : 0;
  const canGoOn = rest.canGoOn;
  const { cumWork, cumTime, invSpeed } = rest;
  const segs = invSpeed.length;
  let j = segs - 1;
  let head = 0, tail = 0, minH = Infinity;
  const bFrom = prev.first + 1;
  let b = bFrom;
  for (; b <= n; b++) {
    const a = b - 1;
    if (a <= pLast && fPrev[a] < Infinity) {
      const h = fPrev[a] + (p >= 0 ? inLat + C[a] * inInvBw : 0) - W[a] * inv;
      while (tail > head && dqVal[tail - 1] >= h) tail--;
      dqIdx[tail] = a; dqVal[tail++] = h;
      if (h < minH) minH = h;
    } else if (a > pLast && !(W[b] * inv + minH < below)) break; // no start left can beat `below`
    fOut[b] = Infinity;
    const l = lo[b];
    while (head < tail && dqIdx[head] < l) head++;
    if (head === tail) continue;
    const v = W[b] * inv + dqVal[head];
    if (b === n) {
      if (!(v < below)) continue;
    } else {
      if (!canGoOn) continue;
      const left = W[n] - W[b];
      if (left > cumWork[segs] * (1 + 1e-12)) continue; // the followers cannot hold the rest
      while (j > 0 && cumWork[j] > left) j--;
      const restTime = cumTime[j] + (left - cumWork[j]) * invSpeed[j];
      if (!(v + restTime * (1 - 1e-12) + rest.lat + C[b] * rest.invBw < below)) continue;
    }
    fOut[b] = v;
    parent[b] = dqIdx[head];
    if (b < out.first) out.first = b;
    out.last = b;
  }
  x.steps += b - bFrom + SWEEP_OVERHEAD;
  if (x.steps > x.budget) throw new BudgetExceeded();
  return out.last >= out.first;
}

function latSet(n: number): LatSet {
  return { f: new Float64Array(n + 1).fill(Infinity), first: 0, last: -1 };
}

function latStart(n: number): LatSet {
  const s = latSet(n);
  s.f[0] = 0;
  s.last = 0;
  return s;
}

function solveSequenceLatency(x: Ctx, seq: number[], below: number): { value: number; bounds: number[] } | null {
  x.sequencesSolved++;
  const m = seq.length;
  let f = latStart(x.n);
  const parents = Array.from({ length: m }, () => new Int32Array(x.n + 1));
  for (let i = 0; i < m; i++) {
    const next = latSet(x.n);
    const after = seq.slice(i + 1);
    const rest = after.length === 0 ? NO_REST : restBound(x, after, x.lat[seq[i]][seq[i + 1]], x.bw[seq[i]][seq[i + 1]]);
    if (!sweepLatency(x, seq[i], i > 0 ? seq[i - 1] : -1, f, next, parents[i], below, rest)) return null;
    f = next;
  }
  if (f.last !== x.n || !(f.f[x.n] < below)) return null;
  const bounds = new Array<number>(m + 1);
  bounds[m] = x.n;
  for (let i = m - 1; i >= 0; i--) bounds[i] = parents[i][bounds[i + 1]];
  return { value: f.f[x.n], bounds };
}

function solveSequence(x: Ctx, objective: Objective, seq: number[], below: number) {
  return objective === 'latency' ? solveSequenceLatency(x, seq, below) : solveSequenceThroughput(x, seq, below);
}

/** Interchangeable executors (same speed, memory, labels, default links) are tried once per position. */
function symmetryKeys(p: SearchProblem): string[] {
  return p.cluster.executors.map((e) => p.cluster.linked.has(e.index) ? `#${e.index}`
    : `${e.speed}|${p.ignoreMemory ? '' : e.memory}|${p.ignorePins ? '' : [...e.labels].sort().join(',')}`);
}

function bySpeed(p: SearchProblem): number[] {
  return p.cluster.executors.map((e) => e.index)
    .sort((a, b) => p.cluster.executors[b].speed - p.cluster.executors[a].speed || a - b);
}

/**
 * Exact search over executor sequences. Throughput: DFS whose nodes are sequence prefixes; each keeps
 * the set of positions where the next stage can start with every stage so far ≤ the incumbent
 * (the out-transfer needs the next executor, so a child fixes it before sweeping). Complete sequences
 * are solved by bisection and tighten the incumbent; an empty set or too little executor speed left
 * for the remaining work prunes. Latency: the same DFS over shortest-path arrays with a compute bound.
 */
function exactSearch(p: SearchProblem, x: Ctx, objective: Objective, seed: Found | null, memoAllowed: boolean, keep: (f: Found) => void): Found | null {
  const { n, k } = x;
  const order = bySpeed(p);
  const keys = symmetryKeys(p);
  const used = new Uint8Array(k);
  let best: Found | null = seed;
  const thr = () => (best ? best.value * (1 - REL) : Infinity);
  const seq: number[] = [];
  const sets = Array.from({ length: x.maxStages + 1 }, () => posSet(n));
  const fArr = Array.from({ length: x.maxStages + 1 }, () => latSet(n));
  const parents = Array.from({ length: x.maxStages + 1 }, () => new Int32Array(n + 1));
  const W = x.W;

  // Dominance memo: the future from a prefix depends only on the executors used (their count is the
  // depth), the last one (and, for throughput, the next one) and the position. A prefix whose
  // positions are all covered at least as well by an earlier prefix with the same key is pruned
  // (latency: a smaller or equal cost so far; throughput: reachable under the same threshold).
  let mask = 0;
  const memo = new Map<number, Float64Array | Uint8Array>();
  let memoBytes = 0;
  const memoOn = k <= 24 && memoAllowed;
  const useMemo = <T extends Float64Array | Uint8Array>(key: number, make: () => T): T | undefined => {
    let m = memo.get(key) as T | undefined;
    if (!m && memoBytes < MEMO_BYTES) { m = make(); memo.set(key, m); memoBytes += m.byteLength; }
    return m;
  };
  const latDominated = (cur: LatSet, e: number): boolean => {
    if (!memoOn) return false;
    const m = useMemo(mask * k + e, () => new Float64Array(n + 1).fill(Infinity));
    if (!m) return false;
    let better = false;
    const f = cur.f;
    for (let b = cur.first; b <= cur.last; b++) if (f[b] < m[b]) { m[b] = f[b]; better = true; }
    return !better;
  };
  // Throughput sets are exact only when every ancestor set was swept at the current threshold (older
  // ones are supersets); only exact sets are recorded, any set may be pruned by them.
  let epoch = 0;
  const setEpoch = new Int32Array(x.maxStages + 1).fill(-1);
  const setExact = new Uint8Array(x.maxStages + 1);
  const thrDominated = (out: PosSet, e: number, q: number, exact: boolean): boolean => {
    if (!memoOn) return false;
    const key = (mask * k + e) * k + q;
    const m = exact ? useMemo(key, () => new Uint8Array(n + 1)) : (memo.get(key) as Uint8Array | undefined);
    if (!m) return false;
    let better = false;
    const bits = out.bits;
    for (let b = out.first; b <= out.last; b++) {
      if (bits[b] !== 0 && m[b] === 0) {
        better = true;
        if (!exact) break;
        m[b] = 1;
      }
    }
    return !better;
  };

  const children = (visit: (q: number) => void) => {
    const tried = new Set<string>();
    for (const q of order) {
      if (used[q] || tried.has(keys[q])) continue;
      tried.add(keys[q]);
      used[q] = 1; seq.push(q); mask += 2 ** q;
      visit(q);
      seq.pop(); used[q] = 0; mask -= 2 ** q;
    }
  };

  const leafThroughput = () => {
    const r = solveSequenceThroughput(x, seq.slice(), thr());
    if (r && (!best || r.value < best.value * (1 - REL))) {
      best = { value: r.value, seq: seq.slice(), bounds: r.bounds };
      keep(best);
      // Reachable sets depend on the threshold (a stage time, not a sum): older ones no longer dominate.
      memo.clear();
      memoBytes = 0;
      epoch++;
    }
  };
  const lastStageFits = (e: number, pIdx: number, R: PosSet): boolean => lastStageWithin(x, e, pIdx, R, thr());
  const dfsT = (d: number, R: PosSet): void => {
    const e = seq[d];
    const pIdx = d > 0 ? seq[d - 1] : -1;
    if (lastStageFits(e, pIdx, R)) leafThroughput();
    if (d + 1 >= x.maxStages) return;
    children((q) => {
      const out = sets[d];
      // Later stages are q and any subset of the unused executors: at most all of their work.
      const B = thr();
      let restWork = Math.min(B * x.speed[q], x.capWork[q]);
      for (let i = 0; i < k; i++) if (!used[i]) restWork += Math.min(B * x.speed[i], x.capWork[i]);
      if (!sweepThroughput(x, e, pIdx, q, restWork, R, B, out)) return;
      const exact = d === 0 || (setExact[d - 1] === 1 && setEpoch[d - 1] === epoch);
      setEpoch[d] = epoch;
      setExact[d] = exact ? 1 : 0;
      if (thrDominated(out, e, q, exact)) return;
      dfsT(d + 1, out);
    });
  };

  const dfsL = (d: number, prev: LatSet): void => {
    const e = seq[d];
    const pIdx = d > 0 ? seq[d - 1] : -1;
    const cur = fArr[d];
    // Going on costs at least the rest on the fastest executor left plus one transfer out of e.
    const followers: number[] = [];
    let minLat = Infinity, maxBw = 0;
    if (d + 1 < x.maxStages) {
      for (let i = 0; i < k; i++) {
        if (used[i]) continue;
        followers.push(i);
        minLat = Math.min(minLat, x.lat[e][i]);
        maxBw = Math.max(maxBw, x.bw[e][i]);
      }
    }
    const rest = restBound(x, followers, minLat, maxBw);
    if (!sweepLatency(x, e, pIdx, prev, cur, parents[d], thr(), rest)) return;
    if (cur.last === n && cur.f[n] < thr()) {
      const bounds = new Array<number>(d + 2);
      bounds[d + 1] = n;
      for (let i = d; i >= 0; i--) bounds[i] = parents[i][bounds[i + 1]];
      best = { value: cur.f[n], seq: seq.slice(), bounds };
      keep(best);
    }
    if (!rest.canGoOn || cur.first >= n) return;
    if (latDominated(cur, e)) return;
    children(() => dfsL(d + 1, cur));
  };

  children(() => (objective === 'latency' ? dfsL(0, latStart(n)) : dfsT(0, startSet(n))));
  return best;
}

/** Local search over sequences: seeds by speed and by memory, then remove/insert/replace/swap moves. */
function localSearch(p: SearchProblem, x: Ctx, objective: Objective, seed: Found | null, moves = true): Found | null {
  let best = seed;
  x.budget = x.steps + LOCAL_BUDGET;
  try {
    best = localSearchSteps(p, x, objective, seed, moves, (f) => { best = f; });
  } catch (e) {
    if (!(e instanceof BudgetExceeded)) throw e;
  }
  x.budget = Infinity;
  return best;
}

function localSearchSteps(p: SearchProblem, x: Ctx, objective: Objective, seed: Found | null, moves: boolean, keep: (f: Found) => void): Found | null {
  let best = seed;
  const consider = (seq: number[]) => {
    if (seq.length === 0 || seq.length > x.maxStages) return false;
    const r = solveSequence(x, objective, seq, best ? best.value * (1 - REL) : Infinity);
    if (r && (!best || r.value < best.value * (1 - REL))) { best = { value: r.value, seq: seq.slice(), bounds: r.bounds }; keep(best); return true; }
    return false;
  };
  const speedOrder = bySpeed(p);
  const memOrder = p.cluster.executors.map((e) => e.index).sort((a, b) => p.cluster.executors[b].memory - p.cluster.executors[a].memory || a - b);
  for (const ord of [speedOrder, memOrder]) for (let m = 1; m <= Math.min(x.k, x.maxStages); m++) consider(ord.slice(0, m));
  let rounds = 0;
  for (let improved = moves; improved && best && rounds < 50; rounds++) {
    improved = false;
    const cur: number[] = (best as { seq: number[] }).seq;
    const unused = speedOrder.filter((e) => !cur.includes(e));
    const moves: number[][] = [];
    for (let i = 0; i < cur.length; i++) {
      if (cur.length > 1) moves.push(cur.filter((_, j) => j !== i));
      for (const u of unused) moves.push(cur.map((e, j) => (j === i ? u : e)));
      for (let j = i + 1; j < cur.length; j++) { const s = cur.slice(); [s[i], s[j]] = [s[j], s[i]]; moves.push(s); }
    }
    for (const u of unused) for (let i = 0; i <= cur.length; i++) moves.push([...cur.slice(0, i), u, ...cur.slice(i)]);
    for (const mv of moves) if (consider(mv)) { improved = true; break; }
  }
  return best;
}

/** Best sequence and cuts for the objective, or null when no plan satisfies the constraints. */
export function search(p: SearchProblem, opts: SearchOptions): SearchResult | null {
  const method = opts.method ?? 'auto';
  const budget = method === 'exact' ? Infinity : method === 'heuristic' ? 0 : (opts.exactBudget ?? DEFAULT_BUDGET);
  const x = makeCtx(p, Infinity);
  // Local search first: a tight incumbent lets the exact search prune most prefixes at once.
  let found = localSearch(p, x, opts.objective, null, method === 'heuristic');
  let kind: 'exact' | 'heuristic' = 'heuristic';
  const seedSweeps = x.sweeps;
  if (method !== 'heuristic') {
    x.budget = x.steps + budget;
    try {
      found = exactSearch(p, x, opts.objective, found, opts.memo ?? true, (f) => { found = f; });
      kind = 'exact';
    } catch (e) {
      if (!(e instanceof BudgetExceeded)) throw e;
      found = localSearch(p, x, opts.objective, found);
    }
  }
  if (!found) return null;
  return { sequence: found.seq, bounds: found.bounds, value: found.value, method: kind, stats: { sweeps: x.sweeps, steps: x.steps, seedSweeps, sequencesSolved: x.sequencesSolved } };
}
