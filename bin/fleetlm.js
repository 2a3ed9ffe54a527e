#!/usr/bin/env node
// Operator CLI entry: runs the esbuild bundle (`npm run build`); nothing is transpiled at run time.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/fleetlm.mjs', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write('fleetlm: not built yet: run `npm run build` (npm test and npm run demo build first)\n');
  process.exit(2);
}
await import(bundle.href);
