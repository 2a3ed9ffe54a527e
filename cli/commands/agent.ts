// `fleetlm agent bundle|package`: build the device agent from this repository: the esbuild bundle that
// bin/fleetlm-agent.js runs, or the per-architecture device package (tar.gz + .deb, docs/agent.md "Package").
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { parseFlags } from '../flag-names.ts';
import { bundleAgent, defaultAgentVersion, findRepoRoot } from '../agent-package/agent-bundle.ts';
import { AGENT_ARCHES, checkAgentVersion, packageAgent } from '../agent-package/package-agent.ts';

const PackageSettingsSchema = z
  .object({
    arch: z.enum(AGENT_ARCHES as ['arm64', 'x64']),
    out: z.string().min(1),
    agentVersion: z.string().min(1).optional(),
    onnxruntimeBin: z.string().min(1).optional(),
    deb: z.boolean(),
    json: z.boolean(),
  })
  .strict();

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

/** Registers `fleetlm agent ...`. */
export function register(program: Command): void {
  const agent = program.command('agent').description('Bundle and package the device agent (tar.gz and .deb per architecture)');
  agent
    .command('bundle')
    .description('Write the agent bundle (agent.mjs and chunks; natives resolve from node_modules) to a folder')
    .requiredOption('--out <dir>', 'output folder')
    .option('--agent-version <version>', 'version the bundle reports (default: edge-agent/package.json)')
    .option('--no-minify', 'readable output')
    .action(async (o: { out: string; agentVersion?: string; minify: boolean }) => {
      const repoRoot = findRepoRoot();
      const outDir = path.resolve(o.out);
      // The bundle's version is the one its package and self-update report later: refuse what packaging would.
      const version = o.agentVersion ?? defaultAgentVersion(repoRoot);
      checkAgentVersion(version);
      const r = await bundleAgent({
        repoRoot,
        outDir,
        launcherOutDir: path.join(outDir, 'launcher'),
        version,
        minify: o.minify,
      });
      process.stdout.write(`agent ${r.version} bundled: ${r.entry}${r.launcher ? `, launcher ${r.launcher}` : ''}\n`);
    });
  agent
    .command('package')
    .description('Write fleetlm-agent-<version>-linux-<arch>.tar.gz and a .deb: the bundle, that arch\'s native binaries, the systemd unit')
    .requiredOption('--arch <arch>', `target architecture: ${AGENT_ARCHES.join(' | ')}`)
    .requiredOption('--out <dir>', 'output folder')
    .option('--agent-version <version>', 'package version (default: edge-agent/package.json)')
    .option('--onnxruntime-bin <dir>', 'another onnxruntime-node native build for --arch (e.g. JetPack with CUDA/TensorRT): replaces bin/napi-v6/linux/<arch>')
    .option('--no-deb', 'only the tarball (no dpkg-deb needed)')
    .option('--json', 'machine-readable result on stdout')
    .action(async (raw: Record<string, unknown>) => {
      const o = parseFlags(PackageSettingsSchema, { json: false, ...raw }, 'fleetlm agent package options');
      const repoRoot = findRepoRoot();
      const r = await packageAgent({
        repoRoot,
        arch: o.arch,
        outDir: path.resolve(o.out),
        version: o.agentVersion ?? defaultAgentVersion(repoRoot),
        deb: o.deb,
        ...(o.onnxruntimeBin ? { onnxruntimeBinDir: o.onnxruntimeBin } : {}),
      });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${r.tarball} (${mb(r.tarballBytes)}, ${mb(r.unpackedBytes)} unpacked${r.launcher ? ', with the self-update launcher' : ''})\n`);
      if (r.deb) process.stdout.write(`${r.deb} (${mb(r.debBytes!)})\n`);
    });
}
