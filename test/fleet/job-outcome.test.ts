// Exit codes of a watched rollout (fleet/job-outcome.ts) on hand-made job progress: success only when the job
// COMPLETED with every device SUCCEEDED; the pending list says which devices are offline.
import { describe, expect, it } from 'vitest';
import type { JobProgress } from '../../fleet/fleet-status.ts';
import { JobOutcomeError, WATCH_EXIT, assertJobSucceeded, describePending } from '../../fleet/job-outcome.ts';

function job(status: string, devices: Array<[string, string, Partial<JobProgress['devices'][number]>?]>, reasonCode?: string): JobProgress {
  const ds = devices.map(([thingName, s, extra]) => ({ thingName, status: s, statusDetails: {}, ...extra }));
  const counts: Record<string, number> = {};
  for (const d of ds) counts[d.status] = (counts[d.status] ?? 0) + 1;
  return { jobId: 'j1', status, reasonCode, counts, devices: ds, done: true };
}

function exitOf(p: JobProgress): number {
  try {
    assertJobSucceeded(p);
    return WATCH_EXIT.succeeded;
  } catch (err) {
    expect(err).toBeInstanceOf(JobOutcomeError);
    return (err as JobOutcomeError).exitCode;
  }
}

describe('watched rollout outcome', () => {
  it('is 0 only when the job completed and every device succeeded', () => {
    expect(exitOf(job('COMPLETED', [['a', 'SUCCEEDED'], ['b', 'SUCCEEDED']]))).toBe(0);
    expect(exitOf(job('COMPLETED', [['a', 'SUCCEEDED'], ['b', 'FAILED', { statusDetails: { reason: 'health check: 0.3 tokens/s' } }]]))).toBe(3);
    expect(exitOf(job('CANCELED', [['a', 'FAILED'], ['b', 'CANCELED']], 'ABORTED'))).toBe(3);
    expect(exitOf(job('COMPLETED', [['a', 'TIMED_OUT']]))).toBe(3);
    expect(exitOf(job('COMPLETED', []))).toBe(3);
  });

  it('names each failed device and the abort reason', () => {
    expect(() => assertJobSucceeded(job('CANCELED', [['a', 'FAILED', { statusDetails: { reason: 'bad signature' } }]], 'ABORTED'))).toThrow(
      'job j1 ended CANCELED (ABORTED): FAILED=1; a FAILED (bad signature)',
    );
  });

  it('lists pending devices with their connectivity', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    const p = job('IN_PROGRESS', [
      ['a', 'SUCCEEDED'],
      ['b', 'QUEUED', { online: false, lastSeen: now - 180_000 }],
      ['c', 'IN_PROGRESS', { online: true, statusDetails: { step: 'download' } }],
      ['d', 'QUEUED', { online: false, lastSeen: null }],
      ['e', 'QUEUED', { online: null }],
    ]);
    expect(describePending(p, now)).toBe(
      'b QUEUED (offline, last seen 3 min ago), c IN_PROGRESS at download (online), d QUEUED (offline, never seen), e QUEUED (online state unknown)',
    );
  });
});
