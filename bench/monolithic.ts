// The single-process baseline of `cleave bench pipeline`: the whole model in one onnxruntime session,
// in a process of its own started like an executor (same node, same malloc settings), so that the
// pipeline and the baseline run under the same conditions. Driven over IPC by MonolithicProcess.
import { fork, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import ort from '../runtime/ort.js';
import { digitPage } from '../examples/digit-pages.js';
import { toOrtTensor } from '../runtime/executor/ort-tensors.js';
import { withTensorMalloc } from '../runtime/malloc.js';

type Request = { type: 'run'; n: number };
type Reply = { type: 'ready' } | { type: 'done'; throughput: number; medianMs: number };

/** One baseline process: `run(n)` times n sequential whole-model runs on the bench's pages. */
export class MonolithicProcess {
  private constructor(private readonly child: ChildProcess) {}

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(model: string, size: number, threads: number): Promise<MonolithicProcess> {
    const child = fork(fileURLToPath(import.meta.url), [model, String(size), String(threads)], {
      execArgv: ['--import', 'tsx'],
      env: withTensorMalloc(process.env),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('message', (m: Reply) => (m.type === 'ready' ? resolve() : reject(new Error('monolithic baseline did not start'))));
      child.once('exit', (code) => reject(new Error(`monolithic baseline exited (${code})`)));
    });
    return new MonolithicProcess(child);
  }

  run(n: number): Promise<{ throughput: number; medianMs: number }> {
    return new Promise((resolve) => {
      this.child.once('message', (m: Reply) => m.type === 'done' && resolve(m));
      this.child.send({ type: 'run', n } satisfies Request);
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

async function serve(model: string, size: number, threads: number): Promise<void> {
  const session = await ort.InferenceSession.create(await readFile(model), { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const pages = Array.from({ length: 8 }, (_, i) => digitPage(i, size, size));
  for (let i = 0; i < 2; i++) await session.run({ x: toOrtTensor('x', pages[i]!) }); // warm-up
  process.on('message', async (m: Request) => {
    if (m.type !== 'run') return;
    const times: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < m.n; i++) {
      const t = performance.now();
      await session.run({ x: toOrtTensor('x', pages[i % pages.length]!) });
      times.push(performance.now() - t);
    }
    const seconds = (performance.now() - t0) / 1000;
    times.sort((a, b) => a - b);
    process.send!({ type: 'done', throughput: m.n / seconds, medianMs: times[times.length >> 1]! } satisfies Reply);
  });
  process.send!({ type: 'ready' } satisfies Reply);
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const [model, size, threads] = process.argv.slice(2);
  await serve(model!, Number(size), Number(threads));
}
