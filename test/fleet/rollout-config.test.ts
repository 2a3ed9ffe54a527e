// Mapping operator flags to CreateJob settings, job ids, and the rollback choice.
import { describe, expect, it } from 'vitest';
import { DEFAULT_ROLLOUT, jobConfig, makeJobId, parseDeployment, describeDeployment, parsePercent, pickRollbackTarget, type DeploymentRecord } from '../../fleet/rollout.ts';
import { isJobId } from '../../contracts/jobs-topics.ts';
import { ValidationError } from '../../common/errors.ts';

describe('parsePercent', () => {
  it('reads 5%, 0.05 and 5 as five percent', () => {
    expect(parsePercent('5%', '--canary')).toBeCloseTo(0.05);
    expect(parsePercent('0.05', '--canary')).toBeCloseTo(0.05);
    expect(parsePercent('5', '--canary')).toBeCloseTo(0.05);
    expect(parsePercent('100%', '--canary')).toBe(1);
  });
  it('rejects malformed and out-of-range values naming the flag', () => {
    for (const bad of ['0%', '101%', '-5%', 'five', '5%%', 'NaN', '']) {
      expect(() => parsePercent(bad, '--canary')).toThrow(ValidationError);
      expect(() => parsePercent(bad, '--canary')).toThrow(/--canary must be a percentage/);
    }
  });
});

describe('jobConfig', () => {
  it('turns a canary into an exponential rollout gated on the canary succeeding, and aborts from its size', () => {
    const c = jobConfig({ ...DEFAULT_ROLLOUT, canary: 0.05 }, 100, 'arn:aws:iam::1:role/r');
    expect(c.jobExecutionsRolloutConfig).toEqual({
      maximumPerMinute: 100,
      exponentialRate: { baseRatePerMinute: 5, incrementFactor: 5, rateIncreaseCriteria: { numberOfSucceededThings: 5 } },
    });
    expect(c.abortConfig!.criteriaList![0]).toEqual({ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 20, minNumberOfExecutedThings: 5 });
    expect(c.presignedUrlConfig).toEqual({ roleArn: 'arn:aws:iam::1:role/r', expiresInSec: 3600 });
    expect(c.timeoutConfig).toEqual({ inProgressTimeoutInMinutes: 30 });
    expect(c.jobExecutionsRetryConfig).toBeUndefined();
  });
  it('rounds a canary up to at least one device and sets retries for FAILED and TIMED_OUT', () => {
    const c = jobConfig({ ...DEFAULT_ROLLOUT, canary: 0.05, retries: 2 }, 3, 'arn:aws:iam::1:role/r');
    expect(c.jobExecutionsRolloutConfig!.exponentialRate!.baseRatePerMinute).toBe(1);
    expect(c.jobExecutionsRetryConfig!.criteriaList).toEqual([
      { failureType: 'FAILED', numberOfRetries: 2 },
      { failureType: 'TIMED_OUT', numberOfRetries: 2 },
    ]);
  });
  it('rejects values outside what AWS IoT accepts', () => {
    expect(() => jobConfig({ ...DEFAULT_ROLLOUT, maxPerMinute: 1001 }, 3, 'arn:x')).toThrow(/1\.\.1000/);
    expect(() => jobConfig({ ...DEFAULT_ROLLOUT, retries: 11 }, 3, 'arn:x')).toThrow(/0\.\.10/);
    expect(() => jobConfig({ ...DEFAULT_ROLLOUT, timeoutMinutes: 0 }, 3, 'arn:x')).toThrow(/timeout-minutes/);
    expect(() => jobConfig(DEFAULT_ROLLOUT, 3, '')).toThrow(/presign role ARN/);
  });
});

describe('job ids and descriptions', () => {
  it('makes valid IoT job ids from any valid model id and version', () => {
    expect(isJobId(makeJobId('tiny', '1.0.0-rc.1', 0))).toBe(true);
    expect(isJobId(makeJobId('a'.repeat(63), 'v'.repeat(63)))).toBe(true);
    expect(makeJobId('tiny', '1.0', 1)).not.toBe(makeJobId('tiny', '1.0', 2));
  });
  it('round-trips model, version and group through the description', () => {
    expect(parseDeployment(describeDeployment('tiny', '1.2', 'pis'))).toEqual({ modelId: 'tiny', version: '1.2', group: 'pis' });
    expect(parseDeployment('someone else\'s job')).toBeUndefined();
  });
});

describe('pickRollbackTarget', () => {
  const rec = (jobId: string, version: string, succeeded: number, failed: number, status = 'COMPLETED'): DeploymentRecord => ({
    jobId, modelId: 'tiny', version, status, succeeded, failed, inProgress: 0,
  });
  it('skips the current version and failed deployments, newest first', () => {
    const history = [rec('j4', '3', 0, 1, 'CANCELED'), rec('j3', '3', 0, 3), rec('j2', '2', 3, 0), rec('j1', '1', 3, 0)];
    const pick = pickRollbackTarget(history)!;
    expect(pick.current.jobId).toBe('j4');
    expect(pick.target.jobId).toBe('j2');
  });
  it('returns nothing when no earlier version succeeded', () => {
    expect(pickRollbackTarget([rec('j2', '2', 0, 3), rec('j1', '2', 3, 0)])).toBeUndefined();
    expect(pickRollbackTarget([])).toBeUndefined();
  });
});
