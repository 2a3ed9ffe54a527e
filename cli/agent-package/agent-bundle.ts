// esbuild bundle of the device agent (edge-agent/main.ts -> agent.mjs, and the self-update launcher when
// the tree has one): ESM for Node 20, everything inlined except the native packages the device package ships.
import { existsSync, readFileSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { ValidationError } from '../../common/errors.ts';

/** Packages with native binaries: left outside the bundle and shipped in the package's node_modules. */
export const NATIVE_PACKAGES: readonly string[] = ['onnxruntime-node'];

/** The launcher's source, when the self-update launcher is part of the tree. */
export const LAUNCHER_ENTRY = 'edge-agent/self-update/launcher.ts';

/**
 * The repository root: the nearest folder above `from` whose package.json is the `fleetlm` workspace root
 * (works from the TypeScript sources and from the CLI bundle in dist/).
 */
export function findRepoRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'fleetlm') return dir;
    if (path.dirname(dir) === dir) throw new ValidationError(`no fleetlm repository above ${from}: the agent is bundled from its sources`);
  }
}

/** The agent version a build carries unless told otherwise: edge-agent/package.json's. */
export function defaultAgentVersion(repoRoot: string): string {
  return (JSON.parse(readFileSync(path.join(repoRoot, 'edge-agent', 'package.json'), 'utf8')) as { version: string }).version;
}

export interface AgentBundleResult {
  outDir: string;
  /** agent.mjs, the entry. */
  entry: string;
  /** fleetlm-agent-launcher.mjs, when the tree has the self-update launcher. */
  launcher?: string;
  /** Every file written (entries and shared chunks), relative to outDir. */
  files: string[];
  /**
   * What agent start-up loads: the source files and external packages in agent.mjs and the chunks it imports
   * statically (chunks reached only by `import()` load later, e.g. onnxruntime with the first model).
   */
  startup: { inputs: string[]; externals: string[] };
  /** Every source file in the bundle, start-up or lazy (what a device carries at all). */
  inputs: string[];
  version: string;
}

// Bundled CommonJS packages call require() for Node built-ins and the native packages; in an ES module
// that needs a real require, made here once per output file.
const REQUIRE_BANNER = "import { createRequire as __fleetlmCreateRequire } from 'node:module'; const require = __fleetlmCreateRequire(import.meta.url);";

const SHARED = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: NATIVE_PACKAGES.flatMap((p) => [p, `${p}/*`]),
  legalComments: 'linked',
  // Error classes name themselves from new.target.name (common/errors.ts): minifying must keep names.
  keepNames: true,
  metafile: true,
  logLevel: 'silent',
} satisfies esbuild.BuildOptions;

function written(result: esbuild.BuildResult<{ metafile: true }>, repoRoot: string, outDir: string): string[] {
  for (const w of result.warnings) process.stderr.write(`fleetlm: esbuild warning: ${w.text}\n`);
  return Object.keys(result.metafile.outputs).map((f) => path.relative(outDir, path.resolve(repoRoot, f)));
}

/**
 * Bundles the agent into `outDir` (agent.mjs plus shared chunks) and, when the tree has it, the self-update
 * launcher into `launcherOutDir` as one self-contained file (it is copied out of the version folder at
 * install). `version` is what `fleetlm-agent --version` prints.
 */
export async function bundleAgent(opts: { repoRoot: string; outDir: string; launcherOutDir: string; version: string; minify?: boolean }): Promise<AgentBundleResult> {
  const define = { FLEETLM_AGENT_VERSION: JSON.stringify(opts.version) };
  const minify = opts.minify ?? true;
  const agent = await esbuild.build({
    ...SHARED,
    absWorkingDir: opts.repoRoot,
    entryPoints: { agent: path.join(opts.repoRoot, 'edge-agent', 'main.ts') },
    outdir: opts.outDir,
    outExtension: { '.js': '.mjs' },
    // Shared chunks keep onnxruntime (loaded with the first model) out of start-up.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    define,
    banner: { js: REQUIRE_BANNER },
    minify,
  });
  const files = written(agent, opts.repoRoot, opts.outDir);
  const startup = startupClosure(agent.metafile, path.relative(opts.repoRoot, path.join(opts.outDir, 'agent.mjs')));
  const launcherPath = path.join(opts.repoRoot, LAUNCHER_ENTRY);
  let launcher: string | undefined;
  if (existsSync(launcherPath)) {
    launcher = path.join(opts.launcherOutDir, 'fleetlm-agent-launcher.mjs');
    const r = await esbuild.build({
      ...SHARED,
      absWorkingDir: opts.repoRoot,
      entryPoints: [launcherPath],
      outfile: launcher,
      define,
      banner: { js: `#!/usr/bin/env node\n${REQUIRE_BANNER}` },
      minify,
    });
    written(r, opts.repoRoot, opts.launcherOutDir);
    await chmod(launcher, 0o755);
  }
  const inputs = Object.keys(agent.metafile.inputs).sort();
  return { outDir: opts.outDir, entry: path.join(opts.outDir, 'agent.mjs'), ...(launcher ? { launcher } : {}), files, version: opts.version, startup, inputs };
}

/** Inputs and externals of `entry` and of every output it reaches through static imports (esbuild metafile). */
function startupClosure(meta: esbuild.Metafile, entry: string): { inputs: string[]; externals: string[] } {
  const key = entry.split(path.sep).join('/');
  const seen = new Set<string>();
  const inputs = new Set<string>();
  const externals = new Set<string>();
  const visit = (out: string): void => {
    if (seen.has(out) || !meta.outputs[out]) return;
    seen.add(out);
    const o = meta.outputs[out]!;
    for (const input of Object.keys(o.inputs)) inputs.add(input);
    for (const imp of o.imports) {
      if (imp.kind === 'dynamic-import') continue;
      if (imp.external) externals.add(imp.path);
      else visit(imp.path);
    }
  };
  visit(key);
  return { inputs: [...inputs].sort(), externals: [...externals].sort() };
}
