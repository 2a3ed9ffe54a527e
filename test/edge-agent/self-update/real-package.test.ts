// Self-update with packages built by `fleetlm agent package` (esbuild bundles, natives, the launcher it
// ships): the device runs them with plain node from its agent home, and 0.1.0 updates itself to 0.2.0.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageAgent, type AgentArch } from '../../../cli/agent-package/package-agent.ts';
import { inspectAgentPackage } from '../../../fleet/agent-publisher.ts';
import { readUpdateRecord } from '../../../edge-agent/self-update/update-record.ts';
import type { AgentHome } from '../../../edge-agent/self-update/agent-home.ts';
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { REPO, TestFleet, eventually, tempDir } from '../agent-fixture.ts';
import { Supervisor, installAgentHome } from './self-update-fixture.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const ARCH: AgentArch = process.arch === 'arm64' ? 'arm64' : 'x64';
const THING = 'su-real-1';
let fleet: TestFleet;
let dir: string;
let home: AgentHome;
let sup: Supervisor | undefined;
const tarballs = new Map<string, string>();

beforeAll(async () => {
  fleet = await TestFleet.start();
  await fleet.createThing(THING);
  dir = await tempDir('fleetlm-self-update-real-');
  for (const version of ['0.1.0', '0.2.0']) {
    const r = await packageAgent({ repoRoot: REPO, arch: ARCH, outDir: path.join(dir, 'out'), version, deb: false });
    expect(r.launcher, 'the package ships the self-update launcher').toBe(true);
    tarballs.set(version, r.tarball);
  }
}, 240_000);

afterAll(async () => {
  await sup?.stop();
  await fleet?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

describe('self-update with real agent packages', () => {
  it('the packaged launcher and agent update 0.1.0 to 0.2.0', async () => {
    // The publisher accepts what the packager makes (same entry rules as the device).
    expect(await inspectAgentPackage(tarballs.get('0.2.0')!)).toMatchObject({ version: '0.2.0', platform: 'linux', arch: ARCH });
    home = await installAgentHome(path.join(dir, 'agent'), tarballs.get('0.1.0')!, '0.1.0', 'package');
    sup = new Supervisor(home, await Supervisor.configure(fleet, THING, dir));
    sup.start();
    await sup.waitAgent('0.1.0', 90_000);
    expect(sup.logs().find((l) => l.msg === 'agent started')).toMatchObject({ version: '0.1.0', agentVersion: '0.1.0' });

    const keyPath = path.join(dir, 'key.pem');
    await fs.writeFile(keyPath, fleet.keys.privateKeyPem);
    const r = await runCliCaptured(['rollout', '--local', fleet.hubDir, '--agent-package', tarballs.get('0.2.0')!, '--key', keyPath, '--thing', THING, '--job-id', 'real-1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const exec = await fleet.waitTerminal('real-1', THING, 120_000);
    expect(exec.status, JSON.stringify(exec.statusDetails)).toBe('SUCCEEDED');
    expect(exec.statusDetails?.detailsMap).toMatchObject({ agentVersion: '0.2.0', previousAgentVersion: '0.1.0' });
    await sup.waitAgent('0.2.0');
    // The bundle's own version string agrees with the directory the launcher started.
    expect(sup.current.logs.find((l) => l.msg === 'agent started')).toMatchObject({ version: '0.2.0', agentVersion: '0.2.0' });
    await eventually(async () => (await readUpdateRecord(home.root)) === null, 20_000, 'the update record to be removed');
    expect(await home.currentVersion()).toBe('0.2.0');
    expect(await home.versions()).toEqual(['0.1.0', '0.2.0']);
  }, 240_000);
});
