// The executor lifecycle: joining → idle → loading(partition, epoch) → ready → serving → draining → idle,
// with `failed` reachable from any working state. Pure: loading is an invoked actor the runtime provides.
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
  inFlight: number;
  served: number;
  error: string | undefined;
  loadAttempts: number;
}

export type ExecutorEvent =
  | { type: 'REGISTERED' }
  | { type: 'ASSIGN'; assignment: PartitionAssignment }
  | { type: 'START' }
  | { type: 'WORK_BEGIN' }
  | { type: 'WORK_END' }
  | { type: 'DRAIN' }
  /** The runtime has finished every request in hand (its own account, whatever the count says). */
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
  guards: {
    idleNow: ({ context }) => context.inFlight === 0,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: string }) => params.error }),
    clearError: assign({ error: () => undefined }),
    takeAssignment: assign({
      assignment: ({ event }) => (event.type === 'ASSIGN' ? event.assignment : undefined),
      loadAttempts: ({ context }) => context.loadAttempts + 1,
    }),
    begin: assign({ inFlight: ({ context }) => context.inFlight + 1 }),
    end: assign({
      inFlight: ({ context }) => Math.max(0, context.inFlight - 1),
      served: ({ context }) => context.served + 1,
    }),
    dropAssignment: assign({ assignment: () => undefined }),
  },
}).createMachine({
  id: 'executor',
  initial: 'joining',
  context: ({ input }) => ({
    assignment: undefined,
    inFlight: 0,
    served: 0,
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
        WORK_BEGIN: { actions: 'begin' },
        WORK_END: { actions: 'end' },
        DRAIN: 'draining',
        FAIL: { target: 'failed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    draining: {
      always: { guard: 'idleNow', target: 'idle', actions: 'dropAssignment' },
      on: {
        DRAINED: { target: 'idle', actions: ['dropAssignment', assign({ inFlight: () => 0 })] },
        WORK_END: { actions: 'end' },
        // Work already taken still counts; nothing new is taken while draining.
        WORK_BEGIN: { actions: 'begin' },
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
