#!/usr/bin/env node
// Device agent entry in a checkout: runs the esbuild bundle (`npm run build`). Devices run the package
// from `fleetlm agent package` instead (bin/fleetlm-agent there).
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/agent/agent.mjs', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write('fleetlm-agent: not built yet: run `npm run build`\n');
  process.exit(2);
}
await import(bundle.href);
