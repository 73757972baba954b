// The executor lifecycle: joining → idle → loading(partition, epoch) → ready → serving → draining → idle,
// with `failed` reachable from any working state. Pure: loading is an invoked actor the runtime provides.
// Requests are not events here: the stage server counts what it has in hand (it must, to drain), and
// reports the end of a drain as DRAINED. Two events per request cost each executor's main thread
// 0.3-0.4 ms of its ~3 ms per request (measured A/B under `cleave infer` load: XState's code runs cold
// at 20 requests a second, beside the inference thread), for a count nothing read but the drain.
import { assign, fromPromise, setup } from 'xstate';

export interface PartitionAssignment {
  run: string;
  epoch: number;
  stage: number;
  /** Object-store key (sha256) of the stage's ONNX artifact. */
  artifact: string;
}

export interface ExecutorContext {
  assignment: PartitionAssignment | undefined;
  error: string | undefined;
  loadAttempts: number;
}

export type ExecutorEvent =
  | { type: 'REGISTERED' }
  | { type: 'ASSIGN'; assignment: PartitionAssignment }
  | { type: 'START' }
  /** Stop taking work; finish what is in hand. */
  | { type: 'DRAIN' }
  /** The runtime has finished every request it had in hand (published and acked, or handed back). */
  | { type: 'DRAINED' }
  | { type: 'FAIL'; error: string }
  | { type: 'RESET' }
  | { type: 'STOP' };

export interface ExecutorInput {
  /** How long a load may take before the executor gives up on it. */
  loadTimeoutMs?: number;
  /** How long a drain may wait for in-flight work. */
  drainTimeoutMs?: number;
}

export const executorLifecycle = setup({
  types: {
    context: {} as ExecutorContext & Required<ExecutorInput>,
    events: {} as ExecutorEvent,
    input: {} as ExecutorInput,
  },
  actors: {
    // The runtime provides the real loader with `.provide({ actors: { loadPartition } })`.
    loadPartition: fromPromise<void, PartitionAssignment>(async () => {
      throw new Error('no loadPartition implementation provided');
    }),
  },
  delays: {
    loadTimeout: ({ context }) => context.loadTimeoutMs,
    drainTimeout: ({ context }) => context.drainTimeoutMs,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: string }) => params.error }),
    clearError: assign({ error: () => undefined }),
    takeAssignment: assign({
      assignment: ({ event }) => (event.type === 'ASSIGN' ? event.assignment : undefined),
      loadAttempts: ({ context }) => context.loadAttempts + 1,
    }),
    dropAssignment: assign({ assignment: () => undefined }),
  },
}).createMachine({
  id: 'executor',
  initial: 'joining',
  context: ({ input }) => ({
    assignment: undefined,
    error: undefined,
    loadAttempts: 0,
    loadTimeoutMs: input?.loadTimeoutMs ?? 120_000,
    drainTimeoutMs: input?.drainTimeoutMs ?? 30_000,
  }),
  on: {
    STOP: '.stopped',
  },
  states: {
    joining: {
      on: { REGISTERED: 'idle' },
    },
    idle: {
      on: {
        ASSIGN: { target: 'loading', actions: ['takeAssignment', 'clearError'] },
      },
    },
    loading: {
      invoke: {
        src: 'loadPartition',
        input: ({ context }) => context.assignment!,
        onDone: 'ready',
        onError: {
          target: 'failed',
          actions: { type: 'recordError', params: ({ event }) => ({ error: errorText(event.error) }) },
        },
      },
      after: {
        loadTimeout: { target: 'failed', actions: { type: 'recordError', params: { error: 'partition load timed out' } } },
      },
      on: {
        // A newer assignment replaces the one being loaded (re-entering restarts the load).
        ASSIGN: { target: 'loading', reenter: true, actions: 'takeAssignment' },
        FAIL: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    ready: {
      on: {
        START: 'serving',
        ASSIGN: { target: 'loading', actions: 'takeAssignment' },
        DRAIN: 'draining',
        FAIL: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    serving: {
      on: {
        DRAIN: 'draining',
        FAIL: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    draining: {
      // Nothing new is taken while draining; the runtime says when what it had is done.
      on: {
        DRAINED: { target: 'idle', actions: 'dropAssignment' },
        FAIL: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
      after: {
        drainTimeout: { target: 'failed', actions: { type: 'recordError', params: { error: 'drain timed out with work in flight' } } },
      },
    },
    failed: {
      on: {
        RESET: { target: 'idle', actions: ['clearError', 'dropAssignment'] },
        ASSIGN: { target: 'loading', actions: ['takeAssignment', 'clearError'] },
      },
    },
    stopped: { type: 'final' },
  },
});

export type ExecutorState = 'joining' | 'idle' | 'loading' | 'ready' | 'serving' | 'draining' | 'failed' | 'stopped';

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
