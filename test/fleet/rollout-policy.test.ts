// The one rollout policy: its schema (ranges from the CreateJob reference), its defaults, the abort minimum that
// keeps retries from being cancelled (issue 16), its warnings, and the mapping to CreateJob's configuration.
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ROLLOUT_POLICY,
  abortMinExecuted,
  canarySize,
  policyWarnings,
  resolveRolloutPolicy,
  toCreateJobConfig,
} from '../../fleet/rollout-policy.ts';
import { pickCanaryThings, canaryOutcome } from '../../fleet/canary-rollout.ts';
import type { JobProgress } from '../../fleet/fleet-status.ts';
import { ValidationError } from '../../common/errors.ts';

const ROLE = 'arn:aws:iam::1:role/r';

describe('resolveRolloutPolicy', () => {
  it('fills the documented defaults', () => {
    expect(DEFAULT_ROLLOUT_POLICY).toEqual({
      maxPerMinute: 100,
      canaryTimeoutMinutes: 120,
      abortThresholdPercent: 20,
      timeoutMinutes: 30,
      retries: 0,
      presignExpiresInSec: 3600,
      targetSelection: 'SNAPSHOT',
    });
    expect(resolveRolloutPolicy({ retries: 2, canaryPercent: undefined })).toEqual({ ...DEFAULT_ROLLOUT_POLICY, retries: 2 });
  });

  it('refuses what CreateJob refuses, naming the field', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ maxPerMinute: 1001 }, /maxPerMinute/],
      [{ maxPerMinute: 1.5 }, /maxPerMinute/],
      [{ abortThresholdPercent: 0 }, /abortThresholdPercent/],
      [{ abortThresholdPercent: 7.000000000000001 }, /abortThresholdPercent: at most 2 decimals/],
      [{ timeoutMinutes: 10081 }, /timeoutMinutes/],
      [{ retries: 11 }, /retries/],
      [{ presignExpiresInSec: 59 }, /presignExpiresInSec/],
      [{ canaryPercent: 101 }, /canaryPercent/],
      [{ exponentialRate: { baseRatePerMinute: 10, incrementFactor: 1.05, increaseAfterNotified: 5 } }, /incrementFactor/],
      [{ exponentialRate: { baseRatePerMinute: 10, incrementFactor: 2 } }, /increaseAfterNotified or increaseAfterSucceeded/],
      [{ abortFailedPercent: 10 }, /abortFailedPercent|Unrecognized/i],
    ];
    for (const [input, message] of bad) {
      expect(() => resolveRolloutPolicy(input)).toThrow(ValidationError);
      expect(() => resolveRolloutPolicy(input)).toThrow(message);
    }
  });
});

describe('abort minimum and retries (issue 16)', () => {
  it('aborts from the first device without retries', () => {
    expect(abortMinExecuted(DEFAULT_ROLLOUT_POLICY)).toBe(1);
  });

  it('with retries, waits until one device alone cannot reach the threshold', () => {
    for (const [threshold, min] of [[20, 6], [10, 11], [7, 15], [100, 2], [33.33, 4]] as const) {
      const p = resolveRolloutPolicy({ retries: 2, abortThresholdPercent: threshold });
      expect(abortMinExecuted(p)).toBe(min);
      // The property the minimum exists for: one failing device among `min` executed stays under the threshold.
      expect((1 / min) * 100).toBeLessThan(threshold);
      expect(policyWarnings(p)).toEqual([]);
    }
  });

  it('keeps an explicit minimum, and warns when it lets one device cancel the retries', () => {
    const p = resolveRolloutPolicy({ retries: 3, abortMinExecuted: 2 });
    expect(abortMinExecuted(p)).toBe(2);
    expect(policyWarnings(p)).toEqual([expect.stringMatching(/retries 3 .* one device's failure \(1 of 2\) .* raise the minimum to 6/)]);
    expect(policyWarnings(resolveRolloutPolicy({ retries: 3, abortMinExecuted: 6 }))).toEqual([]);
  });

  it('warns when the canary may time out before its attempts have', () => {
    expect(policyWarnings(resolveRolloutPolicy({ canaryPercent: 5, timeoutMinutes: 60, retries: 2, canaryTimeoutMinutes: 90 }))).toEqual([
      expect.stringMatching(/canary timeout 90 min is shorter than 3 attempt\(s\) of 60 min/),
    ]);
  });
});

describe('toCreateJobConfig', () => {
  it('maps the defaults to a constant rate, one ALL abort criterion, a timeout and presigned URLs', () => {
    expect(toCreateJobConfig(DEFAULT_ROLLOUT_POLICY, ROLE)).toEqual({
      targetSelection: 'SNAPSHOT',
      jobExecutionsRolloutConfig: { maximumPerMinute: 100 },
      abortConfig: { criteriaList: [{ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 20, minNumberOfExecutedThings: 1 }] },
      timeoutConfig: { inProgressTimeoutInMinutes: 30 },
      presignedUrlConfig: { roleArn: ROLE, expiresInSec: 3600 },
    });
  });

  it('maps an exponential rate, retries and the retry-safe abort minimum', () => {
    const p = resolveRolloutPolicy({
      exponentialRate: { baseRatePerMinute: 10, incrementFactor: 2, increaseAfterNotified: 20 },
      abortThresholdPercent: 10,
      retries: 2,
      timeoutMinutes: 60,
      targetSelection: 'CONTINUOUS',
    });
    const c = toCreateJobConfig(p, ROLE);
    expect(c.jobExecutionsRolloutConfig).toEqual({
      maximumPerMinute: 100,
      exponentialRate: { baseRatePerMinute: 10, incrementFactor: 2, rateIncreaseCriteria: { numberOfNotifiedThings: 20 } },
    });
    expect(c.abortConfig!.criteriaList).toEqual([{ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 10, minNumberOfExecutedThings: 11 }]);
    expect(c.jobExecutionsRetryConfig!.criteriaList).toEqual([
      { failureType: 'FAILED', numberOfRetries: 2 },
      { failureType: 'TIMED_OUT', numberOfRetries: 2 },
    ]);
    expect(c.targetSelection).toBe('CONTINUOUS');
  });

  it('needs a presign role', () => {
    expect(() => toCreateJobConfig(DEFAULT_ROLLOUT_POLICY, '')).toThrow(/presign role ARN/);
  });
});

describe('canary size and choice', () => {
  it('rounds a share up to at least one device, exactly in hundredths of a percent', () => {
    const p = (canaryPercent: number) => resolveRolloutPolicy({ canaryPercent });
    expect(canarySize(p(5), 100)).toBe(5);
    expect(canarySize(p(5), 3)).toBe(1);
    expect(canarySize(p(33.33), 3)).toBe(1);
    expect(canarySize(p(50), 3)).toBe(2);
    expect(canarySize(p(100), 7)).toBe(7);
    expect(canarySize(DEFAULT_ROLLOUT_POLICY, 7)).toBeUndefined();
  });

  it('picks the first devices by name, so a rerun picks the same ones', () => {
    expect(pickCanaryThings(['pi-3', 'pi-1', 'pi-2'], resolveRolloutPolicy({ canaryPercent: 50 }))).toEqual(['pi-1', 'pi-2']);
  });
});

describe('canaryOutcome', () => {
  const progress = (status: string, devices: Array<[string, string]>): JobProgress => ({
    jobId: 'j-canary',
    status,
    counts: {},
    devices: devices.map(([thingName, s]) => ({ thingName, status: s, statusDetails: (s === 'FAILED' ? { reason: 'model failed to load' } : {}) as Record<string, string> })),
    done: false,
  });

  it('succeeds only when every canary device SUCCEEDED', () => {
    expect(canaryOutcome(progress('IN_PROGRESS', [['a', 'SUCCEEDED'], ['b', 'IN_PROGRESS']]), 2, 0)).toEqual({ state: 'pending' });
    expect(canaryOutcome(progress('IN_PROGRESS', [['a', 'SUCCEEDED']]), 2, 0)).toEqual({ state: 'pending' });
    expect(canaryOutcome(progress('COMPLETED', [['a', 'SUCCEEDED'], ['b', 'SUCCEEDED']]), 2, 0)).toEqual({ state: 'succeeded' });
  });

  it('fails on the first failed execution without retries, and only once the job ended with retries', () => {
    const oneFailed = progress('IN_PROGRESS', [['a', 'FAILED'], ['b', 'IN_PROGRESS']]);
    expect(canaryOutcome(oneFailed, 2, 0)).toEqual({ state: 'failed', reason: 'canary j-canary: a FAILED (model failed to load)' });
    expect(canaryOutcome(oneFailed, 2, 2)).toEqual({ state: 'pending' });
    expect(canaryOutcome(progress('CANCELED', [['a', 'FAILED'], ['b', 'CANCELED']]), 2, 2).state).toBe('failed');
    expect(canaryOutcome(progress('COMPLETED', [['a', 'TIMED_OUT'], ['b', 'SUCCEEDED']]), 2, 2).state).toBe('failed');
    expect(canaryOutcome(progress('CANCELED', []), 2, 0)).toEqual({ state: 'failed', reason: 'canary j-canary: job CANCELED' });
  });
});
