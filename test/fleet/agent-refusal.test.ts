// The same refusals through a real agent process: a bundle signed by another key, and a published
// manifest.json with one byte altered in S3 after publishing, each end as a FAILED execution whose
// statusDetails name the signature, while the device keeps serving its good model.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DescribeJobExecutionCommand } from '@aws-sdk/client-iot';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { createIotClient, createS3Client, localProfile, type FleetProfile } from '../../fleet/profile.ts';
import { publishBundle } from '../../fleet/publisher.ts';
import { createRollout } from '../../fleet/rollout.ts';
import { watchJob } from '../../fleet/fleet-status.ts';
import { LocalKeySigner, generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { provisionThings } from '../../local-demo/provision.ts';
import { requestCompletion, startAgent, stopAllAgents, waitForAgentApi, type AgentProcess } from '../../local-demo/agents.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let dir: string;
let hub: LocalHub;
let profile: FleetProfile;
let agent: AgentProcess;
const fleetKey = generateSigningKeyPair();
const otherKey = generateSigningKeyPair();
const bundle = () => path.join(dir, 'bundle');

async function deploy(version: string) {
  const iot = createIotClient(profile);
  const r = await createRollout(iot, createS3Client(profile), profile, { modelId: 'tiny', version, group: 'g', settings: { healthCheck: { maxTokens: 2 } } });
  const final = await watchJob(iot, r.jobId, { intervalMs: 200, timeoutMs: 60_000, details: false });
  const ex = (await iot.send(new DescribeJobExecutionCommand({ jobId: r.jobId, thingName: 'dev-1' }))).execution!;
  return { status: ex.status, details: ex.statusDetails?.detailsMap ?? {}, job: final.status };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-agent-refusal-'));
  hub = await startHub({ dir: path.join(dir, 'hub') });
  profile = localProfile(hub.endpoints);
  await provisionThings(createIotClient(profile), 'g', ['dev-1']);
  mkdirSync(bundle());
  const spec = parseArchSpec({ vocabSize: 50257, contextLength: 32, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 1, headDim: 16 }] });
  await buildModelFile(spec, { outPath: path.join(bundle(), 'model.onnx'), seed: 3, externalData: 'never' });
  const pub = path.join(dir, 'fleet.pem');
  writeFileSync(pub, fleetKey.publicKeyPem);
  agent = await startAgent({ thingName: 'dev-1', dir: path.join(dir, 'dev-1'), mqtt: profile.mqtt!, mqttPassword: await hub.issueDeviceSecret('dev-1'), fleetPublicKeyPath: pub });
  await waitForAgentApi(agent, 60_000);
  const s3 = createS3Client(profile);
  await publishBundle({ s3, bucket: profile.s3.bucket, signer: new LocalKeySigner(fleetKey.privateKeyPem), modelDir: bundle(), modelId: 'tiny', version: 'good' });
  expect((await deploy('good')).status).toBe('SUCCEEDED');
}, 120_000);

afterAll(async () => {
  await stopAllAgents();
  await hub?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent process refusing manifests', () => {
  it('fails a bundle signed by a key other than the fleet key', async () => {
    const s3 = createS3Client(profile);
    await publishBundle({ s3, bucket: profile.s3.bucket, signer: new LocalKeySigner(otherKey.privateKeyPem), modelDir: bundle(), modelId: 'tiny', version: 'forged' });
    const r = await deploy('forged');
    expect(r.status).toBe('FAILED');
    expect(JSON.stringify(r.details)).toMatch(/signature/i);
    expect((await requestCompletion(agent, 'Hi', 2)).model?.version).toBe('good');
  }, 90_000);

  it('fails a manifest altered by one byte after publishing', async () => {
    const s3 = createS3Client(profile);
    await publishBundle({ s3, bucket: profile.s3.bucket, signer: new LocalKeySigner(fleetKey.privateKeyPem), modelDir: bundle(), modelId: 'tiny', version: 'tampered' });
    // Alter manifest.json in S3 after publishing, as someone with bucket access might: flip one digit of
    // the model file's sha256 (it stays a digit, so the manifest still parses). The rollout then pins
    // the altered bytes' sha256, so only the signature stands between the device and the change.
    const key = 'models/tiny/tampered/manifest.json';
    const obj = await s3.send(new GetObjectCommand({ Bucket: profile.s3.bucket, Key: key }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    const shaAt = bytes.indexOf('"sha256": "') + '"sha256": "'.length;
    let pos = shaAt;
    while (!(bytes[pos]! >= 0x30 && bytes[pos]! <= 0x39)) pos++;
    bytes[pos] ^= 0x01;
    await s3.send(new PutObjectCommand({ Bucket: profile.s3.bucket, Key: key, Body: bytes }));
    const r = await deploy('tampered');
    expect(r.status).toBe('FAILED');
    expect(JSON.stringify(r.details)).toMatch(/signature/i);
    expect((await requestCompletion(agent, 'Hi', 2)).model?.version).toBe('good');
  }, 90_000);
});
