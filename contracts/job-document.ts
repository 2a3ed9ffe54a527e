// The IoT Job documents a device accepts: `fleetlm/deploy-model@1` (install a model) and
// `fleetlm/update-agent@1` (replace the agent itself), told apart by their `schema` field. URLs are usually `${aws:iot:s3-presigned-url:https://bucket.s3.region.amazonaws.com/key}`
// placeholders in the stored job; the device receives them already replaced by presigned URLs.
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';
import { AgentArchSchema, AgentPlatformSchema, AgentVersionSchema, isAgentPackageFileName } from './agent-package.ts';
import { BundleFileNameSchema, ModelIdSchema, ModelVersionSchema, Sha256HexSchema } from './manifest.ts';

export const DEPLOY_MODEL_SCHEMA = 'fleetlm/deploy-model@1';
export const UPDATE_AGENT_SCHEMA = 'fleetlm/update-agent@1';

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

/** One platform's build of the agent: its signed manifest and the package tarball it lists. */
export const AgentPackageRefSchema = z
  .object({
    platform: AgentPlatformSchema,
    arch: AgentArchSchema,
    /** manifest.json (fleetlm/agent-manifest@1), whose single file must match `artifact`. */
    manifest: z.object({ url: UrlSchema, sha256: Sha256HexSchema, size: z.number().int().nonnegative() }).strict(),
    signature: z.object({ url: UrlSchema }).strict(),
    artifact: JobArtifactSchema.refine((a) => isAgentPackageFileName(a.name), 'name must be fleetlm-agent-<version>-linux-<arch>.tar.gz'),
  })
  .strict();

/**
 * Replaces the agent: the device picks the package for its platform and arch, installs it beside the
 * running agent, restarts into it, and keeps it only if it reconnects and reports within `confirmTimeoutSec`.
 */
export const UpdateAgentDocumentSchema = z
  .object({
    schema: z.literal(UPDATE_AGENT_SCHEMA),
    version: AgentVersionSchema,
    packages: z.array(AgentPackageRefSchema).min(1).max(8),
    /** Seconds the new agent has, from its start, to connect over MQTT and report the job. */
    confirmTimeoutSec: z.number().int().min(1).max(3600).default(120),
  })
  .strict()
  .superRefine((d, ctx) => {
    const seen = new Set<string>();
    d.packages.forEach((p, i) => {
      const key = `${p.platform}-${p.arch}`;
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['packages', i], message: `duplicate package for ${key}` });
      seen.add(key);
      const expected = `fleetlm-agent-${d.version}-${key}.tar.gz`;
      if (p.artifact.name !== expected) {
        ctx.addIssue({ code: 'custom', path: ['packages', i, 'artifact', 'name'], message: `must be ${expected} for version ${d.version} on ${key}, got ${p.artifact.name}` });
      }
    });
  });

export type UpdateAgentDocument = z.output<typeof UpdateAgentDocumentSchema>;
export type UpdateAgentDocumentInput = z.input<typeof UpdateAgentDocumentSchema>;
export type AgentPackageRef = z.output<typeof AgentPackageRefSchema>;

/** Every job document a device accepts, told apart by `schema`. */
export const JobDocumentSchema = z.discriminatedUnion('schema', [DeployModelDocumentSchema, UpdateAgentDocumentSchema]);
export type JobDocument = z.output<typeof JobDocumentSchema>;

/** Validates any job document; the error names the schema the document claims (or the allowed ones). */
export function parseJobDocument(value: unknown): JobDocument {
  const claimed = typeof value === 'object' && value !== null ? (value as { schema?: unknown }).schema : undefined;
  const what = typeof claimed === 'string' && [DEPLOY_MODEL_SCHEMA, UPDATE_AGENT_SCHEMA].includes(claimed) ? `${claimed} job document` : `job document (schema ${DEPLOY_MODEL_SCHEMA} or ${UPDATE_AGENT_SCHEMA})`;
  return parseWith(JobDocumentSchema, value, what);
}

/** Validates an update-agent@1 job document. */
export function parseUpdateAgentDocument(value: unknown): UpdateAgentDocument {
  return parseWith(UpdateAgentDocumentSchema, value, `${UPDATE_AGENT_SCHEMA} job document`);
}
