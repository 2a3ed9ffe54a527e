// Installs the locked dependencies when node_modules is missing or older than the lockfile,
// so `npm test` and `npm run demo` work on a fresh clone.
import { existsSync, statSync } from 'node:fs';
import { execSync } from 'node:child_process';

const marker = 'node_modules/.package-lock.json';
const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync('package-lock.json').mtimeMs;
if (stale) {
  console.error('[fleetlm] installing dependencies (npm ci)...');
  // allowScripts in package.json denies onnxruntime-node's CUDA download on npm 11; the variable covers npm 10.
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
}
