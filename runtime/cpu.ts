// CPU time spent by processes and threads, for benchmarks that account where a request's CPU goes.
// Linux /proc: utime + stime in clock ticks (USER_HZ, 100 on Linux); elsewhere undefined.
import { readFileSync } from 'node:fs';

const TICK_MS = 10;

function ticks(path: string): number | undefined {
  try {
    const st = readFileSync(path, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

/** CPU milliseconds a process has used so far (all its threads), or undefined when unknown. */
export function processCpuMs(pid: number): number | undefined {
  const t = ticks(`/proc/${pid}/stat`);
  return t === undefined ? undefined : t * TICK_MS;
}

/** CPU milliseconds this process's main thread (the event loop) has used so far. */
export function mainThreadCpuMs(): number | undefined {
  const t = ticks(`/proc/${process.pid}/task/${process.pid}/stat`);
  return t === undefined ? undefined : t * TICK_MS;
}
