// CreateJob reference ranges: the numbers a rollout sends, and the operator's percentages turned into them.
import { describe, expect, it } from 'vitest';
import { checkJobConfig, checkJobNumber, parsePercentage } from '../../fleet/job-limits.ts';
import { DEFAULT_ROLLOUT_POLICY, toCreateJobConfig } from '../../fleet/rollout-policy.ts';

const ROLE = 'arn:aws:iam::1:role/r';

describe('parsePercentage', () => {
  it('is exact to two decimals in every form an operator types', () => {
    expect(parsePercentage('7%', '--x')).toBe(7);
    expect(parsePercentage('0.07', '--x')).toBe(7);
    expect(parsePercentage('7', '--x')).toBe(7);
    expect(parsePercentage('10.99%', '--x')).toBe(10.99);
    expect(parsePercentage('0.1099', '--x')).toBe(10.99);
    expect(parsePercentage('100%', '--x')).toBe(100);
    // Every integer percentage and every hundredth stays what was typed (0.07 * 100 is 7.000000000000001 in floats).
    for (let h = 1; h <= 10_000; h += 7) {
      const text = `${(h / 100).toFixed(2)}%`;
      expect(parsePercentage(text, '--x')).toBe(Number((h / 100).toFixed(2)));
    }
  });

  it('refuses three decimals, zero, more than 100% and junk, naming the flag', () => {
    expect(() => parsePercentage('10.999%', '--abort-threshold')).toThrow(/--abort-threshold allows at most two decimals/);
    expect(() => parsePercentage('0.10999', '--abort-threshold')).toThrow(/two decimals/);
    expect(() => parsePercentage('0%', '--abort-threshold')).toThrow(/\(0%, 100%\]/);
    expect(() => parsePercentage('101%', '--abort-threshold')).toThrow(/\(0%, 100%\]/);
    expect(() => parsePercentage('seven', '--abort-threshold')).toThrow(/percentage such as 7%/);
  });
});

describe('checkJobConfig', () => {
  it('passes what the policy mapping builds from the defaults and from a canary with retries', () => {
    expect(() => toCreateJobConfig(DEFAULT_ROLLOUT_POLICY, ROLE)).not.toThrow();
    expect(() => toCreateJobConfig({ ...DEFAULT_ROLLOUT_POLICY, canaryPercent: 10, abortThresholdPercent: 7, retries: 3 }, ROLE)).not.toThrow();
  });

  it('refuses each number outside its reference range', () => {
    expect(() => checkJobNumber('abortCriteria.thresholdPercentage', 7.000000000000001)).toThrow(/two decimals.*7\.000000000000001/);
    expect(() => checkJobNumber('abortCriteria.thresholdPercentage', 0)).toThrow(/\(0, 100\]/);
    expect(() => checkJobNumber('exponentialRate.incrementFactor', 1.05)).toThrow(/\[1\.1, 5\]/);
    expect(() => checkJobNumber('exponentialRate.incrementFactor', 1.25)).toThrow(/one decimal/);
    expect(() => checkJobNumber('presignedUrlConfig.expiresInSec', 3601)).toThrow(/\[60, 3600\]/);
    expect(() => checkJobNumber('timeoutConfig.inProgressTimeoutInMinutes', 10081)).toThrow(/\[1, 10080\]/);
    expect(() => checkJobNumber('retryCriteria.numberOfRetries', 11)).toThrow(/\[0, 10\]/);
    expect(() => checkJobNumber('jobExecutionsRolloutConfig.maximumPerMinute', 2.5)).toThrow(/integer/);
    expect(() => checkJobConfig({ abortConfig: { criteriaList: [{ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 10.999, minNumberOfExecutedThings: 1 }] } })).toThrow(
      /thresholdPercentage/,
    );
    expect(() => toCreateJobConfig({ ...DEFAULT_ROLLOUT_POLICY, abortThresholdPercent: 0.07 * 100 }, ROLE)).toThrow(/two decimals/);
  });
});
