// Deployment settings for the CDK app: defaults in code, overridden by CDK context
// (`cdk.json` or `-c fleetlm:key=value`), validated once with zod.
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';
import { resolveRolloutPolicy, type RolloutPolicyInput } from '../fleet/rollout-policy.ts';

const NAME = /^[a-z][a-z0-9-]{0,30}$/;

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
    /** Distributed Map concurrency over shards. */
    maxShardConcurrency: z.number().int().min(1).max(1000).default(10),
    /** Days a noncurrent object version is kept before expiry. */
    noncurrentVersionDays: z.number().int().min(1).max(3650).default(30),
    /** Alarm when fleet p50 first-token latency stays above this, ms. */
    latencyAlarmMs: z.number().positive().default(2000),
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

/** Reads `fleetlm:*` context through `get` (node.tryGetContext) and validates it. */
export function loadInfraConfig(get: (key: string) => unknown, env: NodeJS.ProcessEnv = process.env): InfraConfig {
  const raw: Record<string, unknown> = {};
  for (const key of KEYS) {
    const value = get(`fleetlm:${key}`);
    if (value === undefined) continue;
    raw[key] = typeof value === 'string' && key !== 'prefix' && key !== 'region' && key !== 'account' && key !== 'alarmEmail' ? parseContextValue(value) : value;
  }
  raw.account ??= env.CDK_DEFAULT_ACCOUNT;
  raw.region ??= env.CDK_DEFAULT_REGION;
  return parseWith(InfraConfigSchema, raw, 'CDK context (fleetlm:*)');
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
