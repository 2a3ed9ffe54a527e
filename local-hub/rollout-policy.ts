// The IoT Jobs rollout policy as pure functions: rollout rate (constant or exponential, capped by
// maximumPerMinute), abort criteria, retries and timeouts. No I/O; time comes in through a clock.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-configurations-details.html
import type { AbortCriteria, ExecutionStatus, RetryCriteria, RolloutConfig } from './job-store.ts';

/** The time now and the length of a "minute" in ms (60,000 unless scaled for tests). */
export interface JobsClock {
  now(): number;
  readonly minuteMs: number;
}

/** AWS's ceiling on a job's rollout rate (maximumPerMinute and the exponential rate alike). */
export const MAX_RATE_PER_MINUTE = 1000;

/** What a job's rollout carries between ticks (persisted in its job record). */
export interface RolloutCounters {
  /** Start of the current one-minute window, ms since epoch. */
  readonly windowStart: number;
  /** Executions created in the current window. */
  readonly sentInWindow: number;
  /** Rate reached so far (exponential rollouts raise it); undefined without a rollout config. */
  readonly rate?: number;
  /** Rate in force for the current window: an increase applies from the next window. */
  readonly windowRate?: number;
  readonly notifiedSinceIncrease: number;
  readonly succeededSinceIncrease: number;
}

/** Counters of a job created at `now`. */
export function initialRolloutCounters(config: RolloutConfig | undefined, now: number): RolloutCounters {
  return {
    windowStart: now,
    sentInWindow: 0,
    rate: config?.exponentialRate?.baseRatePerMinute ?? config?.maximumPerMinute,
    notifiedSinceIncrease: 0,
    succeededSinceIncrease: 0,
  };
}

/** Executions per minute allowed now; undefined means no limit. */
export function currentRate(config: RolloutConfig | undefined, counters: RolloutCounters): number | undefined {
  if (!config) return undefined;
  if (config.exponentialRate) {
    return Math.min(counters.rate ?? config.exponentialRate.baseRatePerMinute, config.maximumPerMinute ?? MAX_RATE_PER_MINUTE);
  }
  return config.maximumPerMinute;
}

/** Multiplies the rate by incrementFactor once rateIncreaseCriteria is met, and restarts the counts. */
export function increaseRateIfDue(config: RolloutConfig | undefined, counters: RolloutCounters): RolloutCounters {
  const exp = config?.exponentialRate;
  if (!exp) return counters;
  const { numberOfNotifiedThings, numberOfSucceededThings } = exp.rateIncreaseCriteria;
  const hit =
    (numberOfNotifiedThings !== undefined && counters.notifiedSinceIncrease >= numberOfNotifiedThings) ||
    (numberOfSucceededThings !== undefined && counters.succeededSinceIncrease >= numberOfSucceededThings);
  if (!hit) return counters;
  return {
    ...counters,
    rate: Math.min((counters.rate ?? exp.baseRatePerMinute) * exp.incrementFactor, MAX_RATE_PER_MINUTE),
    notifiedSinceIncrease: 0,
    succeededSinceIncrease: 0,
  };
}

/**
 * How many executions may be created now, and the counters with the window opened or rolled over:
 * a window lasts one minute, and the rate in force is fixed when the window opens.
 */
export function rolloutAllowance(config: RolloutConfig | undefined, counters: RolloutCounters, clock: JobsClock): { allowance: number; counters: RolloutCounters } {
  const rate = currentRate(config, counters);
  if (rate === undefined) return { allowance: Infinity, counters };
  const now = clock.now();
  let next = counters;
  const minutePassed = now - counters.windowStart >= clock.minuteMs;
  if (minutePassed || counters.windowRate === undefined) {
    next = { ...counters, windowStart: minutePassed ? now : counters.windowStart, sentInWindow: 0, windowRate: rate };
  }
  return { allowance: Math.max(0, Math.floor(next.windowRate!) - next.sentInWindow), counters: next };
}

/** Counters after `sent` executions were created (notified) in the current window. */
export function afterNotified(config: RolloutConfig | undefined, counters: RolloutCounters, sent: number): RolloutCounters {
  if (sent <= 0) return counters;
  return increaseRateIfDue(config, {
    ...counters,
    sentInWindow: counters.sentInWindow + sent,
    notifiedSinceIncrease: counters.notifiedSinceIncrease + sent,
  });
}

/** Counters after one execution succeeded (only exponential rollouts count successes). */
export function afterSucceeded(config: RolloutConfig | undefined, counters: RolloutCounters): RolloutCounters {
  if (!config?.exponentialRate) return counters;
  return increaseRateIfDue(config, { ...counters, succeededSinceIncrease: counters.succeededSinceIncrease + 1 });
}

/** Why a job is aborted: the first criterion whose failure share reached its threshold. */
export interface AbortDecision {
  readonly criterion: AbortCriteria;
  readonly failures: number;
  readonly executed: number;
  readonly percentage: number;
  /** The job's comment, naming the numbers. */
  readonly comment: string;
}

const ABORT_IGNORES: ReadonlySet<ExecutionStatus> = new Set(['QUEUED', 'IN_PROGRESS', 'CANCELED', 'REMOVED']);

function countsAsFailure(failureType: AbortCriteria['failureType'], status: ExecutionStatus): boolean {
  return failureType === 'ALL' ? status === 'FAILED' || status === 'REJECTED' || status === 'TIMED_OUT' : status === failureType;
}

/**
 * abortConfig over the latest execution status of each targeted thing: executed things are those that ended
 * SUCCEEDED, FAILED, REJECTED or TIMED_OUT; undefined when no criterion is met.
 */
export function abortDecision(criteria: readonly AbortCriteria[] | undefined, latestStatuses: readonly ExecutionStatus[]): AbortDecision | undefined {
  if (!criteria || criteria.length === 0) return undefined;
  const executed = latestStatuses.filter((s) => !ABORT_IGNORES.has(s));
  for (const criterion of criteria) {
    if (executed.length < criterion.minNumberOfExecutedThings) continue;
    const failures = executed.filter((s) => countsAsFailure(criterion.failureType, s)).length;
    const percentage = (failures * 100) / executed.length;
    if (percentage >= criterion.thresholdPercentage) {
      return {
        criterion,
        failures,
        executed: executed.length,
        percentage,
        comment: `Job aborted by abortConfig: ${failures} of ${executed.length} executed things ended ${criterion.failureType} (${percentage.toFixed(1)}% >= ${criterion.thresholdPercentage}%, minNumberOfExecutedThings ${criterion.minNumberOfExecutedThings}).`,
      };
    }
  }
  return undefined;
}

/** jobExecutionsRetryConfig: whether an execution that ended `status` after `retryAttempt` retries gets another. */
export function shouldRetry(criteria: readonly RetryCriteria[] | undefined, status: ExecutionStatus, retryAttempt: number): boolean {
  if (!criteria || (status !== 'FAILED' && status !== 'TIMED_OUT')) return false;
  const criterion = criteria.find((c) => c.failureType === status) ?? criteria.find((c) => c.failureType === 'ALL');
  return criterion !== undefined && retryAttempt < criterion.numberOfRetries;
}

/** The deadlines an execution may carry, ms since epoch. */
export interface ExecutionTimers {
  readonly stepDeadline?: number;
  readonly inProgressDeadline?: number;
}

/** timeoutConfig.inProgressTimeoutInMinutes: the deadline set when an execution moves to IN_PROGRESS. */
export function inProgressDeadline(timeoutMinutes: number | undefined, clock: JobsClock): number | undefined {
  return timeoutMinutes === undefined ? undefined : clock.now() + timeoutMinutes * clock.minuteMs;
}

/** stepTimeoutInMinutes from the device: -1 cancels the step timer, a value sets a new one, undefined keeps it. */
export function nextStepDeadline(current: number | undefined, minutes: number | undefined, clock: JobsClock): number | undefined {
  if (minutes === undefined) return current;
  if (minutes === -1) return undefined;
  return clock.now() + minutes * clock.minuteMs;
}

/** The earliest of an execution's deadlines; Infinity without timers. */
export function earliestDeadline(timers: ExecutionTimers): number {
  return Math.min(timers.stepDeadline ?? Infinity, timers.inProgressDeadline ?? Infinity);
}

/** True once a timer of the execution has run out. */
export function hasTimedOut(timers: ExecutionTimers, clock: JobsClock): boolean {
  return earliestDeadline(timers) <= clock.now();
}

/** Whole seconds until the earliest timer fires (approximateSecondsBeforeTimedOut), or undefined without timers. */
export function secondsBeforeTimedOut(timers: ExecutionTimers, clock: JobsClock): number | undefined {
  const deadline = earliestDeadline(timers);
  if (!Number.isFinite(deadline)) return undefined;
  return Math.max(0, Math.ceil((deadline - clock.now()) / 1000));
}
