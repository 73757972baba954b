// Brute force for small problems: every executor subset in every order and every set of cut positions,
// priced naively. The yardstick the tests and `cleave bench planner` hold the search to.
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import type { Objective } from '../../protocols/plan.js';
import type { SearchProblem } from './search.js';

export interface BruteForceResult {
  value: number;
  sequence: number[];
  bounds: number[];
  /** (sequence, cuts) pairs priced. */
  evaluated: number;
}

/** Exhaustive optimum (value = bottleneck or latency seconds), or null when nothing is feasible. Refuses n > 16 or k > 7. */
export function bruteForce(p: SearchProblem, objective: Objective): BruteForceResult | null {
  const g = p.graph;
  const c = p.cluster;
  const n = g.ids.length;
  const k = c.executors.length;
  if (n > 16 || k > 7) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `brute force is for small problems (≤ 16 nodes, ≤ 7 executors), got ${n} nodes and ${k} executors; use the planner`);
  const maxStages = Math.min(p.constraints.maxStages, k, n);
  const required = new Set(p.constraints.boundaries);
  let best: BruteForceResult | null = null;
  let evaluated = 0;

  // Does segment [a, b) fit executor e (memory and pins), priced node by node.
  const fits = (e: number, a: number, b: number): boolean => {
    let params = 0, act = 0;
    for (let j = a; j < b; j++) {
      if (!p.ignorePins && !p.constraints.allowed[e][j]) return false;
      params += g.params[j];
      act = Math.max(act, g.cross[j] + g.outputBytes[j]);
    }
    return p.ignoreMemory || params + act <= c.executors[e].memory;
  };
  const work = (a: number, b: number): number => { let w = 0; for (let j = a; j < b; j++) w += g.work[j]; return w; };
  const link = (i: number, j: number, bytes: number) => c.latency[i][j] + bytes / c.bandwidth[i][j];

  const price = (seq: number[], bounds: number[]): number => {
    const m = seq.length;
    let worst = 0, total = 0;
    for (let i = 0; i < m; i++) {
      const a = bounds[i], b = bounds[i + 1], e = seq[i];
      const comp = work(a, b) / c.executors[e].speed;
      const tin = i > 0 ? link(seq[i - 1], e, g.cross[a]) : 0;
      const tout = i < m - 1 ? link(e, seq[i + 1], g.cross[b]) : 0;
      worst = Math.max(worst, comp + tin + tout);
      total += comp + tin;
    }
    return objective === 'latency' ? total : worst;
  };

  const cutsOf = (m: number): number[][] => {
    const out: number[][] = [];
    const cur = [0];
    const rec = (from: number, left: number) => {
      if (left === 0) { out.push([...cur, n]); return; }
      for (let x = from; x <= n - left; x++) { cur.push(x); rec(x + 1, left - 1); cur.pop(); }
    };
    rec(1, m - 1);
    return out.filter((bs) => [...required].every((r) => bs.includes(r)));
  };

  const seqs = (m: number): number[][] => {
    const out: number[][] = [];
    const used = new Uint8Array(k);
    const cur: number[] = [];
    const rec = () => {
      if (cur.length === m) { out.push(cur.slice()); return; }
      for (let e = 0; e < k; e++) if (!used[e]) { used[e] = 1; cur.push(e); rec(); cur.pop(); used[e] = 0; }
    };
    rec();
    return out;
  };

  for (let m = 1; m <= maxStages; m++) {
    const allSeqs = seqs(m);
    for (const bounds of cutsOf(m)) {
      for (const seq of allSeqs) {
        let ok = true;
        for (let i = 0; i < m && ok; i++) ok = fits(seq[i], bounds[i], bounds[i + 1]);
        if (!ok) continue;
        evaluated++;
        const v = price(seq, bounds);
        if (!best || v < best.value) best = { value: v, sequence: seq, bounds, evaluated: 0 };
      }
    }
  }
  if (best) best.evaluated = evaluated;
  return best;
}
