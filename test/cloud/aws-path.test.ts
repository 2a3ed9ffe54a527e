// The AWS path against an independent emulation of the AWS APIs (moto 5 in server mode, started here on a free
// loopback port): the operator CLI in AWS mode, configured only through AWS's own conventions (AWS_ENDPOINT_URL,
// AWS_REGION, credentials from the environment) and the profile file, and the Lambda handlers. Where moto lacks
// an API, each test says so and names the local-hub test that covers that path instead.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreatePolicyCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  AddThingToThingGroupCommand,
  DescribeJobCommand,
  GetJobDocumentCommand,
  IoTClient,
  ListCertificatesCommand,
  ListThingPrincipalsCommand,
  ListThingsInThingGroupCommand,
} from '@aws-sdk/client-iot';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { CreateKeyCommand, GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateTableCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { CloudFormationCustomResourceCreateEvent } from 'aws-lambda';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { pointAwsAtMoto, startMoto, type MotoServer } from './moto-server.ts';
import { TINY_REQUEST } from '../functions/fixture.ts';
import { verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import { parseManifestBytes, parseManifestSignature } from '../../contracts/manifest.ts';
import { LocalKeySigner } from '../../contracts/manifest-signing.ts';
import { publishBundle } from '../../fleet/publisher.ts';
import { createS3Client, resolveProfile } from '../../fleet/profile.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';

const REGION = 'us-east-1';
const BUCKET = 'fleetlm-artifacts-moto';
const GROUP = 'fleetlm-rpi5';
const ROLE = 'arn:aws:iam::123456789012:role/fleetlm-presign';
const TABLE = 'fleetlm-telemetry';

let moto: MotoServer;
let dir: string;
let profileFile: string;
let noBucketProfile: string;
let kmsKeyArn: string;
const savedEnv = { ...process.env };
let iot: IoTClient;
let s3: S3Client;
let kms: KMSClient;

async function cli(...args: string[]) {
  return runCliCaptured(args);
}

function bodyText(b: { Body?: { transformToString(): Promise<string> } }): Promise<string> {
  return b.Body!.transformToString();
}

async function object(key: string): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** A bundle directory with a real tiny model (publish checks that it runs); seeds give different bytes. */
async function modelDir(name: string, seed: number): Promise<string> {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  await writeTinyModel(d, { seed });
  return d;
}

function telemetry(thingName: string, seq: number) {
  return {
    schema: 'fleetlm/telemetry@1',
    thingName,
    timestamp: Date.now() - 60_000 + seq,
    seq,
    event: 'periodic',
    model: { modelId: 'tiny', version: '1.0.0' },
    inference: { requests: 3, firstTokenMs: { p50: 40, p95: 80 }, tokensPerSecond: { p50: 12, p95: 15 } },
    system: { rssBytes: 200 * 2 ** 20, cpuLoad1m: 0.5, temperatureC: null, powerW: null, energyJ: 10 + seq, energyEstimated: true },
    dropped: 0,
  };
}

beforeAll(async () => {
  moto = await startMoto();
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-moto-'));
  // AWS's conventions only: the SDK reads these itself, the CLI records them for path-style S3 and placeholders.
  pointAwsAtMoto(moto, REGION);
  const common = { region: REGION, endpoint: moto.endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } };
  iot = new IoTClient(common);
  s3 = new S3Client({ ...common, forcePathStyle: true });
  kms = new KMSClient(common);
  const ddb = new DynamoDBClient(common);
  // What the CDK stacks would have created in the account.
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await iot.send(new CreateThingGroupCommand({ thingGroupName: GROUP }));
  for (const t of ['pi-1', 'pi-2', 'pi-3']) {
    await iot.send(new CreateThingCommand({ thingName: t }));
    await iot.send(new AddThingToThingGroupCommand({ thingName: t, thingGroupName: GROUP }));
  }
  await iot.send(
    new CreatePolicyCommand({
      policyName: 'fleetlm-device',
      policyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'iot:Connect', Resource: '*' }] }),
    }),
  );
  kmsKeyArn = (await kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.Arn!;
  await ddb.send(
    new CreateTableCommand({
      TableName: TABLE,
      KeySchema: [{ AttributeName: 'thingName', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'thingName', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  for (const [i, t] of ['pi-1', 'pi-2'].entries()) {
    await ddb.send(new PutItemCommand({ TableName: TABLE, Item: { thingName: { S: t }, payload: { S: JSON.stringify(telemetry(t, i + 1)) } } }));
  }
  profileFile = path.join(dir, 'profile.json');
  writeFileSync(profileFile, JSON.stringify({ bucket: BUCKET, presignRoleArn: ROLE, telemetryTable: TABLE }));
  noBucketProfile = path.join(dir, 'profile-no-bucket.json');
  writeFileSync(noBucketProfile, JSON.stringify({ telemetryTable: TABLE }));
  process.env.FLEETLM_PROFILE = profileFile;
  expect((await cli('keygen', '--out-dir', path.join(dir, 'keys'))).code).toBe(0);
}, 60_000);

afterAll(async () => {
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('publish against moto S3 (and KMS)', () => {
  it('publishes with a local key: every object lands under models/{id}/{version}/ and the manifest verifies against the bytes', async () => {
    const r = await cli('publish', '--model-dir', await modelDir('m1', 1), '--model-id', 'tiny', '--version', '1.0.0', '--key', path.join(dir, 'keys', 'fleet-signing-key.pem'), '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const manifestBytes = await object('models/tiny/1.0.0/manifest.json');
    const sig = parseManifestSignature((await object('models/tiny/1.0.0/manifest.sig.json')).toString());
    expect(verifyManifestBytes(manifestBytes, sig, readFileSync(path.join(dir, 'keys', 'fleet-public-key.pem'), 'utf8'))).toBe(true);
    const model = await object('models/tiny/1.0.0/model.onnx');
    expect(createHash('sha256').update(model).digest('hex')).toBe(parseManifestBytes(manifestBytes).files[0]!.sha256);
  });

  it('refuses to publish a version twice and leaves the published bytes untouched', async () => {
    const before = await object('models/tiny/1.0.0/model.onnx');
    const r = await cli('publish', '--model-dir', await modelDir('m1-other', 9), '--model-id', 'tiny', '--version', '1.0.0', '--key', path.join(dir, 'keys', 'fleet-signing-key.pem'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already published.*immutable/);
    expect((await object('models/tiny/1.0.0/model.onnx')).equals(before)).toBe(true);
  });

  it('two concurrent publishers of one version: exactly one wins and its manifest verifies against the bytes (moto honours If-None-Match on PutObject)', async () => {
    const profile = resolveProfile({});
    const key = readFileSync(path.join(dir, 'keys', 'fleet-signing-key.pem'), 'utf8');
    const client = createS3Client(profile);
    // Several files per bundle so the two uploads interleave object by object.
    const dirs = [await modelDir('race-a', 3), await modelDir('race-b', 4)];
    for (const [i, d] of dirs.entries()) for (const n of ['a.bin', 'b.bin', 'c.bin']) writeFileSync(path.join(d, n), Buffer.alloc(2048, 10 + i));
    const results = await Promise.allSettled(
      dirs.map((d) => publishBundle({ s3: client, bucket: BUCKET, signer: new LocalKeySigner(key), modelDir: d, modelId: 'race', version: '1' })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(String(loser.reason)).toMatch(/already (published|being published)/);
    const manifest = parseManifestBytes(await object('models/race/1/manifest.json'));
    for (const f of manifest.files) {
      expect(createHash('sha256').update(await object(`models/race/1/${f.name}`)).digest('hex'), f.name).toBe(f.sha256);
    }
    const sig = parseManifestSignature((await object('models/race/1/manifest.sig.json')).toString());
    expect(verifyManifestBytes(await object('models/race/1/manifest.json'), sig, readFileSync(path.join(dir, 'keys', 'fleet-public-key.pem'), 'utf8'))).toBe(true);
  });

  it('uploads a file above the threshold in parts, reporting progress per part, and completes it only if the key is still free', async () => {
    const d = await modelDir('big', 5);
    const big = Buffer.alloc(11 * 2 ** 20 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    writeFileSync(path.join(d, 'model.onnx.data'), big);
    const progress: [number, string][] = [];
    const key = readFileSync(path.join(dir, 'keys', 'fleet-signing-key.pem'), 'utf8');
    const client = createS3Client(resolveProfile({}));
    const r = await publishBundle({
      s3: client, bucket: BUCKET, signer: new LocalKeySigner(key), modelDir: d, modelId: 'big', version: '1',
      multipartThresholdBytes: 6 * 2 ** 20, partSizeBytes: 5 * 2 ** 20, onProgress: (done, _total, file) => progress.push([done, file]),
    });
    const dataParts = progress.filter(([, f]) => f === 'model.onnx.data').map(([n]) => n);
    expect(dataParts).toHaveLength(3);
    expect(dataParts.at(-1)! - dataParts[0]!).toBe(big.length - 5 * 2 ** 20);
    expect(progress.at(-1)![0]).toBe(r.totalBytes);
    expect((await object('models/big/1/model.onnx.data')).equals(big)).toBe(true);
    // The same upload again finds the key taken when the parts are joined, and writes nothing.
    const { uploadFileIfAbsent } = await import('../../fleet/object-upload.ts');
    const again = await uploadFileIfAbsent(
      client,
      { bucket: BUCKET, key: 'models/big/1/model.onnx.data', file: path.join(d, 'model.onnx'), size: statSync(path.join(d, 'model.onnx')).size, contentType: 'application/octet-stream' },
      { multipartThresholdBytes: 1 },
    );
    expect(again).toBe(false);
    expect((await object('models/big/1/model.onnx.data')).equals(big)).toBe(true);
  });

  it('publishes with a KMS key: one Sign call with the 32-byte digest; moto 5.2 does not implement MessageType DIGEST (it signs the digest as a RAW message, hashing it again), so the signature is checked in that form here; DIGEST semantics are covered against the local KMS-protocol server in test/fleet/kms-signer.test.ts', async () => {
    const r = await cli('publish', '--model-dir', await modelDir('m2', 2), '--model-id', 'tiny', '--version', '2.0.0', '--kms-key', kmsKeyArn, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const der = (await kms.send(new GetPublicKeyCommand({ KeyId: kmsKeyArn }))).PublicKey!;
    const key = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
    const pem = key.export({ type: 'spki', format: 'pem' }).toString();
    const manifest = await object('models/tiny/2.0.0/manifest.json');
    const sig = parseManifestSignature((await object('models/tiny/2.0.0/manifest.sig.json')).toString());
    expect(sig.keyId).toBe(kmsKeyArn);
    const signature = Buffer.from(sig.signature, 'base64');
    const digest = createHash('sha256').update(manifest).digest();
    // moto's RAW treatment of the digest: sha256(sha256(manifest)). If moto implements DIGEST, the second line flips.
    expect(verify('sha256', digest, { key, dsaEncoding: 'der' }, signature)).toBe(true);
    expect(verifyManifestBytes(manifest, sig, pem)).toBe(false);
  });

  it('kms-public-key: moto 5.2 GetPublicKey omits KeySpec (it returns only the deprecated CustomerMasterKeySpec), so the export refuses here; the export path is covered against the local KMS-protocol server in test/fleet/kms-signer.test.ts', async () => {
    const raw = await kms.send(new GetPublicKeyCommand({ KeyId: kmsKeyArn }));
    // If moto starts returning KeySpec this fails: then assert the export succeeds here instead.
    expect(raw.KeySpec).toBeUndefined();
    const r = await cli('kms-public-key', '--kms-key', kmsKeyArn, '--out', path.join(dir, 'kms.pem'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must be ECC_NIST_P256.*\?/);
  });
});

describe('rollout, status, cancel and rollback against moto IoT', () => {
  let jobId: string;
  it('rollout sends exactly the numbers the operator typed (7% abort threshold is 7, not 7.000000000000001) and the v2 presigned placeholder', async () => {
    const r = await cli('rollout', '--model', 'tiny', '--version', '1.0.0', '--group', GROUP, '--abort-threshold', '7%', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    jobId = JSON.parse(r.stdout).jobId;
    const job = (await iot.send(new DescribeJobCommand({ jobId }))).job!;
    // moto echoes abortConfig back verbatim (it does not itself enforce AWS's two-decimal rule).
    expect(job.abortConfig!.criteriaList![0]!.thresholdPercentage).toBe(7);
    expect(job.targets).toEqual([`arn:aws:iot:${REGION}:123456789012:thinggroup/${GROUP}`]);
    const doc = JSON.parse((await iot.send(new GetJobDocumentCommand({ jobId }))).document!);
    expect(doc.manifest.url).toBe(`\${aws:iot:s3-presigned-url-v2:${moto.endpoint}/${BUCKET}/models/tiny/1.0.0/manifest.json}`);
  });

  it('status and cancel need no artifact bucket', async () => {
    const st = await cli('status', jobId, '--profile', noBucketProfile, '--json');
    expect(st.stderr).toBe('');
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ jobId });
    const c = await cli('cancel', jobId, '--profile', noBucketProfile, '--json');
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout).status).toBe('CANCELED');
  });

  it('rollback refuses when no earlier version succeeded on the group; moto has no IoT Jobs data plane (devices cannot report SUCCEEDED), so the rollback that deploys is covered with agents on the local hub in test/e2e/demo.test.ts', async () => {
    const r = await cli('rollback', '--group', GROUP);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no earlier version succeeded on group fleetlm-rpi5: history is tiny@1\.0\.0:CANCELED/);
  });

  it('rejects rollout numbers outside the CreateJob reference ranges before calling AWS', async () => {
    const r = await cli('rollout', '--model', 'tiny', '--version', '1.0.0', '--group', GROUP, '--abort-threshold', '7.125%');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/two decimals/);
  });
});

describe('devices and telemetry against moto IoT and DynamoDB', () => {
  it('devices lists the group with each device\'s latest telemetry, without an artifact bucket', async () => {
    const r = await cli('devices', '--group', GROUP, '--profile', noBucketProfile, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = (JSON.parse(r.stdout) as { devices: { thingName: string; model: string | null }[] }).devices;
    expect(rows.map((x) => [x.thingName, x.model])).toEqual([
      ['pi-1', 'tiny@1.0.0'],
      ['pi-2', 'tiny@1.0.0'],
      ['pi-3', null],
    ]);
    // Connectivity through SearchIndex (moto's fleet index reports every thing as connected).
    const parsed = JSON.parse(r.stdout) as { indexed: boolean; devices: { online: boolean | null; groups: string[] }[] };
    expect(parsed.indexed).toBe(true);
    expect(parsed.devices.map((d) => [d.online, d.groups])).toEqual([
      [true, [GROUP]],
      [true, [GROUP]],
      [true, [GROUP]],
    ]);
  });

  it('telemetry summarises the table per device and per version', async () => {
    const r = await cli('telemetry', '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.messages).toBe(2);
    expect(s.byVersion.map((v: { key: string; devices: number }) => [v.key, v.devices])).toEqual([['tiny@1.0.0', 2]]);
  });
});

describe('device register against moto IoT', () => {
  async function activeCerts(): Promise<string[]> {
    const out = await iot.send(new ListCertificatesCommand({}));
    return (out.certificates ?? []).filter((c) => c.status === 'ACTIVE').map((c) => c.certificateArn!);
  }

  it('creates thing, certificate, policy and principal attachments and a TLS agent config; a second run reuses them', async () => {
    const out = path.join(dir, 'dev', 'pi-9', 'agent.json');
    const pub = path.join(dir, 'keys', 'fleet-public-key.pem');
    const r = await cli('device', 'register', '--thing', 'pi-9', '--group', GROUP, '--out', out, '--fleet-public-key', pub, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const first = JSON.parse(r.stdout);
    expect(first.mqtt).toMatchObject({ port: 8883, tls: true });
    expect((await iot.send(new ListThingPrincipalsCommand({ thingName: 'pi-9' }))).principals).toEqual([first.certificateArn]);
    const key = readFileSync(first.files.privateKey, 'utf8');
    const again = await cli('device', 'register', '--thing', 'pi-9', '--group', GROUP, '--out', out, '--fleet-public-key', pub, '--json');
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).certificateArn).toBe(first.certificateArn);
    expect(readFileSync(first.files.privateKey, 'utf8')).toBe(key);
    expect((await iot.send(new ListThingPrincipalsCommand({ thingName: 'pi-9' }))).principals).toEqual([first.certificateArn]);
  });

  it('a run that fails half-way (policy missing) deactivates and deletes the certificate it created and leaves no key behind', async () => {
    const before = await activeCerts();
    const out = path.join(dir, 'dev', 'pi-10', 'agent.json');
    const r = await cli('device', 'register', '--thing', 'pi-10', '--out', out, '--policy', 'no-such-policy', '--fleet-public-key', path.join(dir, 'keys', 'fleet-public-key.pem'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/AttachPolicy no-such-policy/);
    expect(await activeCerts()).toEqual(before);
    expect((await iot.send(new ListThingPrincipalsCommand({ thingName: 'pi-10' }))).principals ?? []).toEqual([]);
    expect(existsSync(path.join(dir, 'dev', 'pi-10', 'pi-10.private.key'))).toBe(false);
    expect(existsSync(out)).toBe(false);
  });

  it('a run that fails half-way leaves the thing out of its group (a group rollout would wait on it forever); the run that succeeds adds it', async () => {
    const group = 'fleetlm-halfway';
    const members = async () => {
      try {
        return (await iot.send(new ListThingsInThingGroupCommand({ thingGroupName: group }))).things ?? [];
      } catch {
        return []; // the group does not exist yet
      }
    };
    const out = path.join(dir, 'dev', 'pi-11', 'agent.json');
    const pub = path.join(dir, 'keys', 'fleet-public-key.pem');
    const failed = await cli('device', 'register', '--thing', 'pi-11', '--group', group, '--out', out, '--policy', 'no-such-policy', '--fleet-public-key', pub);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/AttachPolicy no-such-policy/);
    expect(await members()).toEqual([]);
    const ok = await cli('device', 'register', '--thing', 'pi-11', '--group', group, '--out', out, '--fleet-public-key', pub);
    expect(ok.code).toBe(0);
    expect(await members()).toEqual(['pi-11']);
  });
});

describe('Lambda handlers against moto', () => {
  it('rollout handler creates the pipeline job against moto IoT; a retried step finds its job instead of making another', async () => {
    const { handler: rollout, pipelineJobId } = await import('../../functions/rollout.ts');
    const env = handlerEnv();
    const input = {
      request: { ...TINY_REQUEST, runId: 'moto-run-1', rollout: { enabled: true } },
      published: [{ deviceClass: 'rpi5', modelId: 'tiny', version: '1.0.0', prefix: 'models/tiny/1.0.0/', manifestSha256: 'a'.repeat(64), totalBytes: 1 }],
    };
    await withEnv(env, async () => {
      const out = await rollout(input);
      expect(out.jobs.map((j) => j.jobId)).toEqual([pipelineJobId('moto-run-1', 'rpi5')]);
      const job = (await iot.send(new DescribeJobCommand({ jobId: out.jobs[0]!.jobId }))).job!;
      expect(job.description).toBe(`fleetlm deploy tiny@1.0.0 to group ${GROUP}`);
      // A retried step derives the same job id. moto answers a second CreateJob of an existing id with success
      // (AWS answers ResourceAlreadyExistsException, which the handler tolerates: see test/functions/steps.test.ts).
      expect((await rollout(input)).jobs.map((j) => j.jobId)).toEqual(out.jobs.map((j) => j.jobId));
    });
  });

  it('public-key custom resource: moto\'s GetPublicKey lacks KeySpec, so it refuses here; covered against the local KMS-protocol server in test/functions/steps.test.ts', async () => {
    const { handler: publicKey } = await import('../../functions/public-key.ts');
    const event = { RequestType: 'Create', ResourceProperties: { KeyArn: kmsKeyArn, ServiceToken: 'x' } } as unknown as CloudFormationCustomResourceCreateEvent;
    await withEnv(handlerEnv(), async () => {
      await expect(publicKey(event)).rejects.toThrow(/must be ECC_NIST_P256/);
    });
  });
});

function handlerEnv(): Record<string, string> {
  return {
    ARTIFACTS_BUCKET: BUCKET,
    AWS_REGION: REGION,
    FLEETLM_S3_ENDPOINT: moto.endpoint,
    FLEETLM_IOT_ENDPOINT: moto.endpoint,
    FLEETLM_KMS_ENDPOINT: moto.endpoint,
    FLEETLM_LOCAL_ACCESS_KEY_ID: 'testing',
    FLEETLM_LOCAL_SECRET_ACCESS_KEY: 'testing',
    MANIFEST_KEY_ARN: kmsKeyArn,
    PRESIGN_ROLE_ARN: ROLE,
    THING_GROUPS: JSON.stringify({ rpi5: GROUP }),
    FLEETLM_TMP: path.join(dir, 'fn-tmp'),
    FLEETLM_QUIET_HANDLERS: '1',
  };
}

async function withEnv(env: Record<string, string>, fn: () => Promise<void>): Promise<void> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    await fn();
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}
