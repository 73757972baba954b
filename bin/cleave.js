#!/usr/bin/env node
// The `cleave` command. Sources are TypeScript run through tsx's loader, so the checkout runs as is.
import { spawn } from 'node:child_process';
import { register } from 'tsx/esm/api';
register();
const { needsTensorMalloc, withTensorMalloc } = await import('../runtime/malloc.ts');
const args = process.argv.slice(2);
if (needsTensorMalloc(args[0], process.env)) {
  // glibc reads its malloc tunables only at process start: run this command again with them set, as a
  // child that gets our signals and whose exit is ours (runtime/malloc.ts says why they matter).
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: withTensorMalloc(process.env) });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
} else {
  const { main } = await import('../runtime/cli/main.ts');
  process.exitCode = await main(args);
}
