// `npm run build`: esbuild bundles of the operator CLI (dist/fleetlm.mjs, its worker entries and shared
// chunks), of the web console's page (dist/console/app.js) and of the device agent (dist/agent/agent.mjs,
// built by the CLI's `agent bundle`). Nothing is transpiled at run time afterwards. The CLI bundle sits one
// folder below the repository root so its `new URL('../assets/...', import.meta.url)` paths keep working;
// npm packages stay in node_modules.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const t0 = performance.now();
// Chunk names carry content hashes: start from an empty folder so stale chunks never linger.
rmSync(dist, { recursive: true, force: true });

await esbuild.build({
  absWorkingDir: root,
  entryPoints: {
    fleetlm: 'cli/main.ts',
    // Worker threads load these beside the bundle (new URL('./x.mjs', import.meta.url)).
    'tt-row-worker': 'models/compression/tt-row-worker.ts',
    'gemm-worker': 'models/training/gemm-worker.mjs',
  },
  outdir: dist,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  chunkNames: 'chunk-[hash]',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // The CLI runs from this checkout: its npm packages load from node_modules, only when a command needs them.
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
});

// The web console's page script, for the browser: uPlot and its stylesheet bundled in (dist/console/app.js
// and app.css), served by `fleetlm console` beside console/web/index.html. No framework, no other build step.
await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: 'console/web/app.ts' },
  outdir: path.join(dist, 'console'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  logLevel: 'warning',
});

const agent = spawnSync(process.execPath, [path.join(root, 'bin/fleetlm.js'), 'agent', 'bundle', '--out', path.join(dist, 'agent')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (agent.status !== 0) process.exit(agent.status ?? 1);
console.error(`[fleetlm] built dist/ in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
