// `cleave bench conformance [--json] [--filter S] [--no-ocr]`: the full split-conformance run over
// libonnx-testdata (node, pytorch-converted, pytorch-operator, simple) plus PP-OCRv4 det.
import { parseCommandArgs } from '../runtime/cli/args.js';
import { usageOf } from '../runtime/cli/usage.js';
import { listCases, runConformance, runOcrConformance, summarise, type CaseOutcome } from '../runtime/onnx/conformance.js';

export default async function conformance(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(usageOf('bench'), {
    args: argv,
    options: {
      json: { type: 'boolean', default: false },
      filter: { type: 'string' },
      'no-ocr': { type: 'boolean', default: false },
      verbose: { type: 'boolean', short: 'v', default: false },
    },
    strict: true,
  });
  const started = Date.now();
  const cases = listCases().filter((c) => !values.filter || c.id.includes(values.filter));
  const log = (o: CaseOutcome): void => {
    if (values.verbose || o.status === 'failed') {
      process.stderr.write(`${o.status.padEnd(7)} ${o.id} nodes=${o.nodes} cuts=${o.cutsTested}${o.reason ? ` (${o.reason})` : ''}${o.failures.length ? `\n    ${o.failures.slice(0, 3).map((f) => `[${f.cuts}] ${f.message}`).join('\n    ')}` : ''}\n`);
    }
  };
  const { outcomes } = await runConformance(cases, { onCase: log });
  if (!values['no-ocr'] && (!values.filter || 'ocr/ch_PP-OCRv4_det'.includes(values.filter))) {
    const o = await runOcrConformance();
    log(o);
    outcomes.push(o);
  }
  const summary = { ...summarise(outcomes), seconds: Math.round((Date.now() - started) / 100) / 10 };
  if (values.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(`models ${summary.models}  runnable ${summary.runnable}  passed ${summary.passed}  failed ${summary.failed}  skipped ${summary.skipped}`);
    console.log(`cuts tested ${summary.cutsTested}  (refused: non-tensor value crosses the cut ${summary.cutsUnsupported})  in ${summary.seconds}s`);
    for (const f of summary.failures.slice(0, 50)) console.log(`FAIL ${f.model} cuts=[${f.cuts}] ${f.message}`);
  }
  return summary.failed === 0 ? 0 : 1;
}
