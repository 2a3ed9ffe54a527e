// `fleetlm agent package`: the device package of the agent (docs/agent.md, "Package"): the bundle, this
// platform's native binaries only, the systemd unit, and a .deb that installs it under /opt/fleetlm/agent
// with a system user, /etc/fleetlm (conffile) and /var/lib/fleetlm.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ValidationError } from '../../common/errors.ts';
import { bundleAgent } from './agent-bundle.ts';

export type AgentArch = 'arm64' | 'x64';
export const AGENT_ARCHES: readonly AgentArch[] = ['arm64', 'x64'];

/** Debian's names for Node's arches. */
const DEB_ARCH: Record<AgentArch, string> = { arm64: 'arm64', x64: 'amd64' };

// Versions that are valid both as a file name part and as a Debian upstream version.
const VERSION_RE = /^[0-9][0-9A-Za-z.+~]{0,62}$/;

/** Files of one native package that a device needs, as paths relative to the package folder. */
interface NativeShipping {
  name: string;
  /** Folders and files copied whole (minus source maps and type declarations). */
  include: (arch: AgentArch) => string[];
}

const NATIVES: readonly NativeShipping[] = [
  {
    name: 'onnxruntime-node',
    include: (arch) => ['package.json', 'LICENSE', 'README.md', 'dist', `bin/napi-v6/linux/${arch}`],
  },
  { name: 'onnxruntime-common', include: () => ['package.json', 'LICENSE', 'README.md', 'dist/cjs', 'dist/esm'] },
];

export interface PackageAgentOptions {
  repoRoot: string;
  arch: AgentArch;
  outDir: string;
  version: string;
  /** Also build the .deb (needs dpkg-deb); default true. */
  deb?: boolean;
  /**
   * A folder with another onnxruntime-node native build for `arch` (onnxruntime_binding.node,
   * libonnxruntime.so.1 and provider libraries, e.g. a JetPack build with CUDA and TensorRT) that replaces
   * the npm package's bin/napi-v6/linux/<arch>/.
   */
  onnxruntimeBinDir?: string;
}

export interface PackageAgentResult {
  version: string;
  arch: AgentArch;
  /** `fleetlm-agent-<version>/`, the tarball's one top folder. */
  topFolder: string;
  tarball: string;
  tarballBytes: number;
  deb?: string;
  debBytes?: number;
  /** Whether the self-update launcher is in the package. */
  launcher: boolean;
  /** Bytes of the unpacked top folder. */
  unpackedBytes: number;
}

const shouldShip = (file: string) => !/\.(map|d\.ts|d\.mts|d\.cts|ts)$/.test(file);

async function copyFiltered(src: string, dst: string): Promise<void> {
  const st = await fs.stat(src).catch(() => undefined);
  if (!st) return; // optional files (README, NOTICE) may be absent
  if (st.isDirectory()) {
    await fs.mkdir(dst, { recursive: true });
    for (const e of await fs.readdir(src)) await copyFiltered(path.join(src, e), path.join(dst, e));
  } else if (shouldShip(src)) {
    await fs.mkdir(path.dirname(dst), { recursive: true });
    await fs.copyFile(src, dst);
    await fs.chmod(dst, st.mode & 0o111 ? 0o755 : 0o644);
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await fs.lstat(p)).size;
  }
  return total;
}

function run(cmd: string, args: string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new ValidationError(`${what}: cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new ValidationError(`${what}: ${cmd} exited ${r.status}: ${r.stderr.trim()}`);
}

/** Deterministic tar.gz of `dir`'s `top` folder: sorted names, root owner, fixed mtime, gzip -9. */
async function writeTarGz(dir: string, top: string, out: string, mtime: number): Promise<void> {
  const tar = spawn('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=@${mtime}`, '-cf', '-', '-C', dir, top], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  tar.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => tar.on('close', resolve));
  await pipeline(tar.stdout, createGzip({ level: 9 }), createWriteStream(out));
  const code = await exited;
  if (code !== 0) throw new ValidationError(`packaging: tar exited ${code}: ${stderr.trim()} (GNU tar is needed)`);
}

/** Stages the package's top folder: bundle, bin, natives for `arch`, systemd unit, package.json. */
async function stageTop(opts: PackageAgentOptions, top: string): Promise<{ launcher: boolean }> {
  const bundle = await bundleAgent({ repoRoot: opts.repoRoot, outDir: path.join(top, 'lib'), version: opts.version, launcherOutDir: path.join(top, 'launcher') });
  await fs.mkdir(path.join(top, 'bin'), { recursive: true });
  await fs.writeFile(
    path.join(top, 'bin', 'fleetlm-agent'),
    "#!/usr/bin/env node\n// FleetLM device agent: the bundle in ../lib (no TypeScript, no build step on the device).\nimport '../lib/agent.mjs';\n",
    { mode: 0o755 },
  );
  await fs.writeFile(path.join(top, 'package.json'), `${JSON.stringify({ name: 'fleetlm-agent', version: opts.version, type: 'module' }, null, 2)}\n`);
  await fs.mkdir(path.join(top, 'systemd'));
  await fs.copyFile(path.join(opts.repoRoot, 'deploy', 'fleetlm-agent.service'), path.join(top, 'systemd', 'fleetlm-agent.service'));
  for (const n of NATIVES) {
    const src = path.join(opts.repoRoot, 'node_modules', n.name);
    for (const part of n.include(opts.arch)) await copyFiltered(path.join(src, part), path.join(top, 'node_modules', n.name, part));
  }
  if (opts.onnxruntimeBinDir) {
    const src = path.resolve(opts.onnxruntimeBinDir);
    const names = await fs.readdir(src).catch(() => [] as string[]);
    if (!names.includes('onnxruntime_binding.node')) {
      throw new ValidationError(`--onnxruntime-bin must be a folder holding onnxruntime_binding.node and its libraries, got ${src} (${names.length} entries)`);
    }
    const dst = path.join(top, 'node_modules/onnxruntime-node/bin/napi-v6/linux', opts.arch);
    await fs.rm(dst, { recursive: true, force: true });
    // dereference: a build tree links libonnxruntime.so.1 -> libonnxruntime.so.1.x.y; the package holds files.
    await fs.cp(src, dst, { recursive: true, dereference: true });
  }
  for (const n of NATIVES) {
    const must = n.name === 'onnxruntime-node' ? `bin/napi-v6/linux/${opts.arch}` : 'dist/cjs';
    const ok = await fs.stat(path.join(top, 'node_modules', n.name, must)).catch(() => undefined);
    if (!ok) throw new ValidationError(`packaging: node_modules/${n.name} has no ${must}; run npm ci in ${opts.repoRoot}`);
  }
  return { launcher: bundle.launcher !== undefined };
}

/** The .deb: /opt/fleetlm/agent/versions/<version>/, the unit, /usr/bin/fleetlm-agent, the conffile, scripts. */
async function buildDeb(opts: PackageAgentOptions, stage: string, topDir: string, launcher: boolean, out: string): Promise<void> {
  const root = path.join(stage, 'deb');
  const home = path.join(root, 'opt/fleetlm/agent');
  await fs.mkdir(path.join(home, 'versions'), { recursive: true });
  await fs.cp(topDir, path.join(home, 'versions', opts.version), { recursive: true, verbatimSymlinks: true });
  await fs.mkdir(path.join(root, 'lib/systemd/system'), { recursive: true });
  await fs.copyFile(path.join(opts.repoRoot, 'deploy/fleetlm-agent.service'), path.join(root, 'lib/systemd/system/fleetlm-agent.service'));
  await fs.mkdir(path.join(root, 'usr/bin'), { recursive: true });
  // With the self-update launcher, it decides which version runs; without, `current` does.
  await fs.symlink(launcher ? '/opt/fleetlm/agent/launcher.mjs' : '/opt/fleetlm/agent/current/bin/fleetlm-agent', path.join(root, 'usr/bin/fleetlm-agent'));
  await fs.mkdir(path.join(root, 'etc/fleetlm'), { recursive: true });
  await fs.copyFile(path.join(opts.repoRoot, 'deploy/debian/agent.json'), path.join(root, 'etc/fleetlm/agent.json'));
  const debian = path.join(root, 'DEBIAN');
  await fs.mkdir(debian);
  const installedKiB = Math.ceil((await dirBytes(root)) / 1024);
  await fs.writeFile(
    path.join(debian, 'control'),
    [
      'Package: fleetlm-agent',
      `Version: ${opts.version}`,
      `Architecture: ${DEB_ARCH[opts.arch]}`,
      'Maintainer: FleetLM <fleetlm@users.noreply.github.com>',
      'Section: misc',
      'Priority: optional',
      'Depends: nodejs (>= 20), passwd',
      `Installed-Size: ${installedKiB}`,
      'Homepage: https://github.com/fleetlm/fleetlm',
      'Description: FleetLM device agent',
      ' Takes model deployments as AWS IoT Jobs, downloads, verifies and installs them atomically,',
      ' health-checks and rolls back, serves the model on 127.0.0.1 and reports telemetry.',
      '',
    ].join('\n'),
  );
  await fs.writeFile(path.join(debian, 'conffiles'), '/etc/fleetlm/agent.json\n');
  for (const script of ['postinst', 'prerm', 'postrm']) {
    const text = await fs.readFile(path.join(opts.repoRoot, 'deploy/debian', script), 'utf8');
    await fs.writeFile(path.join(debian, script), text.replaceAll('@VERSION@', opts.version), { mode: 0o755 });
  }
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z9', '--build', root, out], 'packaging the .deb');
}

/** Throws unless `version` can name an agent package (a file name part and a Debian upstream version). */
export function checkAgentVersion(version: string): void {
  if (!VERSION_RE.test(version)) {
    throw new ValidationError(`agent version must start with a digit and use only [0-9A-Za-z.+~] (a Debian version), got ${JSON.stringify(version)}`);
  }
}

/** Writes fleetlm-agent-<version>-linux-<arch>.tar.gz (and the .deb) into `outDir`. */
export async function packageAgent(opts: PackageAgentOptions): Promise<PackageAgentResult> {
  checkAgentVersion(opts.version);
  if (!AGENT_ARCHES.includes(opts.arch)) throw new ValidationError(`--arch must be one of ${AGENT_ARCHES.join(', ')}, got ${JSON.stringify(opts.arch)}`);
  const wantDeb = opts.deb ?? true;
  if (wantDeb && spawnSync('dpkg-deb', ['--version']).status !== 0) {
    throw new ValidationError('packaging the .deb needs dpkg-deb (apt-get install dpkg); pass --no-deb for the tarball only');
  }
  await fs.mkdir(opts.outDir, { recursive: true });
  const stage = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-agent-pkg-'));
  try {
    const topFolder = `fleetlm-agent-${opts.version}`;
    const topDir = path.join(stage, 'tar', topFolder);
    const { launcher } = await stageTop(opts, topDir);
    const base = `fleetlm-agent-${opts.version}-linux-${opts.arch}`;
    const tarball = path.resolve(opts.outDir, `${base}.tar.gz`);
    // Reproducible: SOURCE_DATE_EPOCH when set (https://reproducible-builds.org/specs/source-date-epoch/).
    const mtime = Number(process.env.SOURCE_DATE_EPOCH ?? 0) || 0;
    await writeTarGz(path.join(stage, 'tar'), topFolder, `${tarball}.tmp`, mtime);
    await fs.rename(`${tarball}.tmp`, tarball);
    const result: PackageAgentResult = {
      version: opts.version,
      arch: opts.arch,
      topFolder,
      tarball,
      tarballBytes: (await fs.stat(tarball)).size,
      launcher,
      unpackedBytes: await dirBytes(topDir),
    };
    if (wantDeb) {
      const deb = path.resolve(opts.outDir, `fleetlm-agent_${opts.version}_${DEB_ARCH[opts.arch]}.deb`);
      await buildDeb(opts, stage, topDir, launcher, `${deb}.tmp`);
      await fs.rename(`${deb}.tmp`, deb);
      Object.assign(result, { deb, debBytes: (await fs.stat(deb)).size });
    }
    return result;
  } finally {
    await fs.rm(stage, { recursive: true, force: true });
  }
}
