// Executor: serves one partition at a time for its stage; its lifecycle is the executor-lifecycle machine.
// Registers cores and memory as capabilities; the state in the roster is the machine's state.
import { availableParallelism, totalmem, freemem } from 'node:os';
import { createActor, fromPromise } from 'xstate';
import { executorLifecycle, type PartitionAssignment } from '../protocols/machines/executor-lifecycle.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import type { ActorFactory } from '../runtime/actor/host.js';

const actor: ActorFactory = (ctx) => {
  const machine = executorLifecycle.provide({
    actors: {
      loadPartition: fromPromise<void, PartitionAssignment>(async ({ input }) => {
        throw new CleaveError(ErrorCode.MODEL_UNSUPPORTED, `partition loading arrives with pipeline inference (asked for stage ${input.stage} of run ${input.run})`);
      }),
    },
  });
  const lifecycle = createActor(machine, { input: {} });
  lifecycle.subscribe((s) => ctx.setState(String(s.value)));
  lifecycle.start();
  ctx.setCapabilities({ cores: availableParallelism(), memoryBytes: totalmem(), freeMemoryBytes: freemem() });
  return {
    async start() {
      lifecycle.send({ type: 'REGISTERED' });
    },
    async stop() {
      lifecycle.send({ type: 'DRAIN' });
      lifecycle.send({ type: 'STOP' });
    },
  };
};
export default actor;
