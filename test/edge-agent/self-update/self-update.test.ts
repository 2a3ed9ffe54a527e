// Agent self-update end to end with real processes: the local hub, `fleetlm rollout --agent-package`,
// the esbuild-bundled launcher under a restart-always supervisor, and agent packages that work, crash at
// start, or never confirm. Then kill -9 (agent and launcher together, like a power cut) at every step of
// the switch: each run must end on the old or the new agent with the job resolved and the files consistent.
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { sha256File, sha256Hex } from '../../../common/hash.ts';
import { agentPackageFileName } from '../../../contracts/agent-package.ts';
import type { UpdateAgentDocumentInput } from '../../../contracts/job-document.ts';
import { LocalKeySigner, generateSigningKeyPair, signManifestBytes } from '../../../contracts/manifest-signing.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUpdateRecord, readUpdateRecord, removeUpdateRecord, writeUpdateRecord } from '../../../edge-agent/self-update/update-record.ts';
import type { AgentHome } from '../../../edge-agent/self-update/agent-home.ts';
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { AgentProcess, TestFleet, eventually, tempDir } from '../agent-fixture.ts';
import { Supervisor, buildAgentPackage, installAgentHome, type PackageKind } from './self-update-fixture.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const THING = 'su-1';
const ARCH = process.arch === 'arm64' ? 'arm64' : 'x64';
const OTHER_ARCH = ARCH === 'x64' ? 'arm64' : 'x64';
let thingArn: string;
let fleet: TestFleet;
let dir: string;
let keyPath: string;
let home: AgentHome;
let sup: Supervisor;
const packages = new Map<string, string>();

const VERSIONS: Array<[string, PackageKind]> = [
  ['1.0.0', 'good'],
  ['2.0.0', 'good'],
  ['3.0.0', 'crash'],
  ['4.0.0', 'hang'],
  ['5.0.0', 'good'],
  ['6.0.0', 'good'],
  ['7.0.0', 'good'],
  ['8.0.0', 'good'],
  ['9.0.0', 'crash'],
  ['10.0.0', 'good'],
];

beforeAll(async () => {
  fleet = await TestFleet.start();
  thingArn = await fleet.createThing(THING);
  dir = await tempDir('fleetlm-self-update-');
  await fs.mkdir(path.join(dir, 'packages'));
  for (const [v, kind] of VERSIONS) packages.set(v, await buildAgentPackage(path.join(dir, 'packages'), v, kind));
  keyPath = path.join(dir, 'fleet-signing-key.pem');
  await fs.writeFile(keyPath, fleet.keys.privateKeyPem);
  home = await installAgentHome(path.join(dir, 'agent'), packages.get('1.0.0')!, '1.0.0');
  sup = new Supervisor(home, await Supervisor.configure(fleet, THING, dir));
  sup.start();
  await sup.waitAgent('1.0.0');
}, 120_000);

afterAll(async () => {
  await sup?.stop();
  await fleet?.stop();
});

async function rollout(version: string, jobId: string, ...extra: string[]): Promise<void> {
  const r = await runCliCaptured(['rollout', '--local', fleet.hubDir, '--agent-package', packages.get(version)!, '--key', keyPath, '--thing', THING, '--job-id', jobId, '--json', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ jobId, version, targetCount: 1, document: { schema: 'fleetlm/update-agent@1', version } });
}

/** The files say the update is over and `version` runs: no record, `current` on it, no leftovers. */
async function expectSettledOn(version: string, installed: string[]): Promise<void> {
  await eventually(async () => (await readUpdateRecord(home.root)) === null, 20_000, 'the update record to be removed');
  expect(await home.currentVersion()).toBe(version);
  await sup.waitAgent(version);
  expect((await fs.readdir(home.root)).sort()).toEqual(['current', 'launcher.mjs', 'versions']);
  await eventually(async () => JSON.stringify(await home.versions()) === JSON.stringify([...installed].sort()), 10_000, `installed versions to be ${installed.join(', ')}`);
  expect((await fs.readdir(home.versionsDir)).filter((n) => n.startsWith('.'))).toEqual([]);
}

describe('agent self-update', () => {
  it('a good update: the new agent starts, confirms, reports SUCCEEDED and stays', async () => {
    await rollout('2.0.0', 'su-good');
    const exec = await fleet.waitTerminal('su-good', THING, 90_000);
    expect(exec.status).toBe('SUCCEEDED');
    expect(exec.statusDetails?.detailsMap).toMatchObject({ step: 'done', agentVersion: '2.0.0', previousAgentVersion: '1.0.0' });
    await expectSettledOn('2.0.0', ['1.0.0', '2.0.0']);
    // The old agent asked for the restart (exit 75); the launcher watched the trial until it confirmed.
    expect(await Promise.all(sup.runs.slice(0, -1).map((r) => r.exit))).toContainEqual({ code: 75, signal: null });
    await eventually(async () => sup.logs().some((l) => l.msg === 'the new agent confirmed' && l.version === '2.0.0'), 10_000, 'the launcher to see the confirmation');
  }, 120_000);

  it('an update whose agent crashes at start is rolled back, and the old agent reports FAILED with the reason', async () => {
    await rollout('3.0.0', 'su-crash');
    const exec = await fleet.waitTerminal('su-crash', THING, 90_000);
    expect(exec.status).toBe('FAILED');
    const d = exec.statusDetails?.detailsMap ?? {};
    expect(d).toMatchObject({ code: 'AGENT_UPDATE_FAILED', step: 'agent-update', agentVersion: '2.0.0', failedVersion: '3.0.0' });
    expect(d.reason).toBe('agent 3.0.0 exited with code 1 before it confirmed (last output: Error: agent 3.0.0 is broken at start); rolled back to 2.0.0');
    await expectSettledOn('2.0.0', ['1.0.0', '2.0.0']);
  }, 120_000);

  it('an update whose agent never connects is stopped at the deadline and rolled back', async () => {
    await rollout('4.0.0', 'su-hang', '--confirm-timeout', '3');
    const exec = await fleet.waitTerminal('su-hang', THING, 90_000);
    expect(exec.status).toBe('FAILED');
    expect(exec.statusDetails?.detailsMap?.reason).toMatch(/agent 4\.0\.0 did not connect and report within 3 s; rolled back to 2\.0\.0/);
    expect(sup.logs().some((l) => l.msg === 'hanging agent 4.0.0 started')).toBe(true);
    await expectSettledOn('2.0.0', ['1.0.0', '2.0.0']);
  }, 120_000);

  /**
   * Uploads `version`'s package with a hand-made manifest (not through the publisher) and returns a document
   * claiming it is for `docArch`: lets a test lie about the arch, or sign with another key.
   */
  async function craftedDocument(version: string, opts: { manifestArch: string; docArch: string; signWithPem?: string }): Promise<UpdateAgentDocumentInput> {
    const file = packages.get(version)!;
    const bucket = fleet.hub.endpoints.s3.bucket;
    const prefix = `crafted/${version}/${opts.manifestArch}/${Date.now()}/`;
    const url = (key: string) => `\${aws:iot:s3-presigned-url:${fleet.hub.endpoints.s3.endpoint}/${bucket}/${prefix}${key}}`;
    const size = (await fs.stat(file)).size;
    const sha256 = await sha256File(file);
    const name = agentPackageFileName(version, 'linux', opts.docArch as 'x64');
    const manifest = {
      format: 'fleetlm/agent-manifest@1',
      version,
      platform: 'linux',
      arch: opts.manifestArch,
      createdAt: new Date().toISOString(),
      package: { name: agentPackageFileName(version, 'linux', opts.manifestArch as 'x64'), size, sha256 },
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const sig = await signManifestBytes(manifestBytes, new LocalKeySigner(opts.signWithPem ?? fleet.keys.privateKeyPem));
    await fleet.s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + name, Body: await fs.readFile(file) }));
    await fleet.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}manifest.sig.json`, Body: JSON.stringify(sig) }));
    await fleet.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}manifest.json`, Body: manifestBytes }));
    return {
      schema: 'fleetlm/update-agent@1',
      version,
      packages: [
        {
          platform: 'linux',
          arch: opts.docArch as 'x64',
          manifest: { url: url('manifest.json'), sha256: sha256Hex(manifestBytes), size: manifestBytes.length },
          signature: { url: url('manifest.sig.json') },
          artifact: { name, url: url(name), sha256, size },
        },
      ],
    };
  }

  it('refuses what is not for this device, not signed by the fleet, or not started by the launcher; a current version is a no-op', async () => {
    await fleet.createJob('su-other-arch', thingArn, await craftedDocument('5.0.0', { manifestArch: OTHER_ARCH, docArch: OTHER_ARCH }));
    const otherArch = await fleet.waitTerminal('su-other-arch', THING);
    expect(otherArch.status).toBe('REJECTED');
    expect(otherArch.statusDetails?.detailsMap).toMatchObject({ code: 'VALIDATION_PLATFORM' });
    expect(otherArch.statusDetails?.detailsMap?.reason).toMatch(`no agent package for this device (linux-${ARCH}); it has linux-${OTHER_ARCH}`);

    // The job document says this arch, the signed manifest says the other one: the signed word wins.
    await fleet.createJob('su-lying-doc', thingArn, await craftedDocument('5.0.0', { manifestArch: OTHER_ARCH, docArch: ARCH }));
    const lying = await fleet.waitTerminal('su-lying-doc', THING);
    expect(lying.status).toBe('FAILED');
    expect(lying.statusDetails?.detailsMap).toMatchObject({ code: 'VALIDATION_MANIFEST_MISMATCH' });
    expect(lying.statusDetails?.detailsMap?.reason).toMatch(`it is for linux-${OTHER_ARCH}, this device is linux-${ARCH}`);

    await fleet.createJob('su-bad-sig', thingArn, await craftedDocument('5.0.0', { manifestArch: ARCH, docArch: ARCH, signWithPem: generateSigningKeyPair().privateKeyPem }));
    const badSig = await fleet.waitTerminal('su-bad-sig', THING);
    expect(badSig.status).toBe('FAILED');
    expect(badSig.statusDetails?.detailsMap).toMatchObject({ code: 'VALIDATION_SIGNATURE', step: 'verifying' });

    await rollout('2.0.0', 'su-same');
    const same = await fleet.waitTerminal('su-same', THING);
    expect(same.status).toBe('SUCCEEDED');
    expect(same.statusDetails?.detailsMap?.note).toBe('agent 2.0.0 is already running');
    // None of these touched the agent home.
    await expectSettledOn('2.0.0', ['1.0.0', '2.0.0']);

    // An agent started without the launcher cannot replace itself.
    const plainArn = await fleet.createThing('su-plain');
    const plainDir = await tempDir('fleetlm-self-update-plain-');
    const plain = await AgentProcess.start(fleet, 'su-plain', plainDir);
    try {
      await fleet.createJob('su-no-launcher', plainArn, await craftedDocument('5.0.0', { manifestArch: ARCH, docArch: ARCH }));
      const noLauncher = await fleet.waitTerminal('su-no-launcher', 'su-plain');
      expect(noLauncher.status).toBe('REJECTED');
      expect(noLauncher.statusDetails?.detailsMap).toMatchObject({ code: 'VALIDATION_NO_LAUNCHER' });
    } finally {
      await plain.stop();
    }
  }, 120_000);

  interface KillCase {
    version: string;
    env: Record<string, string>;
    /** The record state and `current` the kill must have left (checked before the next launch). */
    atKill: { state: string | null; current: 'from' | 'to' };
    expected: 'SUCCEEDED' | 'FAILED';
    reason?: RegExp;
  }
  const KILLS: KillCase[] = [
    { version: '5.0.0', env: { FLEETLM_AGENT_TEST_HOOKS_KILL_AT_UPDATE_STEP: 'unpacked' }, atKill: { state: null, current: 'from' }, expected: 'SUCCEEDED' },
    { version: '6.0.0', env: { FLEETLM_AGENT_TEST_HOOKS_KILL_AT_UPDATE_STEP: 'recorded' }, atKill: { state: 'pending', current: 'from' }, expected: 'SUCCEEDED' },
    { version: '7.0.0', env: { FLEETLM_AGENT_TEST_HOOKS_KILL_AT_UPDATE_STEP: 'switched' }, atKill: { state: 'pending', current: 'to' }, expected: 'SUCCEEDED' },
    // The trial was recorded but the new agent never ran: its one attempt is spent, so the old one stays.
    {
      version: '8.0.0',
      env: { FLEETLM_LAUNCHER_TEST_KILL_AT: 'trial-recorded' },
      atKill: { state: 'starting', current: 'to' },
      expected: 'FAILED',
      reason: /agent 8\.0\.0 stopped before it confirmed/,
    },
    // The new agent crashed and the launcher died before it could record why.
    {
      version: '9.0.0',
      env: { FLEETLM_LAUNCHER_TEST_KILL_AT: 'before-rollback' },
      atKill: { state: 'starting', current: 'to' },
      expected: 'FAILED',
      reason: /agent 9\.0\.0 stopped before it confirmed/,
    },
    // The new agent dies after confirming (only the agent: the launcher sees it go): it stays, and reports.
    { version: '10.0.0', env: { FLEETLM_AGENT_TEST_HOOKS_KILL_ON_PHASE: 'health-checking' }, atKill: { state: 'confirmed', current: 'to' }, expected: 'SUCCEEDED' },
  ];

  it('kill -9 at every step of the switch leaves a consistent state and a resolved job', async () => {
    let running = '2.0.0';
    const installed = new Set(['1.0.0', '2.0.0']);
    for (const k of KILLS) {
      const jobId = `su-kill-${k.version.replace(/\./g, '_')}`;
      await sup.restart(k.env);
      await sup.waitAgent(running);
      await rollout(k.version, jobId);
      const kills = sup.killSnapshots.length;
      await eventually(async () => sup.killSnapshots.length > kills, 90_000, `the kill hook ${JSON.stringify(k.env)} to fire`, 100);
      const snap = sup.killSnapshots[kills]!;
      expect(snap.record?.state ?? null, `record state at the kill (${JSON.stringify(k.env)})`).toBe(k.atKill.state);
      expect(snap.current, `current at the kill (${JSON.stringify(k.env)})`).toBe(k.atKill.current === 'to' ? k.version : running);
      expect(snap.versions).toContain(k.version);
      const exec = await fleet.waitTerminal(jobId, THING, 90_000);
      expect(exec.status, `${jobId} after ${JSON.stringify(k.env)}`).toBe(k.expected);
      if (k.reason) {
        expect(exec.statusDetails?.detailsMap).toMatchObject({ code: 'AGENT_UPDATE_FAILED', failedVersion: k.version });
        expect(exec.statusDetails?.detailsMap?.reason).toMatch(k.reason);
      }
      if (k.expected === 'SUCCEEDED') {
        // After a success the device keeps the previous and the new version.
        installed.clear();
        installed.add(running).add(k.version);
        running = k.version;
      }
      await expectSettledOn(running, [...installed]);
    }
  }, 600_000);

  it('`fleetlm-agent --version` through the launcher prints the current version and leaves a pending update alone', async () => {
    await sup.stop();
    const running = (await home.currentVersion())!;
    const other = (await home.versions()).find((v) => v !== running)!;
    const pending = await writeUpdateRecord(home.root, newUpdateRecord('su-info', running, other, 30_000));
    try {
      const r = spawnSync(process.execPath, [path.join(home.root, 'launcher.mjs'), '--version'], { encoding: 'utf8', env: { ...process.env } });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('0.1.0'); // the test packages run this checkout's sources (edge-agent/package.json)
      expect(await readUpdateRecord(home.root)).toEqual(pending);
      expect(await home.currentVersion()).toBe(running);
    } finally {
      await removeUpdateRecord(home.root);
    }
  });
});
