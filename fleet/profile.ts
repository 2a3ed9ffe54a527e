// Where the operator's commands send their calls: the local hub (endpoints.json written by
// `fleetlm local up`) or an AWS account (standard SDK credential chain). Same clients, only endpoints change.
import { readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { IoTClient } from '@aws-sdk/client-iot';
import { S3Client } from '@aws-sdk/client-s3';
import { KMSClient } from '@aws-sdk/client-kms';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { parseJsonWith, parseWith } from '../common/validate.ts';
import { ValidationError } from '../common/errors.ts';

/** Default directory of the local hub (what `fleetlm local up` uses without --dir). */
export const DEFAULT_LOCAL_DIR = '.fleetlm/local';
/** Default profile file for AWS mode. */
export const DEFAULT_PROFILE_PATH = path.join(os.homedir(), '.fleetlm', 'profile.json');
/** Role ARN the local hub accepts for presigning (it does not check roles). */
export const LOCAL_PRESIGN_ROLE_ARN = 'arn:aws:iam::000000000000:role/fleetlm-local-presign';

/** The local hub's endpoints.json, as `startHub` returns it (contract with the hub helper). */
export const HubEndpointsSchema = z
  .object({
    region: z.string().min(1),
    mqtt: z.object({ host: z.string().min(1), port: z.number().int().positive(), url: z.string().min(1) }).passthrough(),
    iotEndpoint: z.string().url(),
    s3: z.object({ endpoint: z.string().url(), bucket: z.string().min(1), forcePathStyle: z.boolean().default(true) }).passthrough(),
    credentials: z.object({ accessKeyId: z.string().min(1), secretAccessKey: z.string().min(1) }).passthrough(),
    telemetryDir: z.string().min(1),
  })
  .passthrough();
export type HubEndpointsFile = z.output<typeof HubEndpointsSchema>;

/** ~/.fleetlm/profile.json for AWS mode. Every field may also come from a flag. */
export const AwsProfileFileSchema = z
  .object({
    region: z.string().min(1).optional(),
    bucket: z.string().min(3).max(63).optional(),
    /** Role IoT assumes to presign artifact URLs (presignedUrlConfig.roleArn). */
    presignRoleArn: z.string().startsWith('arn:').optional(),
    /** KMS asymmetric key (ECC_NIST_P256, SIGN_VERIFY) that signs manifests. */
    kmsKeyId: z.string().min(1).optional(),
    /** DynamoDB table with the latest telemetry per device (written by the IoT rule). */
    telemetryTable: z.string().min(3).optional(),
    /** Override for the IoT control-plane endpoint (rarely needed). */
    iotEndpoint: z.string().url().optional(),
  })
  .strict();
export type AwsProfileFile = z.output<typeof AwsProfileFileSchema>;

/** A resolved profile: everything a command needs to build its clients. */
export interface FleetProfile {
  kind: 'local' | 'aws';
  region: string;
  /** Explicit credentials (local hub); undefined means the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  iotEndpoint?: string;
  s3: { endpoint?: string; bucket: string; forcePathStyle: boolean };
  presignRoleArn: string;
  kmsKeyId?: string;
  telemetry: { kind: 'dir'; dir: string } | { kind: 'dynamodb'; table: string } | { kind: 'none' };
  /** The hub's MQTT endpoint (local mode only; the demo hands it to agents). */
  mqtt?: { host: string; port: number; url: string };
  /** Named profile in ~/.aws/config and ~/.aws/credentials (--aws-profile, AWS_PROFILE); undefined: the SDK's default chain. */
  awsProfile?: string;
  /** Where the profile came from, for --verbose and error messages. */
  source: string;
}

/** What a command needs from the profile; `status` and `cancel` only talk to IoT, so they need no bucket. */
export interface ProfileNeeds {
  bucket: boolean;
}

/** Flags the fleet commands accept for choosing and overriding a profile. */
export interface ProfileFlags {
  local?: string | boolean;
  profile?: string;
  region?: string;
  bucket?: string;
  roleArn?: string;
  kmsKey?: string;
  /** Named AWS profile (shared config and credentials files), as the AWS CLI's --profile. */
  awsProfile?: string;
}

/** Builds a local profile from the hub's endpoints (the demo passes them straight from startHub). */
export function localProfile(endpoints: unknown, source = 'local hub'): FleetProfile {
  const e = parseWith(HubEndpointsSchema, endpoints, 'local hub endpoints');
  return {
    kind: 'local',
    region: e.region,
    credentials: { accessKeyId: e.credentials.accessKeyId, secretAccessKey: e.credentials.secretAccessKey },
    iotEndpoint: e.iotEndpoint,
    s3: { endpoint: e.s3.endpoint, bucket: e.s3.bucket, forcePathStyle: true },
    presignRoleArn: LOCAL_PRESIGN_ROLE_ARN,
    telemetry: { kind: 'dir', dir: e.telemetryDir },
    mqtt: { host: e.mqtt.host, port: e.mqtt.port, url: e.mqtt.url },
    source,
  };
}

/** Reads `dir/endpoints.json` written by `fleetlm local up --dir dir`. */
export function readLocalProfile(dir: string): FleetProfile {
  const file = path.resolve(dir, 'endpoints.json');
  if (!existsSync(file)) {
    throw new ValidationError(`no local hub endpoints at ${file}: start one with \`fleetlm local up --dir ${dir}\` or pass --local DIR`);
  }
  return localProfile(JSON.parse(readFileSync(file, 'utf8')) as unknown, file);
}

/**
 * Resolves the profile: `--local [dir]` wins; otherwise AWS mode from the profile file
 * (`--profile PATH`, $FLEETLM_PROFILE, ~/.fleetlm/profile.json), then environment, then flags.
 * AWS's own conventions hold in AWS mode: `--aws-profile`/AWS_PROFILE pick the named profile for
 * credentials (and region, see loadProfile), AWS_REGION/AWS_DEFAULT_REGION the region, and
 * AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> the endpoints (the SDK reads those itself; they are
 * recorded here so S3 switches to path-style and presigned placeholders name the same endpoint).
 * https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
 */
export function resolveProfile(flags: ProfileFlags, env: NodeJS.ProcessEnv = process.env, needs: ProfileNeeds = { bucket: true }): FleetProfile {
  if (flags.local !== undefined && flags.local !== false) {
    return readLocalProfile(typeof flags.local === 'string' ? flags.local : DEFAULT_LOCAL_DIR);
  }
  if (!flags.profile && env.FLEETLM_LOCAL_DIR) return readLocalProfile(env.FLEETLM_LOCAL_DIR);
  const file = flags.profile ?? env.FLEETLM_PROFILE ?? DEFAULT_PROFILE_PATH;
  let fromFile: AwsProfileFile = {};
  if (existsSync(file)) {
    fromFile = parseJsonWith(AwsProfileFileSchema, readFileSync(file, 'utf8'), `profile file ${file}`);
  } else if (flags.profile) {
    throw new ValidationError(`profile file ${file} does not exist`);
  }
  const awsProfile = flags.awsProfile ?? (env.AWS_PROFILE || undefined);
  const region = flags.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? fromFile.region;
  const bucket = flags.bucket ?? env.FLEETLM_BUCKET ?? fromFile.bucket;
  const presignRoleArn = flags.roleArn ?? env.FLEETLM_PRESIGN_ROLE_ARN ?? fromFile.presignRoleArn;
  // With a named profile the region may live in ~/.aws/config; loadProfile asks the SDK for it.
  if (!region && !awsProfile) throw new ValidationError(`AWS mode needs a region: set AWS_REGION, "region" in ${file}, --region, or a named profile with a region (--aws-profile, AWS_PROFILE) (or use --local DIR for the local hub)`);
  if (!bucket && needs.bucket) throw new ValidationError(`AWS mode needs the artifact bucket: "bucket" in ${file}, FLEETLM_BUCKET or --bucket`);
  const table = env.FLEETLM_TELEMETRY_TABLE ?? fromFile.telemetryTable;
  const s3Endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const iotEndpoint = fromFile.iotEndpoint ?? env.AWS_ENDPOINT_URL_IOT ?? env.AWS_ENDPOINT_URL;
  return {
    kind: 'aws',
    region: region ?? '',
    iotEndpoint,
    // A custom S3 endpoint (an emulator, an S3-compatible store) rarely resolves virtual-hosted bucket names.
    s3: { ...(s3Endpoint ? { endpoint: s3Endpoint } : {}), bucket: bucket ?? '', forcePathStyle: Boolean(s3Endpoint) },
    presignRoleArn: presignRoleArn ?? '',
    kmsKeyId: flags.kmsKey ?? env.FLEETLM_KMS_KEY ?? fromFile.kmsKeyId,
    telemetry: table ? { kind: 'dynamodb', table } : { kind: 'none' },
    ...(awsProfile ? { awsProfile } : {}),
    source: existsSync(file) ? file : 'environment and flags',
  };
}

/**
 * resolveProfile, then the region from the named AWS profile's config when nothing else set one
 * (the SDK's own region chain, so ~/.aws/config is read exactly as the AWS CLI reads it).
 */
export async function loadProfile(flags: ProfileFlags, env: NodeJS.ProcessEnv = process.env, needs: ProfileNeeds = { bucket: true }): Promise<FleetProfile> {
  const profile = resolveProfile(flags, env, needs);
  if (profile.region) return profile;
  let region: string | undefined;
  try {
    region = await new IoTClient({ profile: profile.awsProfile }).config.region();
  } catch {
    region = undefined;
  }
  if (!region) {
    throw new ValidationError(`AWS mode needs a region: named profile ${profile.awsProfile} has none in the AWS config file; set region there, AWS_REGION, or --region`);
  }
  return { ...profile, region };
}

/** The artifact bucket, or a ValidationError naming where to set it (for commands resolved without one). */
export function requireBucket(profile: FleetProfile): string {
  if (!profile.s3.bucket) throw new ValidationError(`AWS mode needs the artifact bucket: "bucket" in ${profile.source}, FLEETLM_BUCKET or --bucket`);
  return profile.s3.bucket;
}

/** One SDK command as a client built here sends it: the service's client name, the command's name and its input. */
export interface SentCommand {
  client: string;
  command: string;
  input: Readonly<Record<string, unknown>>;
}
const observers = new Set<(sent: SentCommand) => void>();

/**
 * Calls `observer` with every command the clients built here send from now on (an SDK middleware in the initialize
 * step, so it sees each command once, before retries); returns the function that stops it. The IAM tests record
 * what each CLI command calls through this (test/cloud/operator-iam.test.ts).
 */
export function observeCommands(observer: (sent: SentCommand) => void): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

// Every SDK client has a middlewareStack whose `add` takes (middleware, options); the four clients differ only in
// their input/output unions, which this middleware never looks at.
interface AddableStack {
  add(middleware: (next: (args: { input: object }) => Promise<unknown>, context: { clientName?: string; commandName?: string }) => (args: { input: object }) => Promise<unknown>, options: { step: 'initialize'; name: string }): void;
}
function observed<C extends { middlewareStack: unknown }>(client: C): C {
  (client.middlewareStack as AddableStack).add(
    (next, context) => async (args) => {
      if (observers.size > 0) {
        const sent = { client: context.clientName ?? 'unknown', command: context.commandName ?? 'unknown', input: { ...(args.input as Record<string, unknown>) } };
        for (const o of observers) o(sent);
      }
      return next(args);
    },
    { step: 'initialize', name: 'fleetlmCommandObserver' },
  );
  return client;
}

function common(profile: FleetProfile) {
  return {
    region: profile.region,
    ...(profile.credentials ? { credentials: profile.credentials } : {}),
    ...(profile.awsProfile ? { profile: profile.awsProfile } : {}),
    maxAttempts: 3,
  };
}

/** IoT control-plane client (endpoint overridden for the local hub). */
export function createIotClient(profile: FleetProfile): IoTClient {
  return observed(new IoTClient({ ...common(profile), ...(profile.iotEndpoint ? { endpoint: profile.iotEndpoint } : {}) }));
}

/** S3 client (path-style against the local hub's S3 store, which takes the SDK's default checksummed uploads). */
export function createS3Client(profile: FleetProfile): S3Client {
  return observed(new S3Client({
    ...common(profile),
    ...(profile.s3.endpoint ? { endpoint: profile.s3.endpoint } : {}),
    forcePathStyle: profile.s3.forcePathStyle,
  }));
}

/** KMS client (AWS mode only). */
export function createKmsClient(profile: FleetProfile): KMSClient {
  return observed(new KMSClient(common(profile)));
}

/** DynamoDB client (AWS mode telemetry). */
export function createDynamoClient(profile: FleetProfile): DynamoDBClient {
  return observed(new DynamoDBClient(common(profile)));
}

/**
 * The URL of an object as an IoT Jobs presigned-URL placeholder expects it: the documented
 * `https://s3.REGION.amazonaws.com/BUCKET/KEY` on AWS, the path-style URL of the local store otherwise.
 * https://docs.aws.amazon.com/iot/latest/developerguide/create-manage-jobs.html#create-manage-jobs-presigned-URLs
 */
export function objectUrl(profile: FleetProfile, key: string): string {
  const encodedKey = key.split('/').map(encodeURIComponent).join('/');
  if (profile.s3.endpoint) return `${profile.s3.endpoint.replace(/\/$/, '')}/${profile.s3.bucket}/${encodedKey}`;
  return `https://s3.${profile.region}.amazonaws.com/${profile.s3.bucket}/${encodedKey}`;
}

/**
 * Wraps an object URL in the IoT Jobs presigned-URL placeholder, in the `s3-presigned-url-v2` form the
 * developer guide documents (path-style `https://s3.REGION.amazonaws.com/BUCKET/KEY`).
 */
export function presignedPlaceholder(profile: FleetProfile, key: string): string {
  return `\${aws:iot:s3-presigned-url-v2:${objectUrl(profile, key)}}`;
}

/** A short human description of the profile for --verbose. */
export function describeProfile(p: FleetProfile): Record<string, unknown> {
  return {
    kind: p.kind,
    source: p.source,
    region: p.region,
    awsProfile: p.awsProfile ?? '(SDK default chain)',
    iotEndpoint: p.iotEndpoint ?? '(AWS default)',
    s3: p.s3,
    presignRoleArn: p.presignRoleArn || '(unset)',
    kmsKeyId: p.kmsKeyId ?? '(unset)',
    telemetry: p.telemetry,
  };
}
