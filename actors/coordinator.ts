// Coordinator: deploys a model as an epoch of a run (analyse → plan → split → store → assign), keeps every
// stage served (an executor that joins is given the stage that needs it most; a lost one is replaced),
// and records it all in CLEAVE_EVENTS. Requests do not pass through here: see runtime/pipeline/client.ts.
import { randomBytes } from 'node:crypto';
import type { ActorFactory, ActorContext } from '../runtime/actor/host.js';
import { controlRequest, listActors } from '../runtime/actor/client.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { Role, Stream } from '../protocols/subjects.js';
import { RUN_ID_PATTERN, workDurable, type Deployment } from '../protocols/deployment.js';
import type { PartitionGraph } from '../protocols/graph.js';
import type { ExecutorProfile, LinkTable, Plan, Objective } from '../protocols/plan.js';
import { measuredBottleneck, refineByTiming } from '../runtime/planner/refine.js';
import { coreShare } from '../runtime/planner/hosts.js';
import { buildDeployment, linksFromRoster, profilesFromRoster, setStageDomains, stageForNewExecutor, type SplitStage } from '../runtime/pipeline/placement.js';
import { saveDeployment } from '../runtime/pipeline/store.js';
import { ensureStageConsumer } from '../runtime/executor/stage-server.js';
import { measureNatsLink } from '../runtime/pipeline/link-probe.js';
import { withTimeout } from '../runtime/timeout.js';
import type { TensorSpec } from '../protocols/deployment.js';

const LONG = 300_000;

const actor: ActorFactory = (ctx) => {
  ctx.setState('ready');
  const runs = new Map<string, Deployment>();
  let busy = false;

  async function assign(d: Deployment, stage: number, executor: string, timeoutMs = LONG): Promise<void> {
    await controlRequest(ctx.nc, Role.EXECUTOR, executor, { type: 'assign', run: d.run, epoch: d.epoch, stage, artifact: d.stages[stage]!.artifact }, timeoutMs);
  }

  async function deploy(req: Record<string, unknown>): Promise<Deployment> {
    const artifact = String(req.artifact ?? '');
    const run = typeof req.run === 'string' ? req.run : `run-${randomBytes(4).toString('hex')}`;
    if (!RUN_ID_PATTERN.test(run)) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `run id '${run}' is not valid: use 1-48 letters, digits, '_' or '-'`);
    const roster = await listActors(ctx.nc);
    const wanted = Array.isArray(req.executors) ? new Set(req.executors as string[]) : undefined;
    const busyIds = new Set([...runs.values()].flatMap((d) => d.stages.flatMap((s) => s.executors)));
    const executors = roster.filter((a) => a.role === Role.EXECUTOR && (wanted ? wanted.has(a.id) : a.state === 'idle' && !busyIds.has(a.id)));
    if (executors.length === 0) {
      throw new CleaveError(ErrorCode.PLAN_INFEASIBLE, 'no idle executor to deploy on: start one with `cleave actor executor` (or `cleave up --executors N`)');
    }
    // Measured per-node times when every input dim is known (profiling needs to run the model), else FLOPs.
    const analyze = (profile: boolean) => controlRequest<PartitionGraph>(ctx.nc, Role.GRAPH_ANALYZER, undefined, { type: 'analyze', artifact, inputs: req.inputs, name: req.name, profile }, LONG);
    const graph = req.profile === false ? await analyze(false) : await analyze(true).catch((e) => {
      ctx.log.info('planning from FLOP estimates: profiling was not possible', { error: String(e) });
      return analyze(false);
    });
    const maxStages = typeof req.maxStages === 'number' ? req.maxStages : undefined;
    // Speeds measured now, one executor at a time: start-up calibrations overlap and mislead the planner.
    for (const e of executors) {
      try {
        const r = await controlRequest<{ flopsPerSec?: number }>(ctx.nc, Role.EXECUTOR, e.id, { type: 'calibrate' }, 30_000);
        if (r.flopsPerSec) e.capabilities = { ...e.capabilities, flopsPerSec: r.flopsPerSec };
      } catch (err) {
        ctx.log.warn('could not re-calibrate an executor; using its start-up speed', { executor: e.id, error: String(err) });
      }
    }
    const profiles = profilesFromRoster(executors);
    const links = (req.links as LinkTable | undefined) ?? linksFromRoster(executors, await measureNatsLink(ctx.nc));
    const planRequest = (g: PartitionGraph) => ({
      graph: g,
      executors: profiles,
      objective: (req.objective as Objective | undefined) ?? 'throughput',
      constraints: { ...((req.constraints as object | undefined) ?? {}), ...(maxStages ? { maxStages } : {}) },
      // Cuts priced at what they cost here: NATS as measured now between hosts, shared memory within one.
      links,
      ...(req.replicas ? { replicas: req.replicas } : {}),
      ...(g.profile?.flopsPerSec ? { measuredFlopsPerSec: g.profile.flopsPerSec } : {}),
    });
    const requestPlan = (g: PartitionGraph) => controlRequest<Plan>(ctx.nc, Role.PLANNER, undefined, { type: 'plan', ...planRequest(g) }, LONG);
    const requestAlternatives = (g: PartitionGraph, base: Plan) =>
      controlRequest<{ plans: Plan[] }>(ctx.nc, Role.PLANNER, undefined, { type: 'alternatives', ...planRequest(g), plan: base }, LONG).then((r) => r.plans);
    const plan = await refinePlan(artifact, graph, requestPlan, requestAlternatives, profiles);
    const split = await controlRequest<{ stages: SplitStage[]; inputs: TensorSpec[]; outputs: TensorSpec[] }>(
      ctx.nc,
      Role.GRAPH_ANALYZER,
      undefined,
      { type: 'split', artifact, stages: plan.stages.map((s) => s.nodes) },
      LONG,
    );
    const prev = runs.get(run);
    const d = buildDeployment({
      run,
      epoch: (prev?.epoch ?? 0) + 1,
      model: String(req.name ?? artifact),
      modelArtifact: artifact,
      plan,
      split,
      ...(typeof req.ackWaitMs === 'number' ? { ackWaitMs: req.ackWaitMs } : {}),
      ...(typeof req.maxDeliver === 'number' ? { maxDeliver: req.maxDeliver } : {}),
    });
    // Which hosts each stage runs on, so that producers send small frames inline across hosts.
    setStageDomains(d, executors);
    await saveDeployment(ctx.nc, d);
    for (const s of d.stages) await ensureStageConsumer(ctx, d, s.index);
    await Promise.all(d.stages.flatMap((s) => s.executors.map((e) => assign(d, s.index, e))));
    runs.set(run, d);
    await ctx.publishEvent('deployed', { run, epoch: d.epoch, model: d.model, stages: d.stages.map((s) => ({ index: s.index, executors: s.executors, nodes: plan.stages[s.index]!.nodes.length })) });
    ctx.log.info('deployed', { run, epoch: d.epoch, stages: d.stages.length });
    return d;
  }

  /** refineByTiming (runtime/planner/refine.ts) with this cluster's planner, analyser and executors. */
  async function refinePlan(
    artifact: string,
    graph: PartitionGraph,
    requestPlan: (g: PartitionGraph) => Promise<Plan>,
    requestAlternatives: (g: PartitionGraph, base: Plan) => Promise<Plan[]>,
    profiles: ExecutorProfile[],
  ): Promise<Plan> {
    const measuringSpeed = graph.profile?.flopsPerSec ?? 0;
    // Profiled (else refineByTiming times nothing), so every input shape is known: stages are timed on those.
    const feeds = Object.fromEntries(graph.inputs.map((i) => [i.name, { dtype: i.dtype, shape: i.shape }]));
    return refineByTiming(graph, {
      plan: requestPlan,
      alternatives: requestAlternatives,
      time: (plans) => controlRequest<{ seconds: number[][] }>(ctx.nc, Role.GRAPH_ANALYZER, undefined, { type: 'time', artifact, plans: plans.map((p) => p.stages.map((s) => s.nodes)), feeds }, LONG)
        .then((r) => r.seconds),
      // Stages are timed alone; executors of one host share its cores while the plan runs.
      bottleneck: (p, seconds) => {
        const busy = new Set(p.stages.flatMap((s) => [s.executor, ...(s.replicaExecutors ?? [])]));
        const share = coreShare(profiles, busy);
        return measuredBottleneck(p, seconds, measuringSpeed, new Map(profiles.map((e) => [e.id, e.flopsPerSec * share.get(e.id)!])));
      },
      log: (msg, fields, level) => (level === 'warn' ? ctx.log.warn(msg, fields) : ctx.log.info(msg, fields)),
    });
  }

  async function undeploy(run: string): Promise<{ released: string[] }> {
    const d = runs.get(run);
    if (!d) throw new CleaveError(ErrorCode.BAD_ARGUMENT, `this coordinator runs no '${run}'`);
    runs.delete(run);
    const ids = d.stages.flatMap((s) => s.executors);
    await Promise.allSettled(ids.map((id) => controlRequest(ctx.nc, Role.EXECUTOR, id, { type: 'release' }, 60_000)));
    for (const s of d.stages) await ctx.jsm.consumers.delete(Stream.WORK, workDurable(d.run, d.epoch, s.index)).catch(() => {});
    await ctx.publishEvent('undeployed', { run, epoch: d.epoch });
    return { released: ids };
  }

  /** Keeps every stage served: lost executors are dropped, idle ones join where they help most. */
  async function tend(): Promise<void> {
    if (busy || runs.size === 0) return;
    busy = true;
    try {
      // Bounded: one stuck look-up must not stop the tending of every later round.
      const roster = await withTimeout(listActors(ctx.nc), 5000, 'listing the actors');
      const live = new Set(roster.filter((a) => a.role === Role.EXECUTOR && a.state !== 'failed').map((a) => a.id));
      for (const d of runs.values()) {
        let changed = false;
        for (const s of d.stages) {
          const lost = s.executors.filter((e) => !live.has(e));
          if (lost.length) {
            s.executors = s.executors.filter((e) => live.has(e));
            changed = true;
            await ctx.publishEvent('executor-lost', { run: d.run, epoch: d.epoch, stage: s.index, executors: lost });
            ctx.log.warn('executor lost; its unacked work will be redelivered to the stage', { run: d.run, stage: s.index, lost });
          }
        }
        const taken = new Set([...runs.values()].flatMap((x) => x.stages.flatMap((s) => s.executors)));
        const orphaned = d.stages.some((s) => s.executors.length === 0);
        for (const a of roster) {
          if (a.role !== Role.EXECUTOR || a.state !== 'idle' || taken.has(a.id)) continue;
          // Executors the plan left idle stay idle; one launched after the deployment came to work
          // (or any, when a stage has lost all of its executors).
          if (a.startedAt < d.createdAt && !orphaned) continue;
          const stage = stageForNewExecutor(d, live);
          if (stage < 0) break;
          try {
            await assign(d, stage, a.id, 60_000);
            d.stages[stage]!.executors.push(a.id);
            taken.add(a.id);
            changed = true;
            await ctx.publishEvent('scaled', { run: d.run, epoch: d.epoch, stage, executor: a.id, replicas: d.stages[stage]!.executors.length });
            ctx.log.info('executor joined a stage', { run: d.run, stage, executor: a.id });
          } catch (e) {
            ctx.log.warn('could not assign a joining executor', { executor: a.id, error: String(e) });
          }
        }
        if (setStageDomains(d, roster)) changed = true;
        if (changed) await saveDeployment(ctx.nc, d);
      }
    } finally {
      busy = false;
    }
  }

  let timer: NodeJS.Timeout | undefined;
  return {
    control: {
      deploy: (req) => deploy(req),
      undeploy: (req) => undeploy(String(req.run)),
      runs: () => [...runs.values()].map((d) => ({ run: d.run, epoch: d.epoch, model: d.model, stages: d.stages.map((s) => ({ index: s.index, executors: s.executors })) })),
    },
    async start(c: ActorContext) {
      timer = setInterval(() => void tend().catch((e) => c.log.warn('tend failed', { error: String(e) })), 1000);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
    },
  };
};
export default actor;
