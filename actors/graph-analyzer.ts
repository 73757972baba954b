// GraphAnalyzer: reads models, costs every node and finds where they can be cut (runtime/graph), and
// extracts one standalone ONNX model per stage of a plan (runtime/onnx/extract). Models and stage files
// travel through the artifacts object store by sha256; control replies carry only keys and specs.
import type { ActorFactory } from '../runtime/actor/host.js';
import { analyzeOnnx } from '../runtime/graph/mod.js';
import { measurePlansSeconds, type Feed } from '../runtime/graph/probe.js';
import { decodeModel, encodeModel, onnx } from '../runtime/onnx/proto.js';
import { extractStages } from '../runtime/onnx/extract.js';
import { getArtifact, putArtifact } from '../runtime/pipeline/store.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';
import { specOf } from '../runtime/pipeline/specs.js';
import { calibrateFlopsPerSec } from '../runtime/executor/calibrate.js';

const actor: ActorFactory = async (ctx) => {
  // Measured node times are in this host's seconds; its calibrated speed lets the planner scale them.
  let calibration = await calibrateFlopsPerSec({ threads: 1 }).catch(() => undefined);
  ctx.setCapabilities(calibration ? { flopsPerSec: calibration.flopsPerSec } : {});
  ctx.setState('ready');
  const models = new Map<string, onnx.ModelProto>();
  async function model(key: unknown): Promise<onnx.ModelProto> {
    if (typeof key !== 'string' || !key.startsWith('sha256-')) throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'name the model by its artifact key (`sha256-…`); upload it with putArtifact first');
    let m = models.get(key);
    if (!m) {
      m = decodeModel(await getArtifact(ctx.nc, key));
      models.set(key, m);
    }
    return m;
  }
  return {
    control: {
      async analyze(req) {
        const m = await model(req.artifact);
        if (req.profile) {
          // Profiled times are scaled to executors by this speed: measure it again now (the start-up
          // measurement ran while every actor was starting), keeping the fastest.
          const now = await calibrateFlopsPerSec({ threads: 1 }).catch(() => undefined);
          if (now && (!calibration || now.flopsPerSec > calibration.flopsPerSec)) calibration = now;
        }
        const g = await analyzeOnnx(m, { inputs: req.inputs as Record<string, number[]> | undefined, profile: Boolean(req.profile), modelPath: typeof req.name === 'string' ? req.name : undefined });
        if (g.profile && calibration) g.profile.flopsPerSec = calibration.flopsPerSec;
        return g;
      },
      /**
       * Seconds per run of each stage of `stages` as an executor runs it, fed zero-filled model inputs
       * of the `feeds` dtypes and shapes (the analysed graph's inputs).
       */
      async time(req) {
        const m = await model(req.artifact);
        // `plans` (several stage lists, timed side by side) or `stages` (one).
        const plans = (Array.isArray(req.plans) ? req.plans : [req.stages]) as string[][][];
        const feeds = req.feeds as Record<string, Feed>;
        if (plans.length === 0 || plans.some((stages) => !Array.isArray(stages) || stages.length === 0)) {
          throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'time needs `stages` (a list of node-id lists, one per stage) or `plans` (a list of those)');
        }
        if (!feeds || typeof feeds !== 'object' || Object.values(feeds).some((f) => !f || !Array.isArray(f.shape) || !f.shape.every((d) => typeof d === 'number'))) {
          throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'time needs `feeds`: { name: { dtype, shape } } with every dim a number; analyse the model with its input shapes first');
        }
        const extracted = [];
        for (const stages of plans) extracted.push((await extractStages(m, stages)).stages.map((s) => s.model));
        const seconds = await measurePlansSeconds(extracted, feeds);
        return Array.isArray(req.plans) ? { seconds } : { seconds: seconds[0] };
      },
      async split(req) {
        const m = await model(req.artifact);
        const stages = req.stages as string[][];
        if (!Array.isArray(stages) || stages.length === 0) throw new CleaveError(ErrorCode.BAD_ARGUMENT, 'split needs `stages`: a list of node-id lists, one per stage');
        const result = await extractStages(m, stages);
        const out = [];
        for (const s of result.stages) {
          const bytes = encodeModel(s.model);
          const key = await putArtifact(ctx.nc, bytes);
          const g = s.model.graph!;
          out.push({
            index: s.index,
            artifact: key,
            artifactBytes: bytes.byteLength,
            nodes: s.nodes,
            inputs: (g.input ?? []).filter((v) => s.inputs.includes(v.name ?? '')).map(specOf),
            outputs: (g.output ?? []).map(specOf),
          });
        }
        const g = m.graph!;
        const inits = new Set((g.initializer ?? []).map((t) => t.name));
        return {
          stages: out,
          inputs: (g.input ?? []).filter((v) => !inits.has(v.name)).map(specOf),
          outputs: (g.output ?? []).map(specOf),
        };
      },
    },
  };
};
export default actor;
