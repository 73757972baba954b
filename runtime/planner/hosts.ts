// Executors of one host share its cores. Each executor's speed is measured alone (one at a time), so k
// busy executors of t threads on a host of c cores each run at about min(1, c / (k·t)) of it: three
// one-thread executors on two cores measured ~1.5x slower per stage than the plan said. The planner
// prices that: for hosts with more executor threads than cores it plans with each possible number of
// those executors in use (the fastest first), each priced at the share it would get, and keeps the best.
import type { ExecutorProfile } from '../../protocols/plan.js';

export interface HostGroup {
  host: string;
  cores: number;
  /** The host's executors, fastest first (ties by id). */
  members: ExecutorProfile[];
}

const threadsOf = (e: ExecutorProfile) => Math.max(1, e.threads ?? 1);

/** Hosts whose executors, all busy, would want more threads than the host has cores. */
export function oversubscribedHosts(executors: readonly ExecutorProfile[]): HostGroup[] {
  const byHost = new Map<string, ExecutorProfile[]>();
  for (const e of executors) {
    if (!e.host || !(e.cores! > 0)) continue;
    const list = byHost.get(e.host) ?? [];
    list.push(e);
    byHost.set(e.host, list);
  }
  const groups: HostGroup[] = [];
  for (const [host, members] of byHost) {
    const cores = Math.min(...members.map((m) => m.cores!));
    if (members.reduce((a, m) => a + threadsOf(m), 0) <= cores) continue;
    members.sort((a, b) => b.flopsPerSec - a.flopsPerSec || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    groups.push({ host, cores, members });
  }
  return groups.sort((a, b) => (a.host < b.host ? -1 : 1));
}

/**
 * Per executor id, the share of its measured speed it gets when the executors in `busy` all run at
 * once: min(1, cores / threads of the host's busy executors). Executors without host or cores: 1.
 */
export function coreShare(executors: readonly ExecutorProfile[], busy: ReadonlySet<string>): Map<string, number> {
  const demand = new Map<string, number>();
  for (const e of executors) if (e.host && busy.has(e.id)) demand.set(e.host, (demand.get(e.host) ?? 0) + threadsOf(e));
  const share = new Map<string, number>();
  for (const e of executors) {
    const d = e.host ? demand.get(e.host) : undefined;
    share.set(e.id, e.host && e.cores! > 0 && d ? Math.min(1, e.cores! / d) : 1);
  }
  return share;
}

/**
 * How many executors of each oversubscribed host to offer: every combination of 1..n per host while
 * there are at most `limit` of them, else per host either all of them or as many as its cores hold.
 */
export function usageCombinations(groups: readonly HostGroup[], limit = 128): number[][] {
  const total = groups.reduce((a, g) => a * g.members.length, 1);
  const options = groups.map((g) => {
    if (total <= limit) return g.members.map((_, i) => i + 1);
    const fit = Math.max(1, Math.min(g.members.length, Math.floor(g.cores / threadsOf(g.members[0]!))));
    return [...new Set([fit, g.members.length])];
  });
  let combos: number[][] = [[]];
  for (const opt of options) combos = combos.flatMap((c) => opt.map((k) => [...c, k]));
  return combos;
}

/**
 * The executors offered with `counts[i]` executors of `groups[i]` (its fastest), each priced at the
 * share of its speed it gets with all offered ones busy; `left` are the ones held back.
 */
export function offerExecutors(executors: readonly ExecutorProfile[], groups: readonly HostGroup[], counts: readonly number[]): { offered: ExecutorProfile[]; left: string[] } {
  const left = new Set<string>();
  groups.forEach((g, i) => g.members.slice(counts[i]).forEach((m) => left.add(m.id)));
  const kept = executors.filter((e) => !left.has(e.id));
  const share = coreShare(kept, new Set(kept.map((e) => e.id)));
  return {
    offered: kept.map((e) => (share.get(e.id)! < 1 ? { ...e, flopsPerSec: e.flopsPerSec * share.get(e.id)! } : e)),
    left: [...left],
  };
}
