// `cleave bench <name> [...]`: runs bench/<name>.ts, whose default export takes argv and returns an exit code.
import { CleaveError, ErrorCode } from '../../../protocols/errors.js';

const BENCHES: Record<string, () => Promise<{ default: (argv: string[]) => Promise<number> }>> = {
  codec: () => import('../../../bench/codec.js'),
  planner: () => import('../../../bench/planner.js'),
  conformance: () => import('../../../bench/conformance.js'),
  pipeline: () => import('../../../bench/pipeline.js'),
  executor: () => import('../../../bench/executor.js'),
  hop: () => import('../../../bench/hop.js'),
};

export default async function bench(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const load = name ? BENCHES[name] : undefined;
  if (!load) {
    throw new CleaveError(ErrorCode.BAD_ARGUMENT, `unknown benchmark '${name ?? ''}'; choose one of: ${Object.keys(BENCHES).join(', ')}`);
  }
  return (await load()).default(rest);
}
