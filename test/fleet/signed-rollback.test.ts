// Anti-rollback through the operator's commands and a real agent: `publish --security-version`, a plain
// redeploy of the older release refused by the device, `authorize-rollback` + `rollback --authorization` (signer and
// job creator apart) and `rollback --key`, each carrying the fleet key's authorization scoped to the group.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DescribeJobExecutionCommand, GetJobDocumentCommand } from '@aws-sdk/client-iot';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { createIotClient, createS3Client, localProfile, type FleetProfile } from '../../fleet/profile.ts';
import { createRollout } from '../../fleet/rollout.ts';
import { watchJob } from '../../fleet/fleet-status.ts';
import { generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { provisionThings } from '../../local-demo/provision.ts';
import { startAgent, stopAllAgents, waitForAgentApi } from '../../local-demo/agents.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let dir: string;
let hub: LocalHub;
let profile: FleetProfile;
const keys = generateSigningKeyPair();
const hubDir = () => path.join(dir, 'hub');
const keyFile = () => path.join(dir, 'fleet-signing-key.pem');

async function finish(jobId: string) {
  const iot = createIotClient(profile);
  await watchJob(iot, jobId, { intervalMs: 200, timeoutMs: 60_000, details: false });
  const ex = (await iot.send(new DescribeJobExecutionCommand({ jobId, thingName: 'dev-1' }))).execution!;
  return { status: ex.status, details: ex.statusDetails?.detailsMap ?? {} };
}

async function rollout(version: string, target: { group?: string; things?: string[] }) {
  const r = await createRollout(createIotClient(profile), createS3Client(profile), profile, { modelId: 'tiny', version, ...target, settings: { healthCheck: { maxTokens: 2 } } });
  return finish(r.jobId);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-signed-rollback-'));
  hub = await startHub({ dir: hubDir() });
  profile = localProfile(hub.endpoints);
  await provisionThings(createIotClient(profile), 'g', ['dev-1']);
  const bundle = path.join(dir, 'bundle');
  mkdirSync(bundle);
  const spec = parseArchSpec({ vocabSize: 50257, contextLength: 32, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 1, headDim: 16 }] });
  await buildModelFile(spec, { outPath: path.join(bundle, 'model.onnx'), seed: 5, externalData: 'never' });
  writeFileSync(keyFile(), keys.privateKeyPem, { mode: 0o600 });
  const pub = path.join(dir, 'fleet.pem');
  writeFileSync(pub, keys.publicKeyPem);
  for (const [version, sv] of [['1', '1'], ['2', '2']]) {
    const r = await runCliCaptured(['publish', '--local', hubDir(), '--model-dir', bundle, '--model-id', 'tiny', '--version', version!, '--key', keyFile(), '--security-version', sv!, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).manifest.securityVersion).toBe(Number(sv));
  }
  // thingGroups as `fleetlm device register --group g` writes it: the signed rollback is scoped to the group.
  const agent = await startAgent({ thingName: 'dev-1', dir: path.join(dir, 'dev-1'), mqtt: profile.mqtt!, mqttPassword: await hub.issueDeviceSecret('dev-1'), fleetPublicKeyPath: pub, extra: { thingGroups: ['g'] } });
  await waitForAgentApi(agent, 60_000);
}, 120_000);

afterAll(async () => {
  await stopAllAgents();
  await hub?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('rollback below the security version', () => {
  it('is refused as a plain redeploy and accepted from `rollback --authorization` and `rollback --key`', async () => {
    expect((await rollout('1', { group: 'g' })).status).toBe('SUCCEEDED');
    expect((await rollout('2', { group: 'g' })).status).toBe('SUCCEEDED');

    // Whoever can create jobs redeploys the older, validly signed release: the device refuses it.
    const plain = await rollout('1', { things: ['dev-1'] });
    expect(plain).toMatchObject({ status: 'FAILED', details: { code: 'VALIDATION_ROLLBACK_REFUSED' } });

    // Split duties: whoever may sign issues a scoped authorization, whoever may create jobs uses it. One for another
    // group is refused by the CLI before anything is canceled or created.
    const other = path.join(dir, 'auth-other.json');
    expect((await runCliCaptured(['authorize-rollback', '--model', 'tiny', '--version', '1', '--group', 'other', '--key', keyFile(), '--out', other])).code).toBe(0);
    const refused = await runCliCaptured(['rollback', '--local', hubDir(), '--group', 'g', '--authorization', other]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/names thing groups \[other\], not g/);
    const authFile = path.join(dir, 'auth-g.json');
    const issued = await runCliCaptured(['authorize-rollback', '--model', 'tiny', '--version', '1', '--group', 'g', '--key', keyFile(), '--out', authFile, '--json']);
    expect(issued.code, issued.stderr).toBe(0);
    expect(JSON.parse(issued.stdout)).toMatchObject({ format: 'fleetlm/rollback-authorization@2', scope: { thingGroups: ['g'], things: [] } });
    const viaFile = await runCliCaptured(['rollback', '--local', hubDir(), '--group', 'g', '--authorization', authFile, '--json']);
    expect(viaFile.code, viaFile.stderr).toBe(0);
    expect((await finish((JSON.parse(viaFile.stdout) as { jobId: string }).jobId)).status).toBe('SUCCEEDED');

    // Forward to 2 again, then back in one step with the key: `rollback --key` signs one scoped to the group.
    expect((await rollout('2', { group: 'g' })).status).toBe('SUCCEEDED');
    const r = await runCliCaptured(['rollback', '--local', hubDir(), '--group', 'g', '--key', keyFile(), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { jobId, to } = JSON.parse(r.stdout) as { jobId: string; to: { version: string } };
    expect(to.version).toBe('1');
    const doc = JSON.parse((await createIotClient(profile).send(new GetJobDocumentCommand({ jobId }))).document!) as { rollbackAuthorization?: { authorization: string } };
    expect(JSON.parse(doc.rollbackAuthorization!.authorization)).toMatchObject({ format: 'fleetlm/rollback-authorization@2', modelId: 'tiny', version: '1', scope: { things: [], thingGroups: ['g'] } });
    expect((await finish(jobId)).status).toBe('SUCCEEDED');
  }, 180_000);
});
