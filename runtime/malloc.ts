// glibc malloc settings for processes that move multi-MB tensors. By default glibc serves every block
// above 128 KiB-32 MiB (its dynamic threshold) with a fresh mmap and trims freed heap memory back to
// the OS, so each new activation buffer is fresh pages: on the VMs measured here a first touch costs
// ~1-3 ms per MB (a 9 MB ORT output: 5-13 ms, more than the memcpy by 50x). Serving large blocks from
// the heap and keeping freed memory for the next request makes those pages warm. Peak resident memory
// is unchanged (it is the same set of live buffers); idle memory is not given back until exit.
// One malloc arena for all threads: an executor calibrates on its main thread and runs its partition on
// an inference thread, and with an arena per thread the partition's onnxruntime memory was all new,
// beside the calibration's freed memory that no other thread could reuse (measured with `cleave bench
// pipeline`: peak resident memory above idle 80-107 MB with arenas per thread, 60-65 MB with one, same
// throughput; the inference thread and the main thread rarely allocate at the same moment).
const TUNABLES = ['glibc.malloc.mmap_threshold=33554432', 'glibc.malloc.trim_threshold=1073741824', 'glibc.malloc.arena_max=1'];
// V8's young generation of 1 MiB semi-spaces (Node 20 lets it grow to 16 MiB each, three of them): a
// tensor process's JavaScript allocates small, short-lived objects (NATS messages, headers, metadata;
// tensors live outside the heap), which a 1 MiB space collects as well, and the heap stopped swinging
// between 18 and 35 MB. Measured on an executor of PP-OCRv4 det over 256-512 requests: resident memory
// above idle 52-56 MB with it, 64-68 MB without; idle 172 MB against 191 MB.
const V8_FLAGS = ['--max-semi-space-size=1'];

/**
 * `env` with the tensor-friendly memory settings added (glibc malloc tunables; V8 flags in
 * NODE_OPTIONS), unless the user set them or CLEAVE_MALLOC_TUNING=0. The same `env` object when
 * nothing was missing.
 */
export function withTensorMalloc(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (process.platform !== 'linux' || env.CLEAVE_MALLOC_TUNING === '0') return env;
  const current = env.GLIBC_TUNABLES ?? '';
  const extra = TUNABLES.filter((t) => !current.includes(t.split('=')[0]!));
  const node = env.NODE_OPTIONS ?? '';
  const flags = V8_FLAGS.filter((f) => !node.includes(f.split('=')[0]!));
  if (extra.length === 0 && flags.length === 0) return env;
  return {
    ...env,
    ...(extra.length ? { GLIBC_TUNABLES: [current, ...extra].filter(Boolean).join(':') } : {}),
    ...(flags.length ? { NODE_OPTIONS: [node, ...flags].filter(Boolean).join(' ') } : {}),
  };
}

/**
 * Commands that move tensors in their own process and re-run themselves with the tunables. Not `actor`:
 * an actor's pid is what the roster shows and what signals go to, so a wrapper process will not do;
 * the deployments Cleave starts (`up`, `demo`, `infer`, tests) pass the tunables to their actors, and an
 * executor started by hand without them says so in its log.
 */
const TENSOR_COMMANDS = new Set(['infer', 'demo', 'bench']);

/** True when `command` should run with the tunables and this process was started without them. */
export function needsTensorMalloc(command: string | undefined, env: NodeJS.ProcessEnv): boolean {
  return command !== undefined && TENSOR_COMMANDS.has(command) && withTensorMalloc(env) !== env;
}
