// Deployment history for operators: every fleetlm rollout job (all groups or one), newest first, with its
// outcome counts from DescribeJob's jobProcessDetails. Feeds `fleetlm jobs` and the console's jobs list.
import { DescribeJobCommand, type IoTClient } from '@aws-sdk/client-iot';
import { groupJobSummaries, parseDeployment } from './rollout.ts';

/** Execution counts of one job, by outcome. */
export interface OutcomeCounts {
  succeeded: number;
  failed: number;
  rejected: number;
  timedOut: number;
  canceled: number;
  removed: number;
  inProgress: number;
  queued: number;
}

/** One rollout job as the history shows it. */
export interface JobHistoryEntry {
  jobId: string;
  modelId: string;
  version: string;
  /** The group the rollout targeted (from its description), null for things-only rollouts. */
  group: string | null;
  /** For a canary job: the job id of its rollout (the job the rest of the group gets once the canary succeeded). */
  canaryOf: string | null;
  status: string;
  reasonCode: string | null;
  createdAt: string | null;
  completedAt: string | null;
  counts: OutcomeCounts;
  /** Executions created so far (every outcome). */
  total: number;
}

/** The fleetlm rollout jobs, newest first; `group` keeps one group's, `limit` the newest n. */
export async function listDeployments(iot: IoTClient, opts: { group?: string; limit?: number } = {}): Promise<JobHistoryEntry[]> {
  const summaries = await groupJobSummaries(iot, opts.group);
  summaries.sort((a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0));
  const out: JobHistoryEntry[] = [];
  for (const s of summaries) {
    if (opts.limit !== undefined && out.length >= opts.limit) break;
    if (!s.jobId) continue;
    const job = (await iot.send(new DescribeJobCommand({ jobId: s.jobId }))).job;
    const dep = parseDeployment(job?.description);
    if (!job || !dep || (opts.group && (dep.group ? dep.group !== opts.group : dep.canaryOf !== undefined))) continue;
    const d = job.jobProcessDetails ?? {};
    const counts: OutcomeCounts = {
      succeeded: d.numberOfSucceededThings ?? 0,
      failed: d.numberOfFailedThings ?? 0,
      rejected: d.numberOfRejectedThings ?? 0,
      timedOut: d.numberOfTimedOutThings ?? 0,
      canceled: d.numberOfCanceledThings ?? 0,
      removed: d.numberOfRemovedThings ?? 0,
      inProgress: d.numberOfInProgressThings ?? 0,
      queued: d.numberOfQueuedThings ?? 0,
    };
    out.push({
      jobId: s.jobId,
      modelId: dep.modelId,
      version: dep.version,
      group: dep.group ?? null,
      canaryOf: dep.canaryOf ?? null,
      status: job.status ?? 'UNKNOWN',
      reasonCode: job.reasonCode ?? null,
      createdAt: job.createdAt?.toISOString() ?? null,
      completedAt: job.completedAt?.toISOString() ?? null,
      counts,
      total: Object.values(counts).reduce((a, b) => a + b, 0),
    });
  }
  return out;
}
