#!/usr/bin/env node
// The `cleave` command. Sources are TypeScript run through tsx's loader, so the checkout runs as is.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../runtime/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
