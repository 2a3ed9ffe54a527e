// Job executions as the IoT Jobs MQTT API returns them (timestamps in epoch seconds).
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
import type { ExecutionRecord } from './job-store.ts';

const seconds = (ms: number) => Math.floor(ms / 1000);

/** JobExecutionSummary as the MQTT API returns it. */
export function executionSummary(exec: ExecutionRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    jobId: exec.jobId,
    queuedAt: seconds(exec.queuedAt),
    lastUpdatedAt: seconds(exec.lastUpdatedAt),
    executionNumber: exec.executionNumber,
    versionNumber: exec.versionNumber,
  };
  if (exec.startedAt !== undefined) out.startedAt = seconds(exec.startedAt);
  return out;
}

/** JobExecution as the MQTT API returns it, without the job document. */
export function executionWithoutDocument(exec: ExecutionRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    jobId: exec.jobId,
    thingName: exec.thingName,
    status: exec.status,
    statusDetails: exec.statusDetails,
    queuedAt: seconds(exec.queuedAt),
    lastUpdatedAt: seconds(exec.lastUpdatedAt),
    versionNumber: exec.versionNumber,
    executionNumber: exec.executionNumber,
  };
  if (exec.startedAt !== undefined) out.startedAt = seconds(exec.startedAt);
  return out;
}
