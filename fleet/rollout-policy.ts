// The one rollout policy: rate, canary, abort, timeout, retries and presigned URLs under one naming scheme, one
// zod schema, and one pure mapping to CreateJob's configuration. The CLI, the rollout Lambdas and the CDK app all
// use it (README, Layout: infra may import fleet for this). Ranges come from fleet/job-limits.ts (the API reference).
// https://docs.aws.amazon.com/iot/latest/apireference/API_CreateJob.html
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-configurations-details.html
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';
import { parseWith } from '../common/validate.ts';
import { CREATE_JOB_LIMITS, checkJobConfig, type CreateJobLimitField, type JobRolloutConfig } from './job-limits.ts';

/** A zod number bounded exactly as CreateJob's reference bounds `field`. */
function limited(field: CreateJobLimitField) {
  const l: { min: number; max: number; integer?: boolean; decimals?: number; exclusiveMin?: boolean } = CREATE_JOB_LIMITS[field];
  let n = z.number();
  if (l.integer) n = n.int();
  n = l.exclusiveMin ? n.gt(l.min) : n.min(l.min);
  n = n.max(l.max);
  if (l.decimals === undefined) return n;
  const decimals = l.decimals;
  // The shortest decimal form, as job-limits checks it: 7.000000000000001 has 15 decimals, not 0.
  return n.refine((v) => !/e/i.test(String(v)) && (String(v).split('.')[1] ?? '').length <= decimals, {
    message: `at most ${l.decimals} decimal${l.decimals === 1 ? '' : 's'} (CreateJob ${field})`,
  });
}

/** ExponentialRolloutRate: start at `baseRatePerMinute`, multiply by `incrementFactor` each time a criterion is met. */
export const ExponentialRateSchema = z
  .object({
    baseRatePerMinute: limited('exponentialRate.baseRatePerMinute'),
    incrementFactor: limited('exponentialRate.incrementFactor'),
    /** Raise the rate after this many more devices were notified. */
    increaseAfterNotified: limited('rateIncreaseCriteria.numberOfNotifiedThings').optional(),
    /** Raise the rate after this many more devices succeeded. */
    increaseAfterSucceeded: limited('rateIncreaseCriteria.numberOfSucceededThings').optional(),
  })
  .strict()
  .refine((e) => e.increaseAfterNotified !== undefined || e.increaseAfterSucceeded !== undefined, {
    message: 'an exponential rate needs increaseAfterNotified or increaseAfterSucceeded (CreateJob rateIncreaseCriteria)',
  });

/** Every rollout setting, with units in the names. Defaults are what `fleetlm rollout` does without flags. */
export const RolloutPolicySchema = z
  .object({
    /** Upper bound on notifications per minute (jobExecutionsRolloutConfig.maximumPerMinute). */
    maxPerMinute: limited('jobExecutionsRolloutConfig.maximumPerMinute').default(100),
    /** A rate that grows as devices are notified or succeed; none means a constant maxPerMinute. */
    exponentialRate: ExponentialRateSchema.optional(),
    /**
     * Share of the targets (percent, rounded up to at least one device) that get a first job of their own; the
     * rest get the rollout's job only after every canary execution SUCCEEDED. None: one job, no canary.
     */
    canaryPercent: z.number().gt(0).max(100).optional(),
    /** How long the canary may take before it counts as failed (its job is then canceled); minutes. */
    canaryTimeoutMinutes: limited('timeoutConfig.inProgressTimeoutInMinutes').default(120),
    /** Cancel the job once this percentage of executed devices failed, were rejected or timed out. */
    abortThresholdPercent: limited('abortCriteria.thresholdPercentage').default(20),
    /** The abort criterion applies only after this many devices executed (default: see abortMinExecuted()). */
    abortMinExecuted: limited('abortCriteria.minNumberOfExecutedThings').optional(),
    /** Minutes an execution may stay IN_PROGRESS before it is TIMED_OUT. */
    timeoutMinutes: limited('timeoutConfig.inProgressTimeoutInMinutes').default(30),
    /** Retries of a FAILED or TIMED_OUT execution. */
    retries: limited('retryCriteria.numberOfRetries').default(0),
    /** How long a presigned artifact URL stays valid, seconds. */
    presignExpiresInSec: limited('presignedUrlConfig.expiresInSec').default(3600),
    /** SNAPSHOT: the devices in the group now; CONTINUOUS: also devices added later. */
    targetSelection: z.enum(['SNAPSHOT', 'CONTINUOUS']).default('SNAPSHOT'),
  })
  .strict();

/** A resolved policy (every default filled in). */
export type RolloutPolicy = z.output<typeof RolloutPolicySchema>;
/** What a caller may pass: any subset of the policy's fields. */
export type RolloutPolicyInput = z.input<typeof RolloutPolicySchema>;

/** The policy with nothing overridden. */
export const DEFAULT_ROLLOUT_POLICY: RolloutPolicy = Object.freeze(RolloutPolicySchema.parse({}));

/** Validates overrides (flags, a Lambda's environment, CDK context) and fills in the defaults; `what` names the source. */
export function resolveRolloutPolicy(input: unknown, what = 'rollout policy'): RolloutPolicy {
  const o = input && typeof input === 'object' ? Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) : input;
  return parseWith(RolloutPolicySchema, o, what);
}

/** How many of `targetCount` devices form the canary (at least one), or undefined without a canary. */
export function canarySize(policy: RolloutPolicy, targetCount: number): number | undefined {
  if (policy.canaryPercent === undefined) return undefined;
  // Two decimals of a percent: work in hundredths so 5% of 100 is exactly 5, not 5.000000000000001.
  return Math.max(1, Math.ceil((Math.round(policy.canaryPercent * 100) * targetCount) / 10_000));
}

/**
 * The abort criterion's minimum number of executed devices. Without retries: 1, so the first failure that
 * reaches the threshold cancels the job. With retries, AWS IoT may count a failure it is about to retry, and
 * cancelling the job cancels the retries too; so the default then waits until enough devices ran that one
 * device alone cannot reach the threshold: floor(100 / threshold) + 1 (20% -> 6, 10% -> 11).
 */
export function abortMinExecuted(policy: RolloutPolicy): number {
  if (policy.abortMinExecuted !== undefined) return policy.abortMinExecuted;
  return policy.retries > 0 ? oneDeviceSafeMinimum(policy.abortThresholdPercent) : 1;
}

function oneDeviceSafeMinimum(thresholdPercent: number): number {
  return Math.floor(100 / thresholdPercent) + 1;
}

/** Combinations that do something an operator probably did not mean; each line says what and how to fix it. */
export function policyWarnings(policy: RolloutPolicy): string[] {
  const warnings: string[] = [];
  const safe = oneDeviceSafeMinimum(policy.abortThresholdPercent);
  if (policy.retries > 0 && policy.abortMinExecuted !== undefined && policy.abortMinExecuted < safe) {
    warnings.push(
      `retries ${policy.retries} with abort threshold ${policy.abortThresholdPercent}% from ${policy.abortMinExecuted} executed device(s): ` +
        `one device's failure (1 of ${policy.abortMinExecuted}) reaches the threshold and cancels the job, and its retries with it; ` +
        `raise the minimum to ${safe} or more (--abort-min-executed), or leave it unset`,
    );
  }
  if (policy.canaryPercent !== undefined && policy.canaryTimeoutMinutes < policy.timeoutMinutes * (policy.retries + 1)) {
    warnings.push(
      `canary timeout ${policy.canaryTimeoutMinutes} min is shorter than ${policy.retries + 1} attempt(s) of ${policy.timeoutMinutes} min: ` +
        'a slow canary counts as failed before its executions time out or retry',
    );
  }
  return warnings;
}

/** Maps a policy to CreateJob's rollout, abort, timeout, retry, presign and target-selection fields, checked against the reference ranges. */
export function toCreateJobConfig(policy: RolloutPolicy, presignRoleArn: string): JobRolloutConfig {
  if (!presignRoleArn) {
    throw new ValidationError('a presign role ARN is required for presigned artifact URLs: set presignRoleArn in the profile or pass --role-arn');
  }
  const rate = policy.exponentialRate;
  const config: JobRolloutConfig = {
    targetSelection: policy.targetSelection,
    jobExecutionsRolloutConfig: rate
      ? {
          maximumPerMinute: policy.maxPerMinute,
          exponentialRate: {
            baseRatePerMinute: Math.min(rate.baseRatePerMinute, policy.maxPerMinute),
            incrementFactor: rate.incrementFactor,
            rateIncreaseCriteria: {
              ...(rate.increaseAfterNotified !== undefined ? { numberOfNotifiedThings: rate.increaseAfterNotified } : {}),
              ...(rate.increaseAfterSucceeded !== undefined ? { numberOfSucceededThings: rate.increaseAfterSucceeded } : {}),
            },
          },
        }
      : { maximumPerMinute: policy.maxPerMinute },
    abortConfig: {
      criteriaList: [{ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: policy.abortThresholdPercent, minNumberOfExecutedThings: abortMinExecuted(policy) }],
    },
    timeoutConfig: { inProgressTimeoutInMinutes: policy.timeoutMinutes },
    presignedUrlConfig: { roleArn: presignRoleArn, expiresInSec: policy.presignExpiresInSec },
  };
  if (policy.retries > 0) {
    config.jobExecutionsRetryConfig = {
      criteriaList: [
        { failureType: 'FAILED', numberOfRetries: policy.retries },
        { failureType: 'TIMED_OUT', numberOfRetries: policy.retries },
      ],
    };
  }
  return checkJobConfig(config);
}
