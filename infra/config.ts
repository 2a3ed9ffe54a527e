// Deployment settings for the CDK app: defaults in code, overridden by CDK context
// (`cdk.json` or `-c fleetlm:key=value`), validated once with zod.
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';

const NAME = /^[a-z][a-z0-9-]{0,30}$/;

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
    /** Days a noncurrent object version is kept before expiry. */
    noncurrentVersionDays: z.number().int().min(1).max(3650).default(30),
    /** Alarm when fleet p50 first-token latency stays above this, ms. */
    latencyAlarmMs: z.number().positive().default(2000),
    /** Email to subscribe to the alarm topic; none means no subscription. */
    alarmEmail: z.string().email().optional(),
    jobs: z
      .object({
        baseRatePerMinute: z.number().int().min(1).max(1000).default(10),
        incrementFactor: z.number().min(1.1).max(5).default(2),
        notifiedThingsToIncrease: z.number().int().min(1).default(20),
        maximumPerMinute: z.number().int().min(1).max(1000).default(100),
        abortFailedPercent: z.number().min(1).max(100).default(10),
        abortMinExecuted: z.number().int().min(1).default(10),
        inProgressTimeoutMinutes: z.number().int().min(1).max(10080).default(60),
        retries: z.number().int().min(0).max(10).default(2),
        presignedUrlExpirySec: z.number().int().min(60).max(3600).default(3600),
      })
      .strict()
      .default({
        baseRatePerMinute: 10,
        incrementFactor: 2,
        notifiedThingsToIncrease: 20,
        maximumPerMinute: 100,
        abortFailedPercent: 10,
        abortMinExecuted: 10,
        inProgressTimeoutMinutes: 60,
        retries: 2,
        presignedUrlExpirySec: 3600,
      }),
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
