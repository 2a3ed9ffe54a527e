// Vitest global setup: tests that spawn `fleetlm` or `fleetlm-agent` run the esbuild bundles, so build them
// when they are missing or older than any source file (npm test builds first anyway; this covers
// `npx vitest run <file>` after an edit).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '..');
const SOURCES = ['cli', 'common', 'console', 'contracts', 'edge-agent', 'fleet', 'functions', 'local-demo', 'local-hub', 'models', 'deploy', 'scripts'];
const OUTPUTS = ['dist/fleetlm.mjs', 'dist/agent/agent.mjs', 'dist/console/app.js'];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist') continue;
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function outputMtime(file: string): number {
  try {
    return statSync(path.join(REPO, file)).mtimeMs;
  } catch {
    return 0;
  }
}

/** Builds dist/ when stale. */
export default function setup(): void {
  const built = Math.min(...OUTPUTS.map(outputMtime));
  const sources = Math.max(...SOURCES.map((d) => newestMtime(path.join(REPO, d))));
  if (built > sources) return;
  const r = spawnSync(process.execPath, [path.join(REPO, 'scripts/build.mjs')], { cwd: REPO, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status})`);
}
