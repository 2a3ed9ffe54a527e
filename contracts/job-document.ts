// The IoT Job document that deploys a model: schema `fleetlm/deploy-model@1`.
// URLs are usually `${aws:iot:s3-presigned-url:https://bucket.s3.region.amazonaws.com/key}`
// placeholders in the stored job; the device receives them already replaced by presigned URLs.
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';
import { SignedRollbackAuthorizationSchema } from './rollback-authorization.ts';
import { BundleFileNameSchema, ModelIdSchema, ModelVersionSchema, Sha256HexSchema } from './manifest.ts';

export const DEPLOY_MODEL_SCHEMA = 'fleetlm/deploy-model@1';

const UrlSchema = z.string().min(1).max(4096);

export const JobArtifactSchema = z
  .object({
    name: BundleFileNameSchema,
    url: UrlSchema,
    sha256: Sha256HexSchema,
    size: z.number().int().nonnegative(),
  })
  .strict();

export const HealthCheckSchema = z
  .object({
    prompt: z.string().min(1).max(2000).default('Hello'),
    maxTokens: z.number().int().positive().max(512).default(16),
    maxFirstTokenMs: z.number().positive().default(5000),
    minTokensPerSecond: z.number().nonnegative().default(0),
  })
  .strict();

export const DeployModelDocumentSchema = z
  .object({
    schema: z.literal(DEPLOY_MODEL_SCHEMA),
    modelId: ModelIdSchema,
    version: ModelVersionSchema,
    /** manifest.json, whose files must match `artifacts` exactly. */
    manifest: z.object({ url: UrlSchema, sha256: Sha256HexSchema, size: z.number().int().nonnegative() }).strict(),
    /** manifest.sig.json. */
    signature: z.object({ url: UrlSchema }).strict(),
    artifacts: z.array(JobArtifactSchema).min(1).max(64),
    /** Present on an explicit rollback below the devices' security-version floor (contracts/rollback-authorization.ts). */
    rollbackAuthorization: SignedRollbackAuthorizationSchema.optional(),
    healthCheck: HealthCheckSchema.default({
      prompt: 'Hello',
      maxTokens: 16,
      maxFirstTokenMs: 5000,
      minTokensPerSecond: 0,
    }),
  })
  .strict();

export type DeployModelDocument = z.output<typeof DeployModelDocumentSchema>;
export type DeployModelDocumentInput = z.input<typeof DeployModelDocumentSchema>;
export type JobArtifact = z.output<typeof JobArtifactSchema>;
export type HealthCheck = z.output<typeof HealthCheckSchema>;

/** Validates a job document received from IoT Jobs. */
export function parseDeployModelDocument(value: unknown): DeployModelDocument {
  return parseWith(DeployModelDocumentSchema, value, `${DEPLOY_MODEL_SCHEMA} job document`);
}
