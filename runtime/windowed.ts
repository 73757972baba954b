// Bounded concurrency for the pieces of one transfer (chunk publishes, chunk or range reads): one
// helper, so every such loop keeps a few requests in flight and fails cleanly.

/**
 * Runs `task(0)` … `task(count - 1)` with at most `window` of them in flight, started in order.
 * Rejects with the first failure (tasks already started are left to finish, their errors ignored).
 */
export async function windowed(count: number, window: number, task: (i: number) => Promise<unknown>): Promise<void> {
  const inFlight: Promise<unknown>[] = [];
  try {
    for (let i = 0; i < count; i++) {
      inFlight.push(task(i));
      if (inFlight.length >= window) await inFlight.shift();
    }
    await Promise.all(inFlight);
  } finally {
    for (const p of inFlight) p.catch(() => {});
  }
}
