// `fleetlm rollout --canary` against a real local hub with three real agent processes: a canary that succeeds
// releases the rest of the group, a canary whose model fails its health check leaves the rest un-notified (no
// execution ever exists for them) and every device on the old version; status, jobs and rollback see both jobs.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DescribeJobCommand, ListJobExecutionsForJobCommand, ListJobExecutionsForThingCommand, type IoTClient } from '@aws-sdk/client-iot';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { createIotClient, createS3Client, localProfile, type FleetProfile } from '../../fleet/profile.ts';
import { publishBundle } from '../../fleet/publisher.ts';
import { LocalKeySigner, generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { provisionThings } from '../../local-demo/provision.ts';
import { requestCompletion, startAgent, stopAllAgents, waitForAgentApi, type AgentProcess } from '../../local-demo/agents.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const THINGS = ['pi-1', 'pi-2', 'pi-3'];
let dir: string;
let hub: LocalHub;
let profile: FleetProfile;
let iot: IoTClient;
const agents: AgentProcess[] = [];
const fleetKey = generateSigningKeyPair();

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCliCaptured([...args, '--local', path.join(dir, 'hub')]);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

async function versions(): Promise<string[]> {
  return Promise.all(agents.map(async (a) => (await requestCompletion(a, 'Hi', 2)).model?.version ?? '?'));
}

async function jobsOf(thingName: string): Promise<string[]> {
  return ((await iot.send(new ListJobExecutionsForThingCommand({ thingName }))).executionSummaries ?? []).map((e) => e.jobId!);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-canary-cli-'));
  hub = await startHub({ dir: path.join(dir, 'hub') });
  profile = localProfile(hub.endpoints);
  iot = createIotClient(profile);
  await provisionThings(iot, 'lab', THINGS);
  const bundle = path.join(dir, 'bundle');
  mkdirSync(bundle);
  const spec = parseArchSpec({ vocabSize: 50257, contextLength: 32, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 1, headDim: 16 }] });
  await buildModelFile(spec, { outPath: path.join(bundle, 'model.onnx'), seed: 3, externalData: 'never' });
  const s3 = createS3Client(profile);
  const signer = new LocalKeySigner(fleetKey.privateKeyPem);
  for (const version of ['1', '2', '3']) await publishBundle({ s3, bucket: profile.s3.bucket, signer, modelDir: bundle, modelId: 'tiny', version });
  const pub = path.join(dir, 'fleet.pem');
  writeFileSync(pub, fleetKey.publicKeyPem);
  for (const thingName of THINGS) {
    agents.push(await startAgent({ thingName, dir: path.join(dir, thingName), mqtt: profile.mqtt!, mqttPassword: await hub.issueDeviceSecret(thingName), fleetPublicKeyPath: pub }));
  }
  for (const a of agents) await waitForAgentApi(a, 60_000);
  const v1 = await cli('rollout', '--model', 'tiny', '--version', '1', '--group', 'lab', '--health-prompt', 'Hi', '--watch', '--watch-timeout', '90');
  expect(v1.code, v1.err).toBe(0);
  expect(await versions()).toEqual(['1', '1', '1']);
}, 240_000);

afterAll(async () => {
  await stopAllAgents();
  await hub?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('rollout --canary with real agents', () => {
  it('sends the canary first, and the rest of the group gets the job only after the canary SUCCEEDED', async () => {
    const r = await cli('rollout', '--model', 'tiny', '--version', '2', '--group', 'lab', '--canary', '30%', '--job-id', 'canary-ok', '--health-prompt', 'Hi', '--watch', '--watch-timeout', '120');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^created canary job canary-ok-canary: tiny@2 -> 1 of 3 device\(s\) \(pi-1\); group lab gets job canary-ok once every canary device SUCCEEDED$/m);
    expect(r.out).toMatch(/^canary succeeded on 1 device\(s\); created job canary-ok: tiny@2 -> 3 device\(s\)$/m);
    expect(await versions()).toEqual(['2', '2', '2']);

    // The canary job reached pi-1 only; the group's job was created after the canary execution finished.
    const canaryExecs = (await iot.send(new ListJobExecutionsForJobCommand({ jobId: 'canary-ok-canary' }))).executionSummaries ?? [];
    expect(canaryExecs.map((e) => [e.thingArn!.split('/').pop(), e.jobExecutionSummary!.status])).toEqual([['pi-1', 'SUCCEEDED']]);
    const main = (await iot.send(new DescribeJobCommand({ jobId: 'canary-ok' }))).job!;
    expect(main.createdAt!.getTime()).toBeGreaterThanOrEqual(canaryExecs[0]!.jobExecutionSummary!.lastUpdatedAt!.getTime());

    // status shows the rollout as one: its job with the canary job beside it.
    const status = JSON.parse((await cli('status', 'canary-ok', '--json')).out) as { status: string; counts: Record<string, number>; canary: { jobId: string; status: string } };
    expect(status).toMatchObject({ status: 'COMPLETED', counts: { SUCCEEDED: 3 }, canary: { jobId: 'canary-ok-canary', status: 'COMPLETED' } });
    const jobs = JSON.parse((await cli('jobs', '--group', 'lab', '--json')).out) as { jobs: Array<{ jobId: string; canaryOf: string | null }> };
    expect(jobs.jobs.filter((j) => j.jobId.startsWith('canary-ok')).map((j) => [j.jobId, j.canaryOf])).toEqual([
      ['canary-ok', null],
      ['canary-ok-canary', 'canary-ok'],
    ]);
  }, 180_000);

  it('stops when the canary fails its health check: the rest are never notified and every device keeps the old version', async () => {
    // No device decodes a million tokens a second: pi-1's health check fails, and its agent rolls back to 2.
    const r = await cli('rollout', '--model', 'tiny', '--version', '3', '--group', 'lab', '--canary', '30%', '--job-id', 'canary-bad', '--health-prompt', 'Hi', '--min-tokens-per-second', '1000000', '--watch');
    expect(r.code).toBe(3);
    const last = r.err.trim().split('\n').at(-1)!;
    expect(last).toMatch(/^fleetlm: error: canary canary-bad-canary: pi-1 FAILED \(.*\); job canary-bad was not created: the other 2 device\(s\) were not notified$/);
    await expect(iot.send(new DescribeJobCommand({ jobId: 'canary-bad' }))).rejects.toThrow();
    expect((await jobsOf('pi-1')).filter((j) => j.startsWith('canary-bad'))).toEqual(['canary-bad-canary']);
    for (const rest of ['pi-2', 'pi-3']) expect((await jobsOf(rest)).filter((j) => j.startsWith('canary-bad'))).toEqual([]);
    expect(await versions()).toEqual(['2', '2', '2']);

    // status and status --watch of the rollout: its job was never created; a pipeline gating on it gets 3.
    const status = JSON.parse((await cli('status', 'canary-bad', '--json')).out) as { status: string; canary: { status: string; counts: Record<string, number> } };
    expect(status).toMatchObject({ status: 'NOT_CREATED', canary: { counts: { FAILED: 1 } } });
    expect((await cli('status', 'canary-bad')).out).toMatch(/^job canary-bad will not be created: its canary ended (CANCELED|COMPLETED), so the other devices were not notified$/m);
    const watched = await cli('status', 'canary-bad', '--watch');
    expect(watched.code).toBe(3);
    expect(watched.err.trim().split('\n').at(-1)).toMatch(/canary canary-bad-canary ended (CANCELED|COMPLETED).*job canary-bad will not be created/);

    // Rollback works as before: the failed canary is the group's current deployment, 2 the last good one.
    const rb = await cli('rollback', '--group', 'lab', '--watch', '--watch-timeout', '90');
    expect(rb.code, rb.err).toBe(0);
    expect(rb.out).toMatch(/rolling lab back from tiny@3 \(canary-bad-canary, (CANCELED|COMPLETED)\) to 2 /);
  }, 180_000);
});
