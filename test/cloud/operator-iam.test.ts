// The operator roles' policies against what the CLI really sends: each persona's commands run against moto (an
// independent emulation of the AWS APIs), an SDK middleware on the CLI's own clients records every command, each
// command becomes the IAM actions and resource ARNs the Service Authorization Reference requires for it, and the
// persona's synthesized managed policy must allow every one of them (nothing missing) and nothing else (no action
// that no command calls). Resources are matched with IAM's wildcard rules against this deployment's ARNs.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddThingToThingGroupCommand, CreatePolicyCommand, CreateThingCommand, CreateThingGroupCommand, IoTClient } from '@aws-sdk/client-iot';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateTableCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';
import { pointAwsAtMoto, startMoto, type MotoServer } from './moto-server.ts';
import { renderDeep, synthApp } from '../infra/synth.ts';
import { createS3Client, observeCommands, resolveProfile, type SentCommand } from '../../fleet/profile.ts';
import { publishBundle } from '../../fleet/publisher.ts';
import { uploadFileIfAbsent } from '../../fleet/object-upload.ts';
import { LocalKeySigner } from '../../contracts/manifest-signing.ts';
import { OPERATOR_PERSONAS, operatorRoleName, type OperatorPersona } from '../../infra/constructs/role-names.ts';
import { PERSONA_COMMANDS } from '../../infra/constructs/operator-roles.ts';
import { PUBLIC_KEY_OBJECT } from '../../functions/shared/constants.ts';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012'; // moto's default account
const BUCKET = 'fleetlm-artifacts-moto';
const GROUP = 'fleetlm-rpi5';
const PRESIGN_ROLE = `arn:aws:iam::${ACCOUNT}:role/fleetlm-jobs-presign`;
const TABLE = 'fleetlm-telemetry';
const TABLE_ARN = `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}`;

/** One IAM authorization a command needs: an action on a resource ARN. */
interface Need {
  action: string;
  resource: string;
}

const iot = (resource: string) => `arn:aws:iot:${REGION}:${ACCOUNT}:${resource}`;
const object = (i: Record<string, unknown>) => `arn:aws:s3:::${String(i.Bucket)}/${String(i.Key)}`;
const bucket = (i: Record<string, unknown>) => `arn:aws:s3:::${String(i.Bucket)}`;
const thing = (i: Record<string, unknown>) => iot(`thing/${String(i.thingName)}`);
const group = (i: Record<string, unknown>) => iot(`thinggroup/${String(i.thingGroupName)}`);
const job = (i: Record<string, unknown>) => iot(`job/${String(i.jobId)}`);
const cert = (i: Record<string, unknown>) => iot(`cert/${String(i.certificateId ?? String(i.target).split('/').pop())}`);
const on = (action: string, ...resources: string[]): Need[] => resources.map((resource) => ({ action, resource }));

/**
 * SDK command -> the IAM authorizations it needs, from the Service Authorization Reference
 * (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsiot.html, list_amazons3.html,
 * list_awskeymanagementservice.html, list_amazondynamodb.html). "*" where the action has no resource type.
 * S3 reads also need s3:ListBucket: without it a missing key answers 403, not 404, and the CLI tells
 * "not published" from "forbidden" by that (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
 */
const IAM_FOR: Readonly<Record<string, (i: Record<string, unknown>) => Need[]>> = {
  'S3Client:GetObjectCommand': (i) => [...on('s3:GetObject', object(i)), ...on('s3:ListBucket', bucket(i))],
  'S3Client:HeadObjectCommand': (i) => [...on('s3:GetObject', object(i)), ...on('s3:ListBucket', bucket(i))],
  'S3Client:PutObjectCommand': (i) => on('s3:PutObject', object(i)),
  'S3Client:DeleteObjectCommand': (i) => on('s3:DeleteObject', object(i)),
  'S3Client:ListObjectsV2Command': (i) => on('s3:ListBucket', bucket(i)),
  'S3Client:CreateMultipartUploadCommand': (i) => on('s3:PutObject', object(i)),
  'S3Client:UploadPartCommand': (i) => on('s3:PutObject', object(i)),
  'S3Client:CompleteMultipartUploadCommand': (i) => on('s3:PutObject', object(i)),
  'S3Client:AbortMultipartUploadCommand': (i) => on('s3:AbortMultipartUpload', object(i)),
  'KMSClient:SignCommand': (i) => on('kms:Sign', String(i.KeyId)),
  'KMSClient:GetPublicKeyCommand': (i) => on('kms:GetPublicKey', String(i.KeyId)),
  'DynamoDBClient:ScanCommand': (i) => on('dynamodb:Scan', `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${String(i.TableName)}`),
  'IoTClient:CreateJobCommand': (i) => [
    ...on('iot:CreateJob', job(i), ...(i.targets as string[])),
    ...((i.presignedUrlConfig as { roleArn?: string } | undefined)?.roleArn ? on('iam:PassRole', (i.presignedUrlConfig as { roleArn: string }).roleArn) : []),
  ],
  'IoTClient:CancelJobCommand': (i) => on('iot:CancelJob', job(i)),
  'IoTClient:DescribeJobCommand': (i) => on('iot:DescribeJob', job(i)),
  'IoTClient:ListJobExecutionsForJobCommand': (i) => on('iot:ListJobExecutionsForJob', job(i)),
  'IoTClient:DescribeJobExecutionCommand': (i) => on('iot:DescribeJobExecution', thing(i)),
  'IoTClient:ListJobExecutionsForThingCommand': (i) => on('iot:ListJobExecutionsForThing', thing(i)),
  'IoTClient:ListJobsCommand': () => on('iot:ListJobs', '*'),
  'IoTClient:DescribeThingCommand': (i) => on('iot:DescribeThing', thing(i)),
  'IoTClient:DescribeThingGroupCommand': (i) => on('iot:DescribeThingGroup', group(i)),
  'IoTClient:ListThingsInThingGroupCommand': (i) => on('iot:ListThingsInThingGroup', group(i)),
  'IoTClient:ListThingsCommand': () => on('iot:ListThings', '*'),
  'IoTClient:SearchIndexCommand': (i) => on('iot:SearchIndex', iot(`index/${String(i.indexName)}`)),
  'IoTClient:CreateThingCommand': (i) => on('iot:CreateThing', thing(i)),
  'IoTClient:CreateThingGroupCommand': (i) => on('iot:CreateThingGroup', group(i)),
  'IoTClient:AddThingToThingGroupCommand': (i) => on('iot:AddThingToThingGroup', thing(i), group(i)),
  'IoTClient:CreateKeysAndCertificateCommand': () => on('iot:CreateKeysAndCertificate', '*'),
  'IoTClient:CreateCertificateFromCsrCommand': () => on('iot:CreateCertificateFromCsr', '*'),
  'IoTClient:AttachPolicyCommand': (i) => on('iot:AttachPolicy', cert(i)),
  'IoTClient:DetachPolicyCommand': (i) => on('iot:DetachPolicy', cert(i)),
  'IoTClient:AttachThingPrincipalCommand': (i) => on('iot:AttachThingPrincipal', thing(i)),
  'IoTClient:DetachThingPrincipalCommand': (i) => on('iot:DetachThingPrincipal', thing(i)),
  'IoTClient:ListThingPrincipalsCommand': (i) => on('iot:ListThingPrincipals', thing(i)),
  'IoTClient:DescribeCertificateCommand': (i) => on('iot:DescribeCertificate', cert(i)),
  'IoTClient:UpdateCertificateCommand': (i) => on('iot:UpdateCertificate', cert(i)),
  'IoTClient:DeleteCertificateCommand': (i) => on('iot:DeleteCertificate', cert(i)),
  'IoTClient:DescribeEndpointCommand': () => on('iot:DescribeEndpoint', '*'),
};

function needsOf(sent: SentCommand): Need[] {
  const rule = IAM_FOR[`${sent.client}:${sent.command}`];
  if (!rule) throw new Error(`no IAM mapping for ${sent.client} ${sent.command}: add it from the Service Authorization Reference`);
  return rule(sent.input);
}

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
}

/** IAM's wildcard match: `*` any run of characters, `?` one character, case-sensitive. */
function wildcard(pattern: string, value: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(value);
}
const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]);
function allows(statements: Statement[], need: Need): boolean {
  return statements.some((s) => s.Effect === 'Allow' && list(s.Action).some((a) => wildcard(a, need.action)) && list(s.Resource).some((r) => wildcard(r, need.resource)));
}

let moto: MotoServer;
let dir: string;
let kmsKeyArn: string;
let policies: Record<OperatorPersona, Statement[]>;
const recorded = Object.fromEntries(OPERATOR_PERSONAS.map((p) => [p, [] as SentCommand[]])) as Record<OperatorPersona, SentCommand[]>;
const savedEnv = { ...process.env };

/** Runs `fn` with every SDK command the CLI's clients send recorded under `persona`. */
async function as<T>(persona: OperatorPersona, fn: () => Promise<T>): Promise<T> {
  const stop = observeCommands((sent) => recorded[persona].push(sent));
  try {
    return await fn();
  } finally {
    stop();
  }
}

async function cli(persona: OperatorPersona, ...args: string[]) {
  return as(persona, () => runCliCaptured(args));
}

/** A real tiny model (publish checks that a bundle loads and generates). */
async function tinyModelDir(name: string, seed: number): Promise<string> {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  await writeTinyModel(d, { seed });
  return d;
}

/** Stand-in bytes for the multipart upload path (published through the library with the bundle check skipped). */
function modelDir(name: string, fill: number, bytes = 4096): string {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'model.onnx'), Buffer.alloc(bytes, fill));
  return d;
}

/** The persona's managed policy from the synthesized operators stack, with this test's moto ARNs for the imports. */
function personaPolicies(): Record<OperatorPersona, Statement[]> {
  const s = synthApp();
  const all = Object.values(s.templates.operators.findResources('AWS::IAM::ManagedPolicy')).map(
    (p) => renderDeep((p as { Properties: unknown }).Properties) as { ManagedPolicyName: string; PolicyDocument: { Statement: Statement[] } },
  );
  const concrete = (v: string) =>
    v
      .replace('<import:fleetlm-artifacts-bucket-arn>', `arn:aws:s3:::${BUCKET}`)
      .replace('<import:fleetlm-manifest-signing-key-arn>', kmsKeyArn)
      .replace('<import:fleetlm-jobs-presign-role-arn>', PRESIGN_ROLE)
      .replace(/^<import:[^>]*DeviceState[^>]*>$/, TABLE_ARN)
      .replace('arn:<AWS::Partition>:', 'arn:aws:')
      .replace('<AWS::AccountId>', ACCOUNT);
  const out = {} as Record<OperatorPersona, Statement[]>;
  for (const persona of OPERATOR_PERSONAS) {
    const policy = all.find((p) => p.ManagedPolicyName === operatorRoleName({ prefix: 'fleetlm', region: REGION }, persona));
    if (!policy) throw new Error(`no managed policy for ${persona}`);
    out[persona] = policy.PolicyDocument.Statement.map((st) => ({ ...st, Resource: list(st.Resource).map(concrete) }));
  }
  return out;
}

beforeAll(async () => {
  moto = await startMoto();
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-operator-iam-'));
  pointAwsAtMoto(moto, REGION);
  const common = { region: REGION, endpoint: moto.endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } };
  const iotClient = new IoTClient(common);
  const s3 = new S3Client({ ...common, forcePathStyle: true });
  const ddb = new DynamoDBClient(common);
  // What the CDK stacks would have created in the account.
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await iotClient.send(new CreateThingGroupCommand({ thingGroupName: GROUP }));
  for (const t of ['pi-1', 'pi-2']) {
    await iotClient.send(new CreateThingCommand({ thingName: t }));
    await iotClient.send(new AddThingToThingGroupCommand({ thingName: t, thingGroupName: GROUP }));
  }
  await iotClient.send(
    new CreatePolicyCommand({ policyName: 'fleetlm-device', policyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'iot:Connect', Resource: '*' }] }) }),
  );
  kmsKeyArn = (await new KMSClient(common).send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.Arn!;
  await ddb.send(
    new CreateTableCommand({
      TableName: TABLE,
      KeySchema: [{ AttributeName: 'thingName', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'thingName', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  await ddb.send(new PutItemCommand({ TableName: TABLE, Item: { thingName: { S: 'pi-1' }, payload: { S: '{}' } } }));
  const profileFile = path.join(dir, 'profile.json');
  writeFileSync(profileFile, JSON.stringify({ bucket: BUCKET, presignRoleArn: PRESIGN_ROLE, telemetryTable: TABLE }));
  process.env.FLEETLM_PROFILE = profileFile;
  expect((await runCliCaptured(['keygen', '--out-dir', path.join(dir, 'keys')])).code).toBe(0);
  // The artifacts stack's custom resource writes the fleet public key here at deploy time.
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: PUBLIC_KEY_OBJECT, Body: readFileSync(path.join(dir, 'keys', 'fleet-public-key.pem')) }));
  policies = personaPolicies();
}, 180_000);

afterAll(async () => {
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }, what: string) => expect(r.code, `${what}: ${r.stderr}`).toBe(0);

describe('each persona\'s commands against moto', () => {
  it('publisher: publish (local key and KMS, single and multipart uploads), deprecate and undo, authorize-rollback, kms-public-key', async () => {
    const key = path.join(dir, 'keys', 'fleet-signing-key.pem');
    ok(await cli('publisher', 'publish', '--model-dir', await tinyModelDir('m1', 1), '--model-id', 'tiny', '--version', '1.0.0', '--key', key, '--json'), 'publish --key');
    ok(await cli('publisher', 'publish', '--model-dir', await tinyModelDir('m2', 2), '--model-id', 'tiny', '--version', '2.0.0', '--kms-key', kmsKeyArn, '--json'), 'publish --kms-key');
    // The CLI's own publish path with a small multipart threshold (the default needs a 100 MB file); then the
    // upload step of a publish that finds its file already written when it joins the parts, and aborts the upload.
    const signer = new LocalKeySigner(readFileSync(key, 'utf8'));
    const big = modelDir('big', 3, 6 * 2 ** 20 + 17);
    const s3 = createS3Client(resolveProfile({}));
    await as('publisher', async () => {
      await publishBundle({ s3, bucket: BUCKET, signer, modelDir: big, modelId: 'big', version: '1', multipartThresholdBytes: 5 * 2 ** 20, partSizeBytes: 5 * 2 ** 20, skipBundleChecks: true });
      const upload = { bucket: BUCKET, key: 'models/big/1/model.onnx', file: path.join(big, 'model.onnx'), size: 6 * 2 ** 20 + 17, contentType: 'application/octet-stream' };
      expect(await uploadFileIfAbsent(s3, upload, { multipartThresholdBytes: 1, partSizeBytes: 5 * 2 ** 20 })).toBe(false);
    });
    ok(await cli('publisher', 'deprecate', '--model', 'tiny', '--version', '2.0.0', '--reason', 'broken', '--json'), 'deprecate');
    ok(await cli('publisher', 'deprecate', '--model', 'tiny', '--version', '2.0.0', '--undo', '--json'), 'deprecate --undo');
    ok(await cli('publisher', 'authorize-rollback', '--model', 'tiny', '--version', '1.0.0', '--group', GROUP, '--kms-key', kmsKeyArn, '--out', path.join(dir, 'auth.json')), 'authorize-rollback --kms-key');
    // moto's GetPublicKey lacks KeySpec, so the export refuses after the call (test/cloud/aws-path.test.ts); the call is what counts here.
    await cli('publisher', 'kms-public-key', '--kms-key', kmsKeyArn, '--out', path.join(dir, 'kms.pem'));
    const commands = new Set(recorded.publisher.map((c) => c.command));
    for (const c of ['SignCommand', 'GetPublicKeyCommand', 'CreateMultipartUploadCommand', 'AbortMultipartUploadCommand', 'DeleteObjectCommand']) expect(commands, c).toContain(c);
  }, 120_000);

  it('rollout operator: rollout to a group and to a thing, status, cancel, rollback, devices, jobs', async () => {
    const r = await cli('rollout-operator', 'rollout', '--model', 'tiny', '--version', '1.0.0', '--group', GROUP, '--json');
    ok(r, 'rollout --group');
    const jobId = (JSON.parse(r.stdout) as { jobId: string }).jobId;
    ok(await cli('rollout-operator', 'rollout', '--model', 'tiny', '--version', '1.0.0', '--thing', 'pi-1', '--json'), 'rollout --thing');
    ok(await cli('rollout-operator', 'status', jobId, '--json'), 'status');
    ok(await cli('rollout-operator', 'cancel', jobId, '--json'), 'cancel');
    // moto has no Jobs data plane, so no version ever succeeded: rollback looks at the history and refuses.
    expect((await cli('rollout-operator', 'rollback', '--group', GROUP)).stderr).toMatch(/no earlier version succeeded/);
    expect((await cli('rollout-operator', 'rollback', '--group', GROUP, '--authorization', path.join(dir, 'auth.json'))).stderr).toMatch(/no earlier version succeeded/);
    ok(await cli('rollout-operator', 'devices', '--group', GROUP, '--json'), 'devices --group');
    ok(await cli('rollout-operator', 'devices', '--json'), 'devices');
    ok(await cli('rollout-operator', 'jobs', '--group', GROUP, '--json'), 'jobs --group');
    ok(await cli('rollout-operator', 'jobs', '--json'), 'jobs');
  }, 120_000);

  it('viewer: status, devices, telemetry, jobs, versions', async () => {
    const jobs = JSON.parse((await cli('viewer', 'jobs', '--json')).stdout) as { jobs: Array<{ jobId: string }> };
    ok(await cli('viewer', 'status', jobs.jobs[0]!.jobId, '--json'), 'status');
    ok(await cli('viewer', 'devices', '--group', GROUP, '--json'), 'devices --group');
    ok(await cli('viewer', 'devices', '--json'), 'devices');
    ok(await cli('viewer', 'telemetry', '--json'), 'telemetry');
    ok(await cli('viewer', 'jobs', '--group', GROUP, '--json'), 'jobs --group');
    ok(await cli('viewer', 'versions', '--json'), 'versions');
  }, 120_000);

  it('device registrar: register with a cloud-made key, again (reused), from a CSR, and a failed run that cleans up', async () => {
    const sha = createHash('sha256').update(readFileSync(path.join(dir, 'keys', 'fleet-public-key.pem'), 'utf8')).digest('hex');
    const register = (thingName: string, ...extra: string[]) =>
      cli('device-registrar', 'device', 'register', '--thing', thingName, '--group', GROUP, '--out', path.join(dir, 'dev', thingName, 'agent.json'), '--fleet-key-sha256', sha, '--json', ...extra);
    ok(await register('pi-9'), 'register');
    ok(await register('pi-9'), 'register again');
    const csrDir = path.join(dir, 'csr');
    mkdirSync(csrDir);
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=pi-11', '-keyout', path.join(csrDir, 'key.pem'), '-out', path.join(csrDir, 'pi-11.csr')], { stdio: 'ignore' });
    ok(await register('pi-11', '--csr', path.join(csrDir, 'pi-11.csr')), 'register --csr');
    const failed = await register('pi-10', '--policy', 'no-such-policy');
    expect(failed.stderr).toMatch(/AttachPolicy no-such-policy/);
    const commands = new Set(recorded['device-registrar'].map((c) => c.command));
    for (const c of ['CreateCertificateFromCsrCommand', 'DeleteCertificateCommand', 'DescribeCertificateCommand', 'GetObjectCommand']) expect(commands, c).toContain(c);
  }, 120_000);
});

describe('operator policies match what the commands send', () => {
  for (const persona of OPERATOR_PERSONAS) {
    it(`${persona} (${PERSONA_COMMANDS[persona].join(', ')}): every authorization allowed, no action that nothing calls`, () => {
      expect(recorded[persona].length, 'the commands above must have run').toBeGreaterThan(0);
      const needs = recorded[persona].flatMap(needsOf);
      const missing = [...new Set(needs.filter((n) => !allows(policies[persona], n)).map((n) => `${n.action} on ${n.resource}`))];
      expect(missing).toEqual([]);
      const granted = new Set(policies[persona].flatMap((s) => list(s.Action)));
      const called = new Set(needs.map((n) => n.action));
      expect([...granted].filter((a) => !called.has(a)).sort()).toEqual([]);
      // Wildcard actions would hide what a persona may do; "*" resources only where the action has no resource type.
      expect([...granted].filter((a) => a.includes('*'))).toEqual([]);
      const unscoped = policies[persona].filter((s) => list(s.Resource).includes('*')).flatMap((s) => list(s.Action));
      const noResourceType = new Set(Object.entries(IAM_FOR).flatMap(([, f]) => f({ targets: [] }).filter((n) => n.resource === '*').map((n) => n.action)));
      expect(unscoped.filter((a) => !noResourceType.has(a))).toEqual([]);
    });
  }

  it('scoping: the publisher cannot touch other prefixes or buckets, the viewer cannot create jobs, and no persona but the publisher may sign', () => {
    const otherBucket = { action: 's3:PutObject', resource: 'arn:aws:s3:::someone-elses-bucket/models/x' };
    expect(allows(policies.publisher, otherBucket)).toBe(false);
    expect(allows(policies.publisher, { action: 's3:PutObject', resource: `arn:aws:s3:::${BUCKET}/keys/manifest-signing.pub.pem` })).toBe(false);
    expect(allows(policies.viewer, { action: 'iot:CreateJob', resource: iot('job/x') })).toBe(false);
    expect(allows(policies['rollout-operator'], { action: 'iot:CreateJob', resource: iot('thinggroup/other-prod') })).toBe(false);
    expect(allows(policies['rollout-operator'], { action: 'iam:PassRole', resource: `arn:aws:iam::${ACCOUNT}:role/admin` })).toBe(false);
    for (const p of OPERATOR_PERSONAS) expect(allows(policies[p], { action: 'kms:Sign', resource: kmsKeyArn }), p).toBe(p === 'publisher');
  });
});
