// `fleetlm agent package`: the tarball runs with plain node outside the repository (no repository
// node_modules reachable), takes a job from the local hub, installs the model and serves it; the .deb
// holds the right files and its maintainer scripts install, upgrade, remove and purge in a throwaway root.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageAgent, type AgentArch, type PackageAgentResult } from '../../cli/agent-package/package-agent.ts';
import { queryTelemetry } from '../../local-hub/telemetry-sink.ts';
import { AgentProcess, REPO, TestFleet, buildTestModel, eventually, tempDir } from '../edge-agent/agent-fixture.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';

const ARCH: AgentArch = process.arch === 'arm64' ? 'arm64' : 'x64';
const OTHER: AgentArch = ARCH === 'x64' ? 'arm64' : 'x64';
const HAS_DPKG = spawnSync('dpkg-deb', ['--version']).status === 0;
// dpkg --root with chrootless scripts needs root for chown; CI (.ci/run) runs as root.
const CAN_INSTALL = HAS_DPKG && process.getuid?.() === 0;

function sh(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Folders from `dir` up to / that hold a node_modules: none may exist, or the package could borrow from it. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'node_modules'))) found.push(d);
    if (path.dirname(d) === d) return found;
  }
}

let out: string;
let pkg: PackageAgentResult;

beforeAll(async () => {
  out = await tempDir('fleetlm-agent-pkg-out-');
  pkg = await packageAgent({ repoRoot: REPO, arch: ARCH, outDir: out, version: '0.1.0', deb: HAS_DPKG });
}, 180_000);

afterAll(async () => {
  if (out) await fs.rm(out, { recursive: true, force: true });
});

describe('agent package tarball', () => {
  it('is named by the contract, has one top folder, this arch only, and stays small', async () => {
    expect(path.basename(pkg.tarball)).toBe(`fleetlm-agent-0.1.0-linux-${ARCH}.tar.gz`);
    const list = sh('tar', ['-tzf', pkg.tarball]).stdout.trim().split('\n');
    expect(new Set(list.map((e) => e.split('/')[0]))).toEqual(new Set(['fleetlm-agent-0.1.0']));
    const top = 'fleetlm-agent-0.1.0/';
    for (const f of ['bin/fleetlm-agent', 'lib/agent.mjs', 'package.json', 'systemd/fleetlm-agent.service']) expect(list).toContain(top + f);
    expect(list).toContain(`${top}node_modules/onnxruntime-node/bin/napi-v6/linux/${ARCH}/onnxruntime_binding.node`);
    // The MQTT client is pure JavaScript inside the bundle: onnxruntime is the only native package.
    expect(list.filter((e) => /node_modules\/(aws-crt|aws-iot-device-sdk-v2|mqtt)\//.test(e))).toEqual([]);
    // Only this platform's natives: no other arch, no macOS or Windows, no musl build.
    expect(list.filter((e) => e.includes(`/linux/${OTHER}/`) || e.includes(`linux-${OTHER}-`) || /darwin|win32|musl/.test(e))).toEqual([]);
    // Nothing from the operator or cloud side rides along.
    expect(list.filter((e) => /node_modules\/(@aws-sdk|aws-cdk-lib|cdk-nag|aedes|tsx|esbuild|@stdlib)/.test(e))).toEqual([]);
    expect(pkg.tarballBytes).toBeLessThan(60e6);
  });

  it('refuses a version that is not a Debian version and an unknown arch, naming the rule', async () => {
    await expect(packageAgent({ repoRoot: REPO, arch: ARCH, outDir: out, version: 'v1 beta' })).rejects.toThrow(/agent version must start with a digit.*"v1 beta"/);
    const r = await runCliCaptured(['agent', 'package', '--arch', 'mips', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/arch/);
  });

  it('--onnxruntime-bin swaps in another onnxruntime native build (a JetPack GPU build) and refuses a folder without a binding', async () => {
    const custom = await tempDir('fleetlm-ort-build-');
    const npmBin = path.join(REPO, 'node_modules/onnxruntime-node/bin/napi-v6/linux', ARCH);
    for (const f of await fs.readdir(npmBin)) await fs.copyFile(path.join(npmBin, f), path.join(custom, f));
    await fs.writeFile(path.join(custom, 'libonnxruntime_providers_cuda.so'), 'stand-in for the provider library');
    const out3 = path.join(out, 'gpu');
    const gpu = await packageAgent({ repoRoot: REPO, arch: ARCH, outDir: out3, version: '0.1.0', deb: false, onnxruntimeBinDir: custom });
    const list = sh('tar', ['-tzf', gpu.tarball]).stdout;
    expect(list).toContain(`node_modules/onnxruntime-node/bin/napi-v6/linux/${ARCH}/libonnxruntime_providers_cuda.so`);
    await fs.rm(path.join(custom, 'onnxruntime_binding.node'));
    await expect(packageAgent({ repoRoot: REPO, arch: ARCH, outDir: out3, version: '0.1.0', deb: false, onnxruntimeBinDir: custom })).rejects.toThrow(
      /--onnxruntime-bin must be a folder holding onnxruntime_binding.node/,
    );
  }, 120_000);

  it('runs with plain node from an empty folder outside the repository: takes a job, installs the model, serves it', async () => {
    const root = await tempDir('fleetlm-agent-unpacked-');
    expect(nodeModulesAbove(root)).toEqual([]);
    expect(sh('tar', ['-xzf', pkg.tarball, '-C', root]).status).toBe(0);
    const bin = path.join(root, pkg.topFolder, 'bin', 'fleetlm-agent');
    const version = sh(process.execPath, [bin, '--version']);
    expect(version.stdout.trim()).toBe('0.1.0');
    // Config errors come out of the bundle as they do from the sources: one line, exit 2.
    const cfgDir = await tempDir('fleetlm-agent-pkg-cfg-');
    const cfg = path.join(cfgDir, 'agent.json');
    await fs.writeFile(cfg, JSON.stringify({ thingName: 't', mqtt: { host: '127.0.0.1' }, modelDir: 'm', stateDir: 's', fleetPublicKeyPath: 'k.pem' }));
    const bad = sh(process.execPath, [bin, '--config', cfg, '--set', 'runtime.executionProviders=quantum,cpu']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^fleetlm-agent: error: runtime\.executionProviders: execution provider "quantum" is not in the installed onnxruntime-node [\d.]+; installed: cpu/);

    const fleet = await TestFleet.start();
    let agent: AgentProcess | undefined;
    try {
      const arn = await fleet.createThing('pkg-device');
      const dir = await tempDir('fleetlm-agent-pkg-dev-');
      agent = await AgentProcess.start(fleet, 'pkg-device', dir, { NODE_PATH: '' }, bin);
      const model = await buildTestModel(3);
      const doc = await fleet.publish('pkg-model', '1.0.0', model);
      await fleet.createJob('pkg-job-1', arn, doc);
      const exec = await fleet.waitTerminal('pkg-job-1', 'pkg-device', 90_000);
      expect(exec.status, JSON.stringify(exec.statusDetails)).toBe('SUCCEEDED');
      const gen = await agent.generate('hello');
      expect(gen.status).toBe(200);
      expect(gen.body.model).toMatchObject({ modelId: 'pkg-model', version: '1.0.0' });
      // The natives that are loaded come from the package, not from any checkout.
      const maps = await fs.readFile(`/proc/${agent.proc.pid}/maps`, 'utf8');
      const natives = [...new Set(maps.split('\n').filter((l) => /\.node$|libonnxruntime/.test(l)).map((l) => l.slice(l.indexOf('/'))))];
      expect(natives.length).toBeGreaterThanOrEqual(2);
      for (const n of natives) expect(n.startsWith(path.join(root, pkg.topFolder))).toBe(true);
      // Telemetry says how the device runs models.
      const records = await eventually(async () => {
        const r = await queryTelemetry(fleet.hub.endpoints.telemetryDir, { thingName: 'pkg-device' });
        return r.length > 0 ? r : undefined;
      }, 20_000, 'telemetry from the packaged agent');
      expect(records[0]!.telemetry.runtime).toEqual({ executionProviders: ['cpu'] });
    } finally {
      await agent?.stop();
      await fleet.stop();
      await fs.rm(root, { recursive: true, force: true });
    }
  }, 180_000);
});

describe.skipIf(!HAS_DPKG)('agent .deb', () => {
  it('declares the package, its dependencies and the conffile, and ships the install layout', () => {
    const info = sh('dpkg-deb', ['--info', pkg.deb!]);
    expect(info.status).toBe(0);
    expect(info.stdout).toMatch(/Package: fleetlm-agent/);
    expect(info.stdout).toMatch(/Version: 0\.1\.0/);
    expect(info.stdout).toMatch(new RegExp(`Architecture: ${ARCH === 'x64' ? 'amd64' : 'arm64'}`));
    expect(info.stdout).toMatch(/Depends: nodejs \(>= 20\)/);
    for (const script of ['postinst', 'prerm', 'postrm', 'conffiles']) expect(info.stdout).toContain(script);
    expect(sh('dpkg-deb', ['--field', pkg.deb!, 'Package']).stdout.trim()).toBe('fleetlm-agent');
    const conffiles = sh('sh', ['-c', `dpkg-deb --ctrl-tarfile '${pkg.deb}' | tar -xOf - ./conffiles`]).stdout;
    expect(conffiles.trim()).toBe('/etc/fleetlm/agent.json');

    const contents = sh('dpkg-deb', ['--contents', pkg.deb!]).stdout;
    const v = './opt/fleetlm/agent/versions/0.1.0/';
    for (const f of ['bin/fleetlm-agent', 'lib/agent.mjs', `node_modules/onnxruntime-node/bin/napi-v6/linux/${ARCH}/libonnxruntime.so.1`]) expect(contents).toContain(v + f);
    expect(contents).toMatch(/-rwxr-xr-x root\/root .* \.\/opt\/fleetlm\/agent\/versions\/0\.1\.0\/bin\/fleetlm-agent/);
    expect(contents).toContain('./lib/systemd/system/fleetlm-agent.service');
    expect(contents).toContain('./etc/fleetlm/agent.json');
    expect(contents).toMatch(/\.\/usr\/bin\/fleetlm-agent -> \/opt\/fleetlm\/agent\/(current\/bin\/fleetlm-agent|launcher\.mjs)/);
    // Everything is root-owned in the archive; the agent's user owns only what postinst hands it.
    expect(contents.split('\n').filter((l) => l && !/ root\/root /.test(l))).toEqual([]);
    expect(contents).not.toMatch(/\/var\/lib\/fleetlm\//);
  });

  describe.skipIf(!CAN_INSTALL)('in a throwaway root (dpkg --root, chrootless scripts)', () => {
    let root: string;
    let v2: PackageAgentResult;
    const dpkg = (...args: string[]) => sh('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', '--log=/dev/null', ...args]);

    beforeAll(async () => {
      root = await tempDir('fleetlm-dpkg-root-');
      for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'etc']) await fs.mkdir(path.join(root, d), { recursive: true });
      await fs.writeFile(path.join(root, 'var/lib/dpkg/status'), '');
      await fs.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
      await fs.writeFile(path.join(root, 'etc/group'), 'root:x:0:\n');
      await fs.writeFile(path.join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n');
      await fs.writeFile(path.join(root, 'etc/gshadow'), 'root:*::\n');
      const out2 = path.join(out, 'v2');
      v2 = await packageAgent({ repoRoot: REPO, arch: ARCH, outDir: out2, version: '0.1.1' });
    }, 180_000);

    afterAll(async () => {
      if (root) await fs.rm(root, { recursive: true, force: true });
    });

    const at = (p: string) => path.join(root, p);
    const uidOf = async (name: string) => {
      const line = (await fs.readFile(at('etc/passwd'), 'utf8')).split('\n').find((l) => l.startsWith(`${name}:`));
      return line ? Number(line.split(':')[2]) : undefined;
    };

    it('install creates the system user, state and config folders, and points current at the version', async () => {
      const r = dpkg('-i', pkg.deb!);
      expect(r.status, r.stderr).toBe(0);
      const uid = await uidOf('fleetlm');
      expect(uid).toBeDefined();
      expect((await fs.readFile(at('etc/passwd'), 'utf8')).split('\n').find((l) => l.startsWith('fleetlm:'))).toMatch(/:\/var\/lib\/fleetlm:\/usr\/sbin\/nologin$/);
      for (const d of ['var/lib/fleetlm', 'var/lib/fleetlm/models', 'var/lib/fleetlm/state']) {
        const st = await fs.stat(at(d));
        expect(st.uid, d).toBe(uid);
        expect(st.mode & 0o777, d).toBe(0o750);
      }
      const conf = await fs.stat(at('etc/fleetlm/agent.json'));
      expect([conf.uid, conf.mode & 0o777]).toEqual([0, 0o640]);
      expect(readlinkSync(at('opt/fleetlm/agent/current'))).toBe('versions/0.1.0');
      const run = sh(process.execPath, [at('opt/fleetlm/agent/current/bin/fleetlm-agent'), '--version']);
      expect(run.stdout.trim()).toBe('0.1.0');
    });

    it('upgrade switches current and keeps the edited config and the installed models', async () => {
      await fs.writeFile(at('etc/fleetlm/agent.json'), '{"thingName":"edited-by-the-operator"}\n');
      await fs.mkdir(at('var/lib/fleetlm/models/versions/m/1'), { recursive: true });
      await fs.writeFile(at('var/lib/fleetlm/models/versions/m/1/model.onnx'), 'weights');
      const r = dpkg('--force-confold', '-i', v2.deb!);
      expect(r.status, r.stderr).toBe(0);
      expect(readlinkSync(at('opt/fleetlm/agent/current'))).toBe('versions/0.1.1');
      expect(existsSync(at('opt/fleetlm/agent/versions/0.1.0'))).toBe(false);
      expect(sh(process.execPath, [at('opt/fleetlm/agent/current/bin/fleetlm-agent'), '--version']).stdout.trim()).toBe('0.1.1');
      expect(await fs.readFile(at('etc/fleetlm/agent.json'), 'utf8')).toContain('edited-by-the-operator');
      expect(await fs.readFile(at('var/lib/fleetlm/models/versions/m/1/model.onnx'), 'utf8')).toBe('weights');
    }, 60_000);

    it('remove takes the software and keeps config and models; purge removes them too', async () => {
      let r = dpkg('--remove', 'fleetlm-agent');
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(at('opt/fleetlm/agent'))).toBe(false);
      expect(existsSync(at('usr/bin/fleetlm-agent'))).toBe(false);
      expect(await fs.readFile(at('etc/fleetlm/agent.json'), 'utf8')).toContain('edited-by-the-operator');
      expect(existsSync(at('var/lib/fleetlm/models/versions/m/1/model.onnx'))).toBe(true);
      r = dpkg('--purge', 'fleetlm-agent');
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(at('etc/fleetlm'))).toBe(false);
      expect(existsSync(at('var/lib/fleetlm'))).toBe(false);
    });
  });
});
