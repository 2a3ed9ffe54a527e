// `fleetlm approve` and the pipeline's approval step against moto 5 in server mode: the approval Lambda
// stores its task token with the quality figures in S3, the CLI (AWS mode, configured only through AWS's
// conventions) lists it, approves or rejects it, and records the decision once.
// Moto's Step Functions accepts SendTaskSuccess/SendTaskFailure for any token but does nothing with it (its
// send_task_success is a no-op: no execution waits on a token there), so what reaches Step Functions is
// checked in moto's request recording (/moto-api/recorder); that the answer then moves the run on is covered
// by test/functions/pipeline-run.test.ts, which runs the synthesized definition's approval state.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { pointAwsAtMoto, startMoto, type MotoServer } from './moto-server.ts';
import { TINY_REQUEST } from '../functions/fixture.ts';
import { approvalDecisionKey } from '../../fleet/approval.ts';

const REGION = 'us-east-1';
const BUCKET = 'fleetlm-approvals-moto';
const ARN = (name: string) => `arn:aws:states:${REGION}:123456789012:execution:fleetlm-pipeline:${name}`;
let moto: MotoServer;
let dir: string;
let s3: S3Client;
const savedEnv = { ...process.env };

const published = [
  {
    deviceClass: 'rpi5',
    modelId: 'moby',
    version: '2.0.0-rpi5',
    prefix: 'models/moby/2.0.0-rpi5/',
    manifestSha256: 'c'.repeat(64),
    totalBytes: 4_400_000,
    quality: { tokens: 1180, baselinePerplexity: 352.9, perplexity: 358.8, qualityDrop: 0.0167, parameters: 4_240_896, embeddingCompressionRatio: 2.01 },
  },
];

/** Runs the approval Lambda as Step Functions would invoke it for `name`, with `token`. */
async function requestApproval(name: string, token: string): Promise<void> {
  const { handler } = await import('../../functions/approval.ts');
  const env = {
    ARTIFACTS_BUCKET: BUCKET,
    FLEETLM_S3_ENDPOINT: moto.endpoint,
    FLEETLM_LOCAL_ACCESS_KEY_ID: 'testing',
    FLEETLM_LOCAL_SECRET_ACCESS_KEY: 'testing',
    FLEETLM_QUIET_HANDLERS: '1',
  };
  Object.assign(process.env, env);
  await handler({ taskToken: token, executionArn: ARN(name), request: { ...TINY_REQUEST, model: { kind: 'checkpoint', prefix: 'inputs/moby/' }, runId: name }, published });
}

/** Step Functions calls moto recorded since the last reset, as [operation, body]. */
async function sfnCalls(): Promise<Array<[string, Record<string, unknown>]>> {
  const text = await (await fetch(`${moto.endpoint}/moto-api/recorder/download-recording`)).text();
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { headers?: Record<string, string>; body?: string; body_encoded?: boolean })
    .map((r) => ({ ...r, body: r.body_encoded && r.body ? Buffer.from(r.body, 'base64').toString('utf8') : r.body }))
    .filter((r) => (r.headers?.['X-Amz-Target'] ?? r.headers?.['x-amz-target'] ?? '').startsWith('AWSStepFunctions.'))
    .map((r) => [(r.headers!['X-Amz-Target'] ?? r.headers!['x-amz-target'])!.slice('AWSStepFunctions.'.length), JSON.parse(r.body ?? '{}') as Record<string, unknown>]);
}

async function cli(...args: string[]) {
  return runCliCaptured([...args, '--bucket', BUCKET]);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-approve-moto-'));
  // moto writes its request recording here (not into the working directory).
  process.env.MOTO_RECORDER_FILEPATH = path.join(dir, 'moto-recording');
  moto = await startMoto();
  pointAwsAtMoto(moto, REGION);
  s3 = new S3Client({ region: REGION, endpoint: moto.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await fetch(`${moto.endpoint}/moto-api/recorder/start-recording`, { method: 'POST' });
}, 60_000);

afterAll(async () => {
  process.env = savedEnv;
  await moto?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleetlm approve against moto', () => {
  it('lists a pending approval with its figures (never the token), approves it with SendTaskSuccess on the stored token, and refuses a second answer', async () => {
    await requestApproval('run-approve', 'token-approve-1');
    const listed = await cli('approve', '--list', '--json');
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    const { approvals } = JSON.parse(listed.stdout) as { approvals: Array<Record<string, unknown>> };
    expect(approvals).toHaveLength(1);
    expect(approvals[0]).toMatchObject({ executionName: 'run-approve', executionArn: ARN('run-approve'), decision: null, versions: published, model: { kind: 'checkpoint', prefix: 'inputs/moby/' } });
    expect(listed.stdout).not.toContain('token-approve-1');

    await fetch(`${moto.endpoint}/moto-api/recorder/reset-recording`, { method: 'POST' });
    await fetch(`${moto.endpoint}/moto-api/recorder/start-recording`, { method: 'POST' });
    const ok = await cli('approve', ARN('run-approve'));
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/moby@2\.0\.0-rpi5/);
    expect(ok.stderr).toMatch(/352\.9/);
    expect(ok.stdout).toMatch(/approved execution run-approve: the rollout goes ahead/);
    const calls = await sfnCalls();
    expect(calls.map(([op]) => op)).toEqual(['SendTaskSuccess']);
    expect(calls[0]![1]).toMatchObject({ taskToken: 'token-approve-1' });
    expect(JSON.parse(String(calls[0]![1].output))).toMatchObject({ approved: true });
    const decision = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: approvalDecisionKey('run-approve') }))).Body!.transformToString());
    expect(decision).toMatchObject({ executionName: 'run-approve', approved: true });

    const again = await cli('approve', 'run-approve', '--reject', '--reason', 'changed my mind');
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already approved at .*: an approval is answered once/);
  });

  it('rejects with a reason (SendTaskFailure RolloutRejected), and refuses a rejection without one or an unknown execution with exit 2', async () => {
    await requestApproval('run-reject', 'token-reject-1');
    const noReason = await cli('approve', 'run-reject', '--reject');
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/--reject needs --reason/);

    await fetch(`${moto.endpoint}/moto-api/recorder/reset-recording`, { method: 'POST' });
    await fetch(`${moto.endpoint}/moto-api/recorder/start-recording`, { method: 'POST' });
    const rejected = await cli('approve', 'run-reject', '--reject', '--reason', 'perplexity too high for kiosks', '--json');
    expect(rejected.code, rejected.stderr).toBe(0);
    expect(JSON.parse(rejected.stdout)).toMatchObject({ executionName: 'run-reject', approved: false, reason: 'perplexity too high for kiosks' });
    const calls = await sfnCalls();
    expect(calls).toEqual([['SendTaskFailure', { taskToken: 'token-reject-1', error: 'RolloutRejected', cause: 'perplexity too high for kiosks' }]]);

    const unknown = await cli('approve', 'run-nobody-started');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no approval request for execution run-nobody-started/);
    const local = await runCliCaptured(['approve', 'run-reject', '--local', path.join(dir, 'no-hub')]);
    expect(local.code).toBe(2);
  });
});
