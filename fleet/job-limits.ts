// CreateJob's documented ranges for the rollout, abort, timeout, retry and presign settings, checked on the
// exact numbers about to be sent, so a value AWS would refuse (or silently round) fails here with its name.
// https://docs.aws.amazon.com/iot/latest/apireference/API_CreateJob.html and the types it links
// (AbortCriteria, ExponentialRolloutRate, RateIncreaseCriteria, TimeoutConfig, RetryCriteria, PresignedUrlConfig).
import type { CreateJobCommandInput } from '@aws-sdk/client-iot';
import { ValidationError } from '../common/errors.ts';

/** The CreateJob fields a FleetLM rollout sets besides the target and document. */
export type JobRolloutConfig = Pick<
  CreateJobCommandInput,
  'jobExecutionsRolloutConfig' | 'abortConfig' | 'timeoutConfig' | 'jobExecutionsRetryConfig' | 'presignedUrlConfig' | 'targetSelection'
>;

/** The reference ranges, by the API's field path. */
export const CREATE_JOB_LIMITS = {
  'jobExecutionsRolloutConfig.maximumPerMinute': { min: 1, max: 1000, integer: true },
  'exponentialRate.baseRatePerMinute': { min: 1, max: 1000, integer: true },
  'exponentialRate.incrementFactor': { min: 1.1, max: 5, decimals: 1 },
  'rateIncreaseCriteria.numberOfSucceededThings': { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
  'rateIncreaseCriteria.numberOfNotifiedThings': { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
  'abortCriteria.thresholdPercentage': { min: 0, max: 100, decimals: 2, exclusiveMin: true },
  'abortCriteria.minNumberOfExecutedThings': { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
  'timeoutConfig.inProgressTimeoutInMinutes': { min: 1, max: 10080, integer: true },
  'retryCriteria.numberOfRetries': { min: 0, max: 10, integer: true },
  'presignedUrlConfig.expiresInSec': { min: 60, max: 3600, integer: true },
} as const satisfies Record<string, { min: number; max: number; integer?: boolean; decimals?: number; exclusiveMin?: boolean }>;

export type CreateJobLimitField = keyof typeof CREATE_JOB_LIMITS;

/** True when `value` has at most `decimals` digits after the point (as its shortest decimal form shows). */
function hasAtMostDecimals(value: number, decimals: number): boolean {
  const text = String(value);
  if (/e/i.test(text)) return false;
  const dot = text.indexOf('.');
  return dot < 0 || text.length - dot - 1 <= decimals;
}

/** Checks one number against its CreateJob range; the message names the field, the rule and the value. */
export function checkJobNumber(field: CreateJobLimitField, value: number | undefined, flag?: string): void {
  if (value === undefined) return;
  const l: { min: number; max: number; integer?: boolean; decimals?: number; exclusiveMin?: boolean } = CREATE_JOB_LIMITS[field];
  const name = flag ? `${flag} (CreateJob ${field})` : `CreateJob ${field}`;
  const range = `${l.exclusiveMin ? '(' : '['}${l.min}, ${l.max}]`;
  if (!Number.isFinite(value) || value < l.min || value > l.max || (l.exclusiveMin && value === l.min)) {
    throw new ValidationError(`${name} must be in ${range}; got ${value}`, { code: 'VALIDATION_JOB_LIMIT' });
  }
  if (l.integer && !Number.isInteger(value)) throw new ValidationError(`${name} must be an integer in ${range}; got ${value}`, { code: 'VALIDATION_JOB_LIMIT' });
  if (l.decimals !== undefined && !hasAtMostDecimals(value, l.decimals)) {
    throw new ValidationError(`${name} allows at most ${l.decimals === 2 ? 'two decimals' : 'one decimal'} (e.g. 10.99); got ${value}`, { code: 'VALIDATION_JOB_LIMIT' });
  }
}

/** Checks every number of a rollout configuration against the CreateJob reference ranges; returns it unchanged. */
export function checkJobConfig<C extends JobRolloutConfig>(config: C): C {
  const rollout = config.jobExecutionsRolloutConfig;
  checkJobNumber('jobExecutionsRolloutConfig.maximumPerMinute', rollout?.maximumPerMinute);
  checkJobNumber('exponentialRate.baseRatePerMinute', rollout?.exponentialRate?.baseRatePerMinute);
  checkJobNumber('exponentialRate.incrementFactor', rollout?.exponentialRate?.incrementFactor);
  checkJobNumber('rateIncreaseCriteria.numberOfSucceededThings', rollout?.exponentialRate?.rateIncreaseCriteria?.numberOfSucceededThings);
  checkJobNumber('rateIncreaseCriteria.numberOfNotifiedThings', rollout?.exponentialRate?.rateIncreaseCriteria?.numberOfNotifiedThings);
  for (const c of config.abortConfig?.criteriaList ?? []) {
    checkJobNumber('abortCriteria.thresholdPercentage', c.thresholdPercentage);
    checkJobNumber('abortCriteria.minNumberOfExecutedThings', c.minNumberOfExecutedThings);
  }
  checkJobNumber('timeoutConfig.inProgressTimeoutInMinutes', config.timeoutConfig?.inProgressTimeoutInMinutes);
  const retries = config.jobExecutionsRetryConfig?.criteriaList ?? [];
  if (retries.length > 2) throw new ValidationError(`CreateJob jobExecutionsRetryConfig.criteriaList holds 1..2 criteria; got ${retries.length}`, { code: 'VALIDATION_JOB_LIMIT' });
  for (const r of retries) checkJobNumber('retryCriteria.numberOfRetries', r.numberOfRetries);
  checkJobNumber('presignedUrlConfig.expiresInSec', config.presignedUrlConfig?.expiresInSec);
  return config;
}

/**
 * Parses an operator's percentage (`7%`, `7.25%`, `0.07`; a bare number above 1 is a percentage) into the
 * percentage CreateJob takes, exact to two decimals: `7%` is 7, never 7.000000000000001.
 */
export function parsePercentage(text: string, flag: string): number {
  const m = /^\s*(\d+)(?:\.(\d+))?\s*(%?)\s*$/.exec(text);
  if (!m) throw new ValidationError(`${flag} must be a percentage such as 7% or 0.07; got ${JSON.stringify(text)}`);
  const [, whole, frac = '', pct] = m;
  const raw = Number(`${whole}.${frac || '0'}`);
  const isPercent = pct === '%' || raw > 1;
  // Work on the decimal digits, not on floats: a fraction's digits shift two places to make the percentage.
  const decimals = isPercent ? frac.replace(/0+$/, '').length : Math.max(0, frac.replace(/0+$/, '').length - 2);
  if (decimals > 2) throw new ValidationError(`${flag} allows at most two decimals of a percent (CreateJob abortCriteria.thresholdPercentage); got ${JSON.stringify(text)}`, { code: 'VALIDATION_JOB_LIMIT' });
  const percent = Number((isPercent ? raw : raw * 100).toFixed(2));
  if (!(percent > 0 && percent <= 100)) throw new ValidationError(`${flag} must be in (0%, 100%]; got ${JSON.stringify(text)}`);
  return percent;
}
