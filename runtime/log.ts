// One structured logger: a line per event on stderr, `time level [scope] message {fields}`.
// CLEAVE_LOG=debug|info|warn|error picks the level (default info); CLEAVE_LOG_JSON=1 prints JSON lines.
type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(scope: string): Logger {
  const min = ORDER[(process.env.CLEAVE_LOG as Level) ?? 'info'] ?? ORDER.info;
  const json = process.env.CLEAVE_LOG_JSON === '1';
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const at = new Date().toISOString();
    const line = json
      ? JSON.stringify({ at, level, scope, msg, ...fields })
      : `${at} ${level.padEnd(5)} [${scope}] ${msg}${fields && Object.keys(fields).length ? ' ' + JSON.stringify(fields) : ''}`;
    process.stderr.write(line + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
