// Deployment settings for the CDK app: defaults in code < environment (account, region and the principal lists
// below) < CDK context (`cdk.json` or `-c fleetlm:key=value`), validated once with zod.
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';
import { resolveRolloutPolicy, type RolloutPolicyInput } from '../fleet/rollout-policy.ts';

const NAME = /^[a-z][a-z0-9-]{0,30}$/;

/** An IAM principal ARN (role, user, or the account root), `*` allowed as in an ArnLike condition. */
const PrincipalArnSchema = z
  .string()
  .regex(/^arn:aws[a-z-]*:iam::(\d{12}|\*):(root|role\/[\w+=,.@\/*-]+|user\/[\w+=,.@\/*-]+)$/, 'must be an IAM role, user or root ARN (arn:aws:iam::123456789012:role/Name; * allowed)');

/**
 * What the pipeline's rollouts do unless `fleetlm:rollout` says otherwise: a 10% canary first (the rest of each
 * group only after it succeeded), then a rate that doubles every 20 notified devices, 2 retries, an hour per
 * execution, and an abort at 10% failed (counted from 11 executed devices, so one device's failures never cancel
 * the retries; fleet/rollout-policy.ts abortMinExecuted).
 */
export const PIPELINE_ROLLOUT: RolloutPolicyInput = {
  canaryPercent: 10,
  exponentialRate: { baseRatePerMinute: 10, incrementFactor: 2, increaseAfterNotified: 20 },
  abortThresholdPercent: 10,
  timeoutMinutes: 60,
  retries: 2,
  canaryTimeoutMinutes: 240,
};

/** A class of device that gets its own IoT thing group and its own pipeline shard. */
export const DeviceClassSchema = z
  .object({
    name: z.string().regex(NAME, 'must be 1-31 of [a-z0-9-], starting with a letter'),
    /** Peak decode memory the model may use on this class, bytes. */
    memoryBudgetBytes: z.number().int().positive(),
    /** Forward FLOPs over one context-length sequence (models/arch/accounting.ts countForwardFlops). */
    flopsBudget: z.number().positive(),
  })
  .strict();

export const InfraConfigSchema = z
  .object({
    prefix: z.string().regex(NAME, 'must be 1-31 of [a-z0-9-], starting with a letter').default('fleetlm'),
    account: z.string().regex(/^\d{12}$/).optional(),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must look like us-east-1').default('us-east-1'),
    deviceClasses: z
      .array(DeviceClassSchema)
      .min(1)
      .max(20)
      .default([
        // Names match models/search/device-profiles.ts, so the search also predicts their latency.
        { name: 'jetson-orin-nano', memoryBudgetBytes: 2 * 1024 ** 3, flopsBudget: 5e11 },
        { name: 'rpi5', memoryBudgetBytes: 512 * 1024 ** 2, flopsBudget: 1e11 },
      ]),
    /** The gate stops publishing when perplexity after compression grows by more than this fraction. */
    maxQualityDrop: z.number().positive().max(10).default(0.15),
    /** Lambda memory for model steps (search, build, compress, evaluate), MiB. */
    modelFunctionMemoryMb: z.number().int().min(512).max(10240).default(3008),
    /** How long a run waits at its approval step for `fleetlm approve` before it fails (States.Timeout), hours. */
    approvalTimeoutHours: z.number().int().min(1).max(24 * 30).default(72),
    /** Distributed Map concurrency over shards. */
    maxShardConcurrency: z.number().int().min(1).max(1000).default(10),
    /** Percentage of shards that may fail without failing the Map (merge still needs a model for every device class). */
    shardFailureTolerancePercent: z.number().min(0).max(100).default(0),
    /** Days a noncurrent object version is kept before expiry. */
    noncurrentVersionDays: z.number().int().min(1).max(3650).default(30),
    /** Alarm when fleet p50 first-token latency stays above this, ms. */
    latencyAlarmMs: z.number().positive().default(2000),
    /**
     * Principals (ArnLike patterns) that administer the manifest-signing key: key policy, tags, enable/disable,
     * deletion; never Sign. The CloudFormation execution role and the account's root user are always added
     * (infra/constructs/signing-key-policy.ts says why). Env: FLEETLM_SIGNING_KEY_ADMINS (comma-separated).
     */
    signingKeyAdmins: z.array(PrincipalArnSchema).max(20).default([]),
    /**
     * Principals (exact ARNs) that may assume the operator roles (infra/constructs/operator-roles.ts); empty
     * means any principal of this account that its own IAM policy lets call sts:AssumeRole on them.
     * Env: FLEETLM_OPERATOR_PRINCIPALS (comma-separated).
     */
    operatorPrincipals: z.array(PrincipalArnSchema.refine((a) => !a.includes('*'), 'must not contain * (a trust policy names principals exactly)')).max(20).default([]),
    /** Email to subscribe to the alarm topic; none means no subscription. */
    alarmEmail: z.string().email().optional(),
    /**
     * The rollout policy of the pipeline's jobs: the schema the CLI uses (fleet/rollout-policy.ts, fields such as
     * canaryPercent, abortThresholdPercent, retries); fields left out take PIPELINE_ROLLOUT below, then the policy's defaults.
     */
    rollout: z
      .record(z.string(), z.unknown())
      .default({})
      .transform((o) => resolveRolloutPolicy({ ...PIPELINE_ROLLOUT, ...o }, 'CDK context fleetlm:rollout')),
    /** Seconds the pipeline waits between two looks at its canary jobs. */
    canaryPollSeconds: z.number().int().min(10).max(3600).default(60),
  })
  .strict();

export type InfraConfig = z.output<typeof InfraConfigSchema>;
export type DeviceClass = z.output<typeof DeviceClassSchema>;

/** Context keys read from `fleetlm:<key>`; JSON values (arrays, objects, numbers) are parsed. */
const KEYS = Object.keys(InfraConfigSchema.shape) as Array<keyof InfraConfig>;
/** Principal lists: `-c fleetlm:signingKeyAdmins=arn:...,arn:...` as well as a JSON array. */
const LIST_KEYS = new Set<string>(['signingKeyAdmins', 'operatorPrincipals']);

/** Reads `fleetlm:*` context through `get` (node.tryGetContext) and validates it. */
export function loadInfraConfig(get: (key: string) => unknown, env: NodeJS.ProcessEnv = process.env): InfraConfig {
  const raw: Record<string, unknown> = {};
  for (const key of KEYS) {
    const value = get(`fleetlm:${key}`);
    if (value === undefined) continue;
    if (typeof value === 'string' && LIST_KEYS.has(key) && !value.trim().startsWith('[')) raw[key] = listFromEnv(value) ?? [];
    else raw[key] = typeof value === 'string' && key !== 'prefix' && key !== 'region' && key !== 'account' && key !== 'alarmEmail' ? parseContextValue(value) : value;
  }
  raw.account ??= env.CDK_DEFAULT_ACCOUNT;
  raw.region ??= env.CDK_DEFAULT_REGION;
  raw.signingKeyAdmins ??= listFromEnv(env.FLEETLM_SIGNING_KEY_ADMINS);
  raw.operatorPrincipals ??= listFromEnv(env.FLEETLM_OPERATOR_PRINCIPALS);
  return parseWith(InfraConfigSchema, raw, 'CDK context (fleetlm:*)');
}

// Comma-separated list in an environment variable; unset or blank means "not set here".
function listFromEnv(value: string | undefined): string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  return value.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
}

// `-c key=value` always arrives as a string; numbers and JSON need decoding.
function parseContextValue(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** Thing group name for a device class. */
export function thingGroupName(config: InfraConfig, deviceClass: string): string {
  return `${config.prefix}-${deviceClass}`;
}
