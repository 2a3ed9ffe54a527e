// How a watched rollout ended, as an exit code a pipeline can gate on: 0 every device succeeded, 3 the job
// failed, was aborted or canceled, 4 the watch timed out (1 usage errors and other failures, 2 bad input, as for
// every command: cli/exit-codes.ts).
import { FleetError, type OutcomeCode } from '../common/errors.ts';
import { formatAgo } from './fleet-inventory.ts';
import { getJobProgress, type JobProgress } from './fleet-status.ts';
import type { IoTClient } from '@aws-sdk/client-iot';

/** Exit codes of `rollout --watch`, `rollback --watch` and `status --watch` (docs/operator.md). */
export const WATCH_EXIT = { succeeded: 0, error: 1, usage: 1, invalid: 2, failed: 3, timedOut: 4 } as const;

/** A watched job that did not end in success; `exitCode` is what the CLI exits with. */
export class JobOutcomeError extends FleetError {
  constructor(
    code: OutcomeCode,
    message: string,
    readonly exitCode: number,
  ) {
    super(code, message);
  }
}

function counts(p: JobProgress): string {
  return Object.entries(p.counts)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** True when the job finished and every device that got it succeeded. */
export function jobSucceeded(p: JobProgress): boolean {
  return p.status === 'COMPLETED' && p.devices.length > 0 && p.devices.every((d) => d.status === 'SUCCEEDED');
}

/** Throws JobOutcomeError (exit 3) unless the finished job succeeded on every device. */
export function assertJobSucceeded(p: JobProgress): void {
  if (jobSucceeded(p)) return;
  const failed = p.devices.filter((d) => d.status !== 'SUCCEEDED').map((d) => `${d.thingName} ${d.status}${d.statusDetails.reason ? ` (${d.statusDetails.reason})` : ''}`);
  throw new JobOutcomeError(
    'OUTCOME_JOB_FAILED',
    `job ${p.jobId} ended ${p.status}${p.reasonCode ? ` (${p.reasonCode})` : ''}: ${counts(p) || 'no executions'}${failed.length ? `; ${failed.join(', ')}` : ''}`,
    WATCH_EXIT.failed,
  );
}

/** The devices that have not finished, with whether each is online: what a timed-out watch reports. */
export function describePending(p: JobProgress, now = Date.now()): string {
  const pending = p.devices.filter((d) => d.status === 'QUEUED' || d.status === 'IN_PROGRESS');
  if (pending.length === 0) return 'no device is pending';
  return pending
    .map((d) => {
      const state = d.online === null || d.online === undefined ? 'online state unknown' : d.online ? 'online' : d.lastSeen ? `offline, last seen ${formatAgo(d.lastSeen, now)}` : 'offline, never seen';
      const step = d.statusDetails.step ? ` at ${d.statusDetails.step}` : '';
      return `${d.thingName} ${d.status}${step} (${state})`;
    })
    .join(', ');
}

/** The error for a watch that ran out of time (exit 4), naming the devices that have not finished. */
export async function watchTimeoutError(iot: IoTClient, jobId: string, seconds: number): Promise<JobOutcomeError> {
  const p = await getJobProgress(iot, jobId, { details: true });
  return new JobOutcomeError(
    'OUTCOME_WATCH_TIMEOUT',
    `job ${jobId} not done after ${seconds} s (${p.status}, ${counts(p) || 'no executions yet'}): pending ${describePending(p)}`,
    WATCH_EXIT.timedOut,
  );
}
