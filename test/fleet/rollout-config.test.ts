// Mapping operator flags to CreateJob settings, job ids, and the rollback choice.
import { describe, expect, it } from 'vitest';
import { canaryJobId, makeJobId, parseDeployment, describeDeployment, pickRollbackTarget, type DeploymentRecord } from '../../fleet/rollout.ts';
import { isJobId } from '../../contracts/jobs-topics.ts';

describe('job ids and descriptions', () => {
  it('makes valid IoT job ids from any valid model id and version', () => {
    expect(isJobId(makeJobId('tiny', '1.0.0-rc.1', 0))).toBe(true);
    expect(isJobId(makeJobId('a'.repeat(63), 'v'.repeat(63)))).toBe(true);
    // Room for the canary job's suffix: <id>-canary is a valid job id too.
    expect(isJobId(canaryJobId(makeJobId('a'.repeat(63), 'v'.repeat(63))))).toBe(true);
    expect(makeJobId('tiny', '1.0', 1)).not.toBe(makeJobId('tiny', '1.0', 2));
  });
  it('round-trips model, version and group through the description', () => {
    expect(parseDeployment(describeDeployment('tiny', '1.2', 'pis'))).toEqual({ modelId: 'tiny', version: '1.2', group: 'pis' });
    expect(parseDeployment('someone else\'s job')).toBeUndefined();
    expect(parseDeployment(describeDeployment('tiny', '1.2', 'pis', 'fleetlm-tiny-1_2-x'))).toEqual({ modelId: 'tiny', version: '1.2', group: 'pis', canaryOf: 'fleetlm-tiny-1_2-x' });
    expect(parseDeployment(describeDeployment('tiny', '1.2', undefined, 'j'))).toEqual({ modelId: 'tiny', version: '1.2', group: undefined, canaryOf: 'j' });
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
