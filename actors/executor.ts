// Executor: serves one stage of a deployment at a time; its lifecycle is the executor-lifecycle machine.
// Control: `assign { run, epoch, stage }` loads the stage's partition and joins its consumer (answering
// once serving), `release` drains it. Registers cores, memory and measured speed as capabilities.
import { availableParallelism, totalmem, freemem } from 'node:os';
import { createActor, fromPromise, waitFor } from 'xstate';
import { executorLifecycle, type PartitionAssignment } from '../protocols/machines/executor-lifecycle.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import type { ActorFactory } from '../runtime/actor/host.js';
import { getArtifact, loadDeployment } from '../runtime/pipeline/store.js';
import { StageServer } from '../runtime/executor/stage-server.js';
import { OrtRunner, SpareThread } from '../runtime/executor/ort-runner.js';
import { collectAll } from '../runtime/gc.js';
import { calibrateFlopsPerSec } from '../runtime/executor/calibrate.js';
import { STAGE_SESSION_OPTIONS } from '../runtime/executor/session-options.js';
import type { Deployment } from '../protocols/deployment.js';
import { ShmPool, measureShm } from '../runtime/shm/pool.js';
import { withTensorMalloc } from '../runtime/malloc.js';
import { serveShmReads } from '../runtime/shm/remote.js';
import { mainThreadCpuMs } from '../runtime/cpu.js';

// The worker writes into this process's pool under its reader token: remote reads of those frames
// come to this process's read service first.
const RUNNER_OPTIONS = (threads: number, pool?: ShmPool) => ({ intraOpNumThreads: threads, ...STAGE_SESSION_OPTIONS, ...(pool ? { shmDir: pool.dir, shmReader: pool.reader } : {}) });
/** Live shared-memory frames older than the work stream's max age belong to messages that are gone. */
const SHM_SWEEP_AGE_MS = 60 * 60 * 1000;

const actor: ActorFactory = async (ctx) => {
  const threads = Number(process.env.CLEAVE_EXECUTOR_THREADS ?? 1);
  let runner: OrtRunner | undefined;
  let server: StageServer | undefined;
  let deployment: Deployment | undefined;
  if (withTensorMalloc(process.env) !== process.env) {
    const want = withTensorMalloc({});
    ctx.log.info(`started without the memory settings for tensor processes; for faster activations and less resident memory start it with GLIBC_TUNABLES=${want.GLIBC_TUNABLES} NODE_OPTIONS=${want.NODE_OPTIONS} (cleave up does)`);
  }
  // The inference thread an idle executor keeps ready (onnxruntime loaded), so that an assignment only
  // loads the partition, and the partition's memory is what it adds. A new one after each release.
  let spare: Promise<SpareThread | undefined> | undefined;
  let stopping = false;
  const prepareSpare = (): void => {
    if (stopping) return;
    spare ??= SpareThread.start().catch((e: unknown) => {
      ctx.log.warn('could not start a spare inference thread; the next assignment starts its own', { error: String(e) });
      return undefined;
    });
  };
  prepareSpare();
  // Same-host frames go through shared memory (runtime/shm/pool.ts); without a pool, all inline.
  const pool = ShmPool.open();
  const shmReads = pool ? serveShmReads(ctx.nc, pool) : undefined;
  let sweeper: NodeJS.Timeout | undefined;
  if (pool) {
    pool.sweep(SHM_SWEEP_AGE_MS);
    sweeper = setInterval(() => pool.sweep(SHM_SWEEP_AGE_MS), 10 * 60 * 1000);
    sweeper.unref();
  }

  const machine = executorLifecycle.provide({
    actors: {
      loadPartition: fromPromise<void, PartitionAssignment>(async ({ input }) => {
        deployment = await loadDeployment(ctx.nc, input.run, input.epoch);
        const stage = deployment.stages[input.stage];
        if (!stage) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `run ${input.run} epoch ${input.epoch} has no stage ${input.stage}`);
        const bytes = await getArtifact(ctx.nc, stage.artifact);
        await runner?.close();
        const thread = await spare;
        spare = undefined;
        runner = await OrtRunner.create(bytes, { ...RUNNER_OPTIONS(threads, pool), giveModel: true }, thread);
        // The download's chunks are garbage now: freed before the first run, onnxruntime reuses their
        // memory (one malloc arena, runtime/malloc.ts) instead of adding its own beside them.
        collectAll();
      }),
    },
  });
  const lifecycle = createActor(machine, { input: {} });
  lifecycle.subscribe((s) => ctx.setState(String(s.value)));
  lifecycle.start();

  let calibration = await calibrateFlopsPerSec({ threads }).catch((e: unknown) => {
    ctx.log.warn('calibration failed; the planner will assume a default speed', { error: String(e) });
    return undefined;
  });
  collectAll(); // the calibration's tensors: free for the partition to reuse
  ctx.setCapabilities({
    cores: availableParallelism(),
    threads,
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    ...(pool ? { shmDomain: pool.domain, shmBytesPerSec: Math.round(measureShm(pool)) } : {}),
    ...(calibration ? { flopsPerSec: calibration.flopsPerSec } : {}),
  });

  async function release(): Promise<void> {
    if (server) {
      lifecycle.send({ type: 'DRAIN' });
      await server.drain();
      // The stage server has settled every request it took: idle now, whatever the in-flight count says.
      lifecycle.send({ type: 'DRAINED' });
      server = undefined;
      ctx.setCapabilities({ run: undefined, epoch: undefined, stage: undefined });
    }
    // Idle holds no partition: its memory goes back, and a fresh thread waits for the next one.
    await runner?.close();
    runner = undefined;
    prepareSpare();
  }

  return {
    control: {
      async assign(req) {
        const run = String(req.run);
        const epoch = Number(req.epoch);
        const stage = Number(req.stage);
        const s = lifecycle.getSnapshot();
        if (server && server.deployment.run === run && server.deployment.epoch === epoch && server.index === stage) {
          return { state: s.value, stage };
        }
        await release();
        lifecycle.send({ type: 'ASSIGN', assignment: { run, epoch, stage, artifact: String(req.artifact ?? '') } });
        const loaded = await waitFor(lifecycle, (x) => x.matches('ready') || x.matches('failed'), { timeout: 180_000 });
        if (loaded.matches('failed')) {
          throw new CleaveError(ErrorCode.STAGE_FAILED, `executor ${ctx.id} could not load stage ${stage} of ${run}: ${loaded.context.error}`, { details: { stage, executor: ctx.id } });
        }
        const artifact = deployment!.stages[stage]!.artifact;
        server = new StageServer(ctx, deployment!, stage, runner!, {
          reload: async () => {
            runner = await OrtRunner.create(await getArtifact(ctx.nc, artifact), { ...RUNNER_OPTIONS(threads, pool), giveModel: true });
            return runner;
          },
          ...(pool ? { shm: { pool } } : {}),
        });
        ctx.setCapabilities({ run, epoch, stage });
        await server.start();
        lifecycle.send({ type: 'START' });
        return { state: 'serving', stage, inputNames: runner!.inputNames, outputNames: runner!.outputNames };
      },
      /**
       * Measure this executor's speed again (the coordinator asks, one executor at a time, before it
       * plans): the start-up calibration ran while every actor was starting on the same cores. The
       * fastest measurement so far is kept: contention only ever slows a run down.
       */
      async calibrate() {
        if (server) return { flopsPerSec: calibration?.flopsPerSec };
        const now = await calibrateFlopsPerSec({ threads });
        if (!calibration || now.flopsPerSec > calibration.flopsPerSec) calibration = now;
        ctx.setCapabilities({ flopsPerSec: calibration.flopsPerSec });
        return { flopsPerSec: calibration.flopsPerSec };
      },
      async release() {
        await release();
        return { state: lifecycle.getSnapshot().value };
      },
      stats() {
        // maxRSS is in kilobytes: the process's peak resident memory so far.
        // The main thread's V8 heap and ArrayBuffers: where Cleave's own share of the memory sits.
        const mu = process.memoryUsage();
        const mem = { rssBytes: mu.rss, peakRssBytes: process.resourceUsage().maxRSS * 1024, heapUsedBytes: mu.heapUsed, arrayBufferBytes: mu.arrayBuffers };
        // CPU so far: the whole process (its inference thread included) and its main thread (NATS, I/O).
        const usage = process.cpuUsage();
        const cpu = { cpuMs: (usage.user + usage.system) / 1000, mainThreadCpuMs: mainThreadCpuMs() };
        const shm = pool ? { shmDomain: pool.domain } : {};
        return server ? { stage: server.index, run: server.deployment.run, ...server.stats, ...mem, ...cpu, ...shm } : { ...mem, ...cpu, ...shm };
      },
    },
    async start() {
      await spare; // idle means ready: the inference thread is up
      lifecycle.send({ type: 'REGISTERED' });
    },
    async stop() {
      stopping = true;
      await release();
      await runner?.close();
      await (await spare)?.dispose();
      if (sweeper) clearInterval(sweeper);
      shmReads?.unsubscribe();
      lifecycle.send({ type: 'STOP' });
    },
  };
};
export default actor;
