// Argument parsing for every `cleave` command: node:util parseArgs, with its refusals (an unknown
// option, a missing value, a positional where none is taken) turned into the project's typed error, so
// that a command called from code and one run from the shell fail alike.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';

/** parseArgs(config), or BAD_ARGUMENT naming what was refused and ending with `usage`. */
export function parseCommandArgs<T extends ParseArgsConfig>(usage: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
      throw new CleaveError(ErrorCode.BAD_ARGUMENT, `${(e as Error).message}; ${usage}`, { cause: e });
    }
    throw e;
  }
}
