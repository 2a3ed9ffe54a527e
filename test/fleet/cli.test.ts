// The operator commands end to end against a real local hub (IoT control plane, S3 store), as
// `fleetlm ... --local DIR --json` runs them. No agents: executions stay QUEUED, which is enough
// to check publish, rollout settings, status, cancel, devices and rollback's refusal.
import { runCliCaptured } from '../helpers/run-cli.ts';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DescribeJobCommand, GetJobDocumentCommand } from '@aws-sdk/client-iot';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { createIotClient, readLocalProfile } from '../../fleet/profile.ts';
import { provisionThings } from '../../local-demo/provision.ts';
import { buildAgentPackage } from '../edge-agent/self-update/self-update-fixture.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let hub: LocalHub;
let dir: string;

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCliCaptured(args);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-cli-'));
  hub = await startHub({ dir: path.join(dir, 'hub') });
  await provisionThings(createIotClient(readLocalProfile(path.join(dir, 'hub'))), 'lab', ['pi-1', 'pi-2']);
  const model = path.join(dir, 'model');
  mkdirSync(model);
  await writeTinyModel(model);
  expect((await cli('keygen', '--out-dir', path.join(dir, 'keys'))).code).toBe(0);
});

afterAll(async () => {
  await hub?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleetlm operator commands on the local hub', () => {
  it('keygen refuses to replace the fleet signing key without --force, and writes the private key 0600', async () => {
    const keys = path.join(dir, 'keys');
    const priv = path.join(keys, 'fleet-signing-key.pem');
    const before = readFileSync(priv, 'utf8');
    expect(statSync(priv).mode & 0o777).toBe(0o600);
    const again = await cli('keygen', '--out-dir', keys);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already exist.*--force/s);
    expect(readFileSync(priv, 'utf8')).toBe(before);

    const other = path.join(dir, 'keys-forced');
    mkdirSync(other);
    writeFileSync(path.join(other, 'fleet-public-key.pem'), 'old');
    expect((await cli('keygen', '--out-dir', other)).code).toBe(2);
    const forced = await cli('keygen', '--out-dir', other, '--force', '--json');
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.out)).toMatchObject({ replaced: true });
    expect(readFileSync(path.join(other, 'fleet-public-key.pem'), 'utf8')).toMatch(/BEGIN PUBLIC KEY/);
    expect(statSync(path.join(other, 'fleet-signing-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('publishes once, and refuses the same version again with exit code 2', async () => {
    const args = ['publish', '--local', path.join(dir, 'hub'), '--model-dir', path.join(dir, 'model'), '--model-id', 'tiny', '--version', '1.0', '--key', path.join(dir, 'keys', 'fleet-signing-key.pem')];
    const first = await cli(...args, '--json');
    expect(first.code).toBe(0);
    expect(JSON.parse(first.out)).toMatchObject({ modelId: 'tiny', version: '1.0', prefix: 'models/tiny/1.0/' });
    const again = await cli(...args);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already published/);
  });

  it('refuses to publish a text file as model.onnx with exit code 2, uploading nothing; --skip-bundle-checks warns loudly', async () => {
    const fake = path.join(dir, 'fake-model');
    mkdirSync(fake);
    writeFileSync(path.join(fake, 'model.onnx'), 'a text file, not a model\n');
    const args = ['publish', '--local', path.join(dir, 'hub'), '--model-dir', fake, '--model-id', 'fake', '--version', '1', '--key', path.join(dir, 'keys', 'fleet-signing-key.pem')];
    const refused = await cli(...args);
    expect(refused.code).toBe(2);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(/the bundle's model must load in onnxruntime; .*model\.onnx does not/);
    expect((await cli('versions', '--local', path.join(dir, 'hub'), '--json')).out).not.toContain('"fake"');
    // The flag warns before anything else (an empty directory then fails as usual, so the shared hub's
    // registry stays as the later tests expect; publishing with it is covered in publisher.test.ts).
    const empty = path.join(dir, 'empty-model');
    mkdirSync(empty);
    const skipped = await cli('publish', '--local', path.join(dir, 'hub'), '--model-dir', empty, '--model-id', 'fake', '--version', '1', '--key', path.join(dir, 'keys', 'fleet-signing-key.pem'), '--skip-bundle-checks');
    expect(skipped.err).toMatch(/WARNING: --skip-bundle-checks.*safety net only/);
    expect(skipped.code).toBe(2);
  });

  it('rolls out with abort, timeout and retry settings from flags; retries raise the abort minimum so one device cannot cancel them', async () => {
    const r = await cli('rollout', '--local', path.join(dir, 'hub'), '--model', 'tiny', '--version', '1.0', '--group', 'lab', '--max-per-minute', '1', '--abort-threshold', '10%', '--timeout-minutes', '7', '--retries', '2', '--json');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const { jobId } = JSON.parse(r.out) as { jobId: string };
    const iot = createIotClient(readLocalProfile(path.join(dir, 'hub')));
    const job = (await iot.send(new DescribeJobCommand({ jobId }))).job!;
    expect(job.jobExecutionsRolloutConfig).toMatchObject({ maximumPerMinute: 1 });
    // 10% with retries: from 11 executed devices (1 of 11 is 9.1%), so a device's failed attempt cannot cancel its retries.
    expect(job.abortConfig?.criteriaList?.[0]).toMatchObject({ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 10, minNumberOfExecutedThings: 11 });
    expect(job.timeoutConfig?.inProgressTimeoutInMinutes).toBe(7);
    expect(job.jobExecutionsRetryConfig?.criteriaList).toHaveLength(2);
    const doc = JSON.parse((await iot.send(new GetJobDocumentCommand({ jobId }))).document!) as { schema: string; artifacts: { url: string }[] };
    expect(doc.schema).toBe('fleetlm/deploy-model@1');
    expect(doc.artifacts[0]!.url).toMatch(/^\$\{aws:iot:s3-presigned-url-v2:http:\/\/127\.0\.0\.1:\d+\/fleetlm-artifacts\/models\/tiny\/1\.0\/model\.onnx\}$/);

    const status = await cli('status', jobId, '--local', path.join(dir, 'hub'), '--json');
    const p = JSON.parse(status.out) as { status: string; devices: { thingName: string; status: string }[] };
    expect(p.status).toBe('IN_PROGRESS');
    // One notification a minute holds the second device back: like AWS, the hub creates an execution only
    // when the rollout reaches the thing.
    expect(p.devices.map((d) => d.thingName)).toEqual(['pi-1']);
    // No agent runs here: the QUEUED target is offline, and status says so rather than just QUEUED.
    expect(p.devices[0]).toMatchObject({ status: 'QUEUED', online: false });
    const human = await cli('status', jobId, '--local', path.join(dir, 'hub'));
    expect(human.out).toMatch(/pi-1\s+QUEUED\s+\(offline, never seen\)/);

    const cancel = await cli('cancel', jobId, '--local', path.join(dir, 'hub'), '--json');
    expect(cancel.code).toBe(0);
    expect(JSON.parse(cancel.out)).toMatchObject({ jobId, canceled: [jobId], status: 'CANCELED' });

    // A pipeline gates on the exit code: a canceled job is not a success (3), and --json still prints it.
    const watched = await cli('status', jobId, '--local', path.join(dir, 'hub'), '--watch', '--json');
    expect(watched.code).toBe(3);
    expect((JSON.parse(watched.out) as { status: string }).status).toBe('CANCELED');
    // With --json the error is one JSON object, the last line on stderr.
    expect(JSON.parse(watched.err.trim().split('\n').at(-1)!)).toEqual({
      error: { code: 'OUTCOME_JOB_FAILED', message: `job ${jobId} ended CANCELED (OPERATOR_CANCEL): CANCELED=1; pi-1 CANCELED`, exitCode: 3 },
    });
    const watchedText = await cli('status', jobId, '--local', path.join(dir, 'hub'), '--watch');
    expect(watchedText.code).toBe(3);
    expect(watchedText.err.trim().split('\n').at(-1)).toBe(`fleetlm: error: job ${jobId} ended CANCELED (OPERATOR_CANCEL): CANCELED=1; pi-1 CANCELED`);
  });

  it('warns when an explicit abort minimum lets one device cancel the retries', async () => {
    const r = await cli('rollout', '--local', path.join(dir, 'hub'), '--model', 'tiny', '--version', '1.0', '--thing', 'pi-2', '--retries', '2', '--abort-min-executed', '1', '--json');
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/^fleetlm: warning: retries 2 with abort threshold 20% from 1 executed device\(s\): one device's failure \(1 of 1\) reaches the threshold and cancels the job, and its retries with it; raise the minimum to 6 or more/);
    expect((await cli('cancel', (JSON.parse(r.out) as { jobId: string }).jobId, '--local', path.join(dir, 'hub'))).code).toBe(0);
  });

  it('rollout --canary with no agent: the watch runs out (4), the canary job is canceled, the group never gets its job', async () => {
    const hubDir = path.join(dir, 'hub');
    const r = await cli('rollout', '--local', hubDir, '--model', 'tiny', '--version', '1.0', '--group', 'lab', '--canary', '50%', '--job-id', 'cli-canary', '--watch-timeout', '2');
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/^created canary job cli-canary-canary: tiny@1\.0 -> 1 of 2 device\(s\) \(pi-1\); group lab gets job cli-canary once every canary device SUCCEEDED$/m);
    expect(r.err.trim().split('\n').at(-1)).toBe('fleetlm: error: canary cli-canary-canary did not finish in time (canceled); job cli-canary was not created: the other 1 device(s) were not notified');
    const st = await cli('status', 'cli-canary', '--local', hubDir, '--json');
    expect(st.err).toBe('');
    const status = JSON.parse(st.out) as { status: string; canary: { status: string; devices: { thingName: string }[] } };
    expect(status.status).toBe('NOT_CREATED');
    expect(status.canary.status).toBe('CANCELED');
    expect(status.canary.devices.map((d) => d.thingName)).toEqual(['pi-1']);
    // Nothing left to cancel: both jobs of the rollout are accounted for.
    const cancel = await cli('cancel', 'cli-canary', '--local', hubDir);
    expect(cancel.code).toBe(2);
    expect(cancel.err).toMatch(/nothing to cancel: cli-canary-canary CANCELED/);
    expect((await cli('rollback', '--local', hubDir, '--group', 'lab', '--canary', '5%')).err).toMatch(/--canary applies to rollout/);
  });

  it('an agent update takes the same canary: the canary job names the update, the group never gets its job when the canary does not end', async () => {
    const hubDir = path.join(dir, 'hub');
    const pkgDir = path.join(dir, 'agent-packages');
    mkdirSync(pkgDir, { recursive: true });
    const pkg = await buildAgentPackage(pkgDir, '0.9.0', 'crash');
    const r = await cli('rollout', '--local', hubDir, '--agent-package', pkg, '--key', path.join(dir, 'keys', 'fleet-signing-key.pem'), '--group', 'lab', '--canary', '50%', '--job-id', 'agent-canary', '--watch-timeout', '2');
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/^created canary job agent-canary-canary: agent 0\.9\.0 -> 1 of 2 device\(s\) \(pi-1\); group lab gets job agent-canary once every canary device SUCCEEDED$/m);
    const iot = createIotClient(readLocalProfile(hubDir));
    const canary = (await iot.send(new DescribeJobCommand({ jobId: 'agent-canary-canary' }))).job!;
    expect(canary.description).toMatch(/^fleetlm update-agent 0\.9\.0 \(linux-\w+\) to group lab \(canary of agent-canary\)$/);
    expect(canary.status).toBe('CANCELED');
    await expect(iot.send(new DescribeJobCommand({ jobId: 'agent-canary' }))).rejects.toThrow();
  });

  it('rollout --watch --watch-timeout exits 4 and names the devices still pending and whether they are online', async () => {
    const r = await cli('rollout', '--local', path.join(dir, 'hub'), '--model', 'tiny', '--version', '1.0', '--thing', 'pi-2', '--watch', '--watch-timeout', '2');
    expect(r.code).toBe(4);
    expect(r.err.trim().split('\n').at(-1)).toMatch(/not done after 2 s \(IN_PROGRESS, QUEUED=1\): pending pi-2 QUEUED \(offline, never seen\)/);
    const jobId = /created job (\S+):/.exec(r.out)![1]!;
    expect((await cli('cancel', jobId, '--local', path.join(dir, 'hub'))).code).toBe(0);
    const bad = await cli('status', jobId, '--local', path.join(dir, 'hub'), '--watch', '--watch-timeout', 'soon');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--watch-timeout must be an integer in 1\.\.604800; got "soon"/);
  });

  it('lists devices and refuses a rollback when no earlier version succeeded', async () => {
    const devices = await cli('devices', '--local', path.join(dir, 'hub'), '--group', 'lab', '--json');
    const listed = JSON.parse(devices.out) as { indexed: boolean; devices: { thingName: string; model: string | null; online: boolean | null; groups: string[] }[] };
    expect(listed.indexed).toBe(true);
    // No agents here: both things are registered but have never connected.
    expect(listed.devices.map((d) => [d.thingName, d.model, d.online, d.groups])).toEqual([
      ['pi-1', null, false, ['lab']],
      ['pi-2', null, false, ['lab']],
    ]);
    const rb = await cli('rollback', '--local', path.join(dir, 'hub'), '--group', 'lab');
    expect(rb.code).toBe(2);
    expect(rb.err).toMatch(/no earlier version succeeded on group lab/);
  });

  it('rejects malformed flags with the rule and the value', async () => {
    const r = await cli('rollout', '--local', path.join(dir, 'hub'), '--model', 'tiny', '--version', '1.0', '--group', 'lab', '--canary', 'lots');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--canary must be a percentage .* got "lots"/);
    const missing = await cli('status', 'x', '--local', path.join(dir, 'nohub'));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/no local hub endpoints/);
    // An endpoints.json left behind by a hub that has stopped: the command says so up front.
    const stale = path.join(dir, 'stale');
    mkdirSync(stale);
    const e = JSON.parse(readFileSync(path.join(dir, 'hub', 'endpoints.json'), 'utf8')) as { iotEndpoint: string };
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    writeFileSync(path.join(stale, 'endpoints.json'), JSON.stringify({ ...e, iotEndpoint: `http://127.0.0.1:${closed}` }));
    const down = await cli('devices', '--local', stale);
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/does not answer at http:\/\/127\.0\.0\.1:\d+: start it with `fleetlm local up --dir/);
  });
});

describe('fleetlm jobs, versions and deprecate on the local hub', () => {
  it('lists rollout history with outcome counts and the registry, and refuses rollouts of a deprecated version', async () => {
    const hubDir = path.join(dir, 'hub');
    const jobs = await cli('jobs', '--local', hubDir, '--group', 'lab', '--json');
    expect(jobs.code).toBe(0);
    const history = (JSON.parse(jobs.out) as { jobs: { modelId: string; version: string; group: string; status: string; counts: Record<string, number>; total: number }[] }).jobs;
    expect(history.length).toBeGreaterThan(0);
    expect(history[0]).toMatchObject({ modelId: 'tiny', version: '1.0', group: 'lab', status: 'CANCELED' });
    expect(history[0]!.total).toBe(Object.values(history[0]!.counts).reduce((a, b) => a + b, 0));
    expect((await cli('jobs', '--local', hubDir)).out).toMatch(/^group\s+job\s+model\s+status\s+succeeded/);

    const versions = await cli('versions', '--local', hubDir, '--json');
    const listed = (JSON.parse(versions.out) as { versions: { modelId: string; version: string; totalBytes: number; files: number; deprecated: unknown }[] }).versions;
    const modelBytes = statSync(path.join(dir, 'model', 'model.onnx')).size;
    expect(listed).toEqual([expect.objectContaining({ modelId: 'tiny', version: '1.0', totalBytes: modelBytes, files: 1, deprecated: null })]);

    const dep = await cli('deprecate', '--local', hubDir, '--model', 'tiny', '--version', '1.0', '--reason', 'quality regression');
    expect(dep.code).toBe(0);
    expect((await cli('versions', '--local', hubDir)).out).toMatch(/tiny\s+1\.0 .*deprecated: quality regression/);
    const refused = await cli('rollout', '--local', hubDir, '--model', 'tiny', '--version', '1.0', '--group', 'lab');
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/tiny@1\.0 is deprecated .*quality regression/);
    expect((await cli('deprecate', '--local', hubDir, '--model', 'tiny', '--version', '1.0', '--undo')).code).toBe(0);
    const again = await cli('rollout', '--local', hubDir, '--model', 'tiny', '--version', '1.0', '--group', 'lab', '--json');
    expect(again.code).toBe(0);
    await cli('cancel', (JSON.parse(again.out) as { jobId: string }).jobId, '--local', hubDir);
    const missing = await cli('deprecate', '--local', hubDir, '--model', 'tiny', '--version', '9.9');
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/tiny@9\.9 is not published/);
  });
});
