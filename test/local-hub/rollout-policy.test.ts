// The pure rollout policy (local-hub/rollout-policy.ts) on a hand-driven clock: rate windows, the exponential
// rate and its cap, abort criteria, retries and timers, as the IoT Jobs configuration reference describes them.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-configurations-details.html
import { describe, expect, it } from 'vitest';
import type { ExecutionStatus, RolloutConfig } from '../../local-hub/job-store.ts';
import {
  MAX_RATE_PER_MINUTE,
  abortDecision,
  afterNotified,
  afterSucceeded,
  currentRate,
  earliestDeadline,
  hasTimedOut,
  inProgressDeadline,
  initialRolloutCounters,
  nextStepDeadline,
  rolloutAllowance,
  secondsBeforeTimedOut,
  shouldRetry,
  type JobsClock,
  type RolloutCounters,
} from '../../local-hub/rollout-policy.ts';

const MINUTE = 60_000;
const T0 = 1_700_000_000_000;

function clockAt(ms: number): JobsClock {
  return { now: () => ms, minuteMs: MINUTE };
}

/** Creates what the policy allows at `at` (all of it), as the engine does with enough pending things. */
function send(config: RolloutConfig | undefined, counters: RolloutCounters, at: number, pending = Infinity): { sent: number; counters: RolloutCounters } {
  const { allowance, counters: opened } = rolloutAllowance(config, counters, clockAt(at));
  const sent = Math.min(allowance, pending);
  return { sent, counters: afterNotified(config, opened, sent) };
}

describe('rollout rate', () => {
  it('without a rollout config, everything goes at once and the counters are left alone', () => {
    const c = initialRolloutCounters(undefined, T0);
    const r = rolloutAllowance(undefined, c, clockAt(T0));
    expect(r.allowance).toBe(Infinity);
    expect(r.counters).toBe(c);
  });

  it('maximumPerMinute: at most that many per one-minute window; the next window opens a minute after the last one', () => {
    const config: RolloutConfig = { maximumPerMinute: 2 };
    let c = initialRolloutCounters(config, T0);
    let r = send(config, c, T0);
    expect(r.sent).toBe(2);
    c = r.counters;
    expect(send(config, c, T0 + MINUTE - 1).sent).toBe(0);
    r = send(config, c, T0 + MINUTE);
    expect(r.sent).toBe(2);
    expect(r.counters.windowStart).toBe(T0 + MINUTE);
    expect(send(config, r.counters, T0 + 2 * MINUTE - 1).sent).toBe(0);
  });

  it('a window that sent less than its rate keeps the rest of its allowance within the minute', () => {
    const config: RolloutConfig = { maximumPerMinute: 3 };
    const first = send(config, initialRolloutCounters(config, T0), T0, 1);
    expect(first.sent).toBe(1);
    expect(rolloutAllowance(config, first.counters, clockAt(T0 + 10)).allowance).toBe(2);
  });

  it('exponential rate: multiplied once numberOfNotifiedThings were notified, in force from the next window, capped by maximumPerMinute', () => {
    const config: RolloutConfig = { maximumPerMinute: 5, exponentialRate: { baseRatePerMinute: 2, incrementFactor: 2, rateIncreaseCriteria: { numberOfNotifiedThings: 2 } } };
    let c = initialRolloutCounters(config, T0);
    expect(currentRate(config, c)).toBe(2);
    let r = send(config, c, T0);
    expect(r.sent).toBe(2);
    c = r.counters;
    expect(c.rate).toBe(4);
    expect(c.notifiedSinceIncrease).toBe(0);
    expect(send(config, c, T0 + 1000).sent).toBe(0); // the window keeps the rate it opened with
    r = send(config, c, T0 + MINUTE);
    expect(r.sent).toBe(4);
    expect(r.counters.rate).toBe(8);
    expect(send(config, r.counters, T0 + 2 * MINUTE).sent).toBe(5); // min(8, maximumPerMinute 5)
  });

  it('exponential rate: successes count only toward numberOfSucceededThings, and only with an exponential rate', () => {
    const config: RolloutConfig = { exponentialRate: { baseRatePerMinute: 3, incrementFactor: 1.5, rateIncreaseCriteria: { numberOfSucceededThings: 2 } } };
    let c = initialRolloutCounters(config, T0);
    c = afterSucceeded(config, c);
    expect(c).toMatchObject({ rate: 3, succeededSinceIncrease: 1 });
    c = afterSucceeded(config, c);
    expect(c).toMatchObject({ rate: 4.5, succeededSinceIncrease: 0 });
    // A fractional rate allows its whole part per window.
    expect(rolloutAllowance(config, c, clockAt(T0)).allowance).toBe(4);
    const constant: RolloutConfig = { maximumPerMinute: 3 };
    const k = initialRolloutCounters(constant, T0);
    expect(afterSucceeded(constant, k)).toBe(k);
  });

  it('the exponential rate never passes 1,000 a minute, the API ceiling', () => {
    const config: RolloutConfig = { exponentialRate: { baseRatePerMinute: 600, incrementFactor: 5, rateIncreaseCriteria: { numberOfNotifiedThings: 1 } } };
    const r = send(config, initialRolloutCounters(config, T0), T0, 1);
    expect(r.counters.rate).toBe(MAX_RATE_PER_MINUTE);
    expect(currentRate(config, r.counters)).toBe(1000);
  });
});

describe('abort criteria', () => {
  const failed50 = [{ failureType: 'FAILED' as const, action: 'CANCEL' as const, thresholdPercentage: 50, minNumberOfExecutedThings: 4 }];

  it('waits for minNumberOfExecutedThings executed things; queued, in-progress, canceled and removed ones do not count', () => {
    const statuses: ExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'FAILED', 'QUEUED', 'IN_PROGRESS', 'CANCELED', 'REMOVED'];
    expect(abortDecision(failed50, statuses)).toBeUndefined();
  });

  it('aborts at the threshold (>=), naming the numbers', () => {
    const d = abortDecision(failed50, ['SUCCEEDED', 'FAILED', 'FAILED', 'SUCCEEDED']);
    expect(d).toMatchObject({ failures: 2, executed: 4, percentage: 50 });
    expect(d!.comment).toBe('Job aborted by abortConfig: 2 of 4 executed things ended FAILED (50.0% >= 50%, minNumberOfExecutedThings 4).');
    expect(abortDecision(failed50, ['SUCCEEDED', 'FAILED', 'SUCCEEDED', 'SUCCEEDED'])).toBeUndefined();
  });

  it('ALL counts FAILED, REJECTED and TIMED_OUT; a specific type counts only itself; the first criterion met wins', () => {
    const statuses: ExecutionStatus[] = ['REJECTED', 'TIMED_OUT', 'SUCCEEDED'];
    const all = { failureType: 'ALL' as const, action: 'CANCEL' as const, thresholdPercentage: 60, minNumberOfExecutedThings: 1 };
    const timedOut = { failureType: 'TIMED_OUT' as const, action: 'CANCEL' as const, thresholdPercentage: 30, minNumberOfExecutedThings: 1 };
    expect(abortDecision([all], statuses)?.failures).toBe(2);
    expect(abortDecision([{ ...all, failureType: 'FAILED' }], statuses)).toBeUndefined();
    expect(abortDecision([timedOut, all], statuses)?.criterion).toBe(timedOut);
    expect(abortDecision([], statuses)).toBeUndefined();
    expect(abortDecision(undefined, statuses)).toBeUndefined();
  });
});

describe('retries', () => {
  it('retries FAILED and TIMED_OUT up to numberOfRetries; a criterion for the type wins over ALL; REJECTED is never retried', () => {
    const failedTwice = [{ failureType: 'FAILED' as const, numberOfRetries: 2 }];
    expect([0, 1, 2].map((a) => shouldRetry(failedTwice, 'FAILED', a))).toEqual([true, true, false]);
    expect(shouldRetry(failedTwice, 'TIMED_OUT', 0)).toBe(false);
    const mixed = [
      { failureType: 'ALL' as const, numberOfRetries: 5 },
      { failureType: 'TIMED_OUT' as const, numberOfRetries: 0 },
    ];
    expect(shouldRetry(mixed, 'TIMED_OUT', 0)).toBe(false);
    expect(shouldRetry(mixed, 'FAILED', 4)).toBe(true);
    expect(shouldRetry(mixed, 'REJECTED', 0)).toBe(false);
    expect(shouldRetry(undefined, 'FAILED', 0)).toBe(false);
  });
});

describe('timers', () => {
  it('sets, keeps and cancels the step timer; the in-progress timer starts with IN_PROGRESS', () => {
    const c = clockAt(T0);
    expect(inProgressDeadline(undefined, c)).toBeUndefined();
    expect(inProgressDeadline(3, c)).toBe(T0 + 3 * MINUTE);
    expect(nextStepDeadline(undefined, 2, c)).toBe(T0 + 2 * MINUTE);
    expect(nextStepDeadline(T0 + 5, undefined, c)).toBe(T0 + 5);
    expect(nextStepDeadline(T0 + 5, -1, c)).toBeUndefined();
  });

  it('times out at the earliest deadline and counts whole seconds to it', () => {
    const timers = { stepDeadline: T0 + 90_500, inProgressDeadline: T0 + 120_000 };
    expect(earliestDeadline(timers)).toBe(T0 + 90_500);
    expect(earliestDeadline({})).toBe(Infinity);
    expect(hasTimedOut(timers, clockAt(T0 + 90_499))).toBe(false);
    expect(hasTimedOut(timers, clockAt(T0 + 90_500))).toBe(true);
    expect(secondsBeforeTimedOut(timers, clockAt(T0))).toBe(91);
    expect(secondsBeforeTimedOut(timers, clockAt(T0 + 200_000))).toBe(0);
    expect(secondsBeforeTimedOut({}, clockAt(T0))).toBeUndefined();
  });
});
