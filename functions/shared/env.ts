// The environment a handler runs in: bucket, region and optional endpoint overrides. On AWS only
// ARTIFACTS_BUCKET is set; tests point the same SDK clients at the local S3 server and local hub.
import { z } from 'zod';
import { S3Client } from '@aws-sdk/client-s3';
import { IoTClient } from '@aws-sdk/client-iot';
import { KMSClient } from '@aws-sdk/client-kms';
import { parseWith } from '../../common/validate.ts';
import type { FleetProfile } from '../../fleet/profile.ts';

const HandlerEnvSchema = z.object({
  ARTIFACTS_BUCKET: z.string().min(3).max(63),
  AWS_REGION: z.string().min(1).default('us-east-1'),
  /** Local S3-protocol server (tests, local mode); path-style addressing is used with it. */
  FLEETLM_S3_ENDPOINT: z.string().url().optional(),
  /** Local hub's IoT control plane. */
  FLEETLM_IOT_ENDPOINT: z.string().url().optional(),
  FLEETLM_KMS_ENDPOINT: z.string().url().optional(),
  MANIFEST_KEY_ARN: z.string().min(1).optional(),
  PRESIGN_ROLE_ARN: z.string().min(1).optional(),
  /** JSON map deviceClass -> thing group name. */
  THING_GROUPS: z.string().optional(),
  /** JSON array of default budgets (device classes) for the plan step. */
  DEFAULT_BUDGETS: z.string().optional(),
  /** JSON of the rollout policy (fleet/rollout-policy.ts), from the deployment's `fleetlm:rollout` context. */
  ROLLOUT_POLICY: z.string().optional(),
  FLEETLM_TMP: z.string().default('/tmp'),
  /** The quality gate's limit (fraction); publish records it in quality.json and refuses a bundle over it. */
  MAX_QUALITY_DROP: z.coerce.number().nonnegative().optional(),
});
export type HandlerEnv = z.output<typeof HandlerEnvSchema>;

/** Reads and validates the handler environment. */
export function handlerEnv(env: NodeJS.ProcessEnv = process.env): HandlerEnv {
  return parseWith(HandlerEnvSchema, env, 'Lambda environment');
}

function credentials(env: NodeJS.ProcessEnv) {
  // Local servers accept any key; on AWS the Lambda role's credentials come from the default chain.
  return env.FLEETLM_LOCAL_ACCESS_KEY_ID && env.FLEETLM_LOCAL_SECRET_ACCESS_KEY
    ? { credentials: { accessKeyId: env.FLEETLM_LOCAL_ACCESS_KEY_ID, secretAccessKey: env.FLEETLM_LOCAL_SECRET_ACCESS_KEY } }
    : {};
}

/** S3 client for the artifacts bucket. */
export function s3Client(e: HandlerEnv, env: NodeJS.ProcessEnv = process.env): S3Client {
  return new S3Client({
    region: e.AWS_REGION,
    ...credentials(env),
    ...(e.FLEETLM_S3_ENDPOINT ? { endpoint: e.FLEETLM_S3_ENDPOINT, forcePathStyle: true } : {}),
  });
}

/** IoT control-plane client. */
export function iotClient(e: HandlerEnv, env: NodeJS.ProcessEnv = process.env): IoTClient {
  return new IoTClient({ region: e.AWS_REGION, ...credentials(env), ...(e.FLEETLM_IOT_ENDPOINT ? { endpoint: e.FLEETLM_IOT_ENDPOINT } : {}) });
}

/** KMS client. */
export function kmsClient(e: HandlerEnv, env: NodeJS.ProcessEnv = process.env): KMSClient {
  return new KMSClient({ region: e.AWS_REGION, ...credentials(env), ...(e.FLEETLM_KMS_ENDPOINT ? { endpoint: e.FLEETLM_KMS_ENDPOINT } : {}) });
}

/** The fleet/ profile the operator modules expect, built from the handler environment. */
export function fleetProfile(e: HandlerEnv, env: NodeJS.ProcessEnv = process.env): FleetProfile {
  const local = Boolean(e.FLEETLM_S3_ENDPOINT || e.FLEETLM_IOT_ENDPOINT);
  const creds = credentials(env);
  return {
    kind: local ? 'local' : 'aws',
    region: e.AWS_REGION,
    ...(creds.credentials ? { credentials: creds.credentials } : {}),
    iotEndpoint: e.FLEETLM_IOT_ENDPOINT,
    s3: { endpoint: e.FLEETLM_S3_ENDPOINT, bucket: e.ARTIFACTS_BUCKET, forcePathStyle: Boolean(e.FLEETLM_S3_ENDPOINT) },
    presignRoleArn: e.PRESIGN_ROLE_ARN ?? '',
    kmsKeyId: e.MANIFEST_KEY_ARN,
    telemetry: { kind: 'none' },
    source: 'Lambda environment',
  };
}
