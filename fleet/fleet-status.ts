// Per-device progress of a rollout job, read through the IoT control plane
// (DescribeJob, ListJobExecutionsForJob, DescribeJobExecution) so it works on AWS and the local hub.
// https://docs.aws.amazon.com/iot/latest/apireference/API_ListJobExecutionsForJob.html
import {
  DescribeJobCommand,
  DescribeJobExecutionCommand,
  ListJobExecutionsForJobCommand,
  type IoTClient,
  type JobExecutionSummaryForJob,
} from '@aws-sdk/client-iot';
import { TransportError, ValidationError } from '../common/errors.ts';
import { formatOnline, readConnectivity, type Connectivity } from './fleet-inventory.ts';
import { parseDeployment } from './rollout.ts';

export const TERMINAL_EXECUTION_STATUSES = new Set(['SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT', 'CANCELED', 'REMOVED']);
export const TERMINAL_JOB_STATUSES = new Set(['COMPLETED', 'CANCELED', 'DELETION_IN_PROGRESS']);

export interface DeviceProgress {
  thingName: string;
  status: string;
  executionNumber?: number;
  retryAttempt?: number;
  lastUpdatedAt?: string;
  /** The agent's statusDetails (step, percent, reason, measured figures). */
  statusDetails: Record<string, string>;
  /** From fleet indexing's connectivity (with `details`): true online, false offline, null unknown. */
  online?: boolean | null;
  /** Epoch ms of the device's last connect/disconnect, when offline. */
  lastSeen?: number | null;
}

export interface JobProgress {
  jobId: string;
  status: string;
  modelId?: string;
  version?: string;
  description?: string;
  reasonCode?: string;
  comment?: string;
  createdAt?: string;
  completedAt?: string;
  counts: Record<string, number>;
  devices: DeviceProgress[];
  /** True once the job is terminal, or every known execution is. */
  done: boolean;
}

function thingFromArn(arn: string | undefined): string {
  return arn ? arn.slice(arn.lastIndexOf('/') + 1) : '?';
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(workers);
  return out;
}

/** Reads the job and every execution; `details` also fetches each execution's statusDetails. */
export async function getJobProgress(iot: IoTClient, jobId: string, opts: { details?: boolean } = {}): Promise<JobProgress> {
  let job;
  try {
    job = (await iot.send(new DescribeJobCommand({ jobId }))).job;
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'ResourceNotFoundException' || e.$metadata?.httpStatusCode === 404) throw new ValidationError(`job ${jobId} does not exist`);
    throw new TransportError(`DescribeJob ${jobId} failed: ${(err as Error).message}`, { cause: err });
  }
  if (!job) throw new TransportError(`DescribeJob ${jobId} returned no job`);
  const summaries: JobExecutionSummaryForJob[] = [];
  let nextToken: string | undefined;
  do {
    const page = await iot.send(new ListJobExecutionsForJobCommand({ jobId, nextToken, maxResults: 250 }));
    summaries.push(...(page.executionSummaries ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  const devices = await mapLimit(summaries, 8, async (s): Promise<DeviceProgress> => {
    const thingName = thingFromArn(s.thingArn);
    const summary = s.jobExecutionSummary ?? {};
    const base: DeviceProgress = {
      thingName,
      status: summary.status ?? 'UNKNOWN',
      executionNumber: summary.executionNumber,
      retryAttempt: summary.retryAttempt,
      lastUpdatedAt: summary.lastUpdatedAt?.toISOString(),
      statusDetails: {},
    };
    if (!opts.details) return base;
    try {
      const ex = (await iot.send(new DescribeJobExecutionCommand({ jobId, thingName }))).execution;
      return { ...base, status: ex?.status ?? base.status, statusDetails: ex?.statusDetails?.detailsMap ?? {} };
    } catch {
      return base;
    }
  });
  devices.sort((a, b) => a.thingName.localeCompare(b.thingName));
  if (opts.details && devices.length > 0) {
    // A QUEUED device that is offline will not pick the job up until it reconnects: say so.
    // Best effort: progress must not fail because connectivity cannot be read.
    const conn = await readConnectivity(iot).catch(() => ({ indexed: false, things: new Map<string, Connectivity>() }));
    for (const d of devices) {
      const c = conn.things.get(d.thingName);
      d.online = conn.indexed ? (c?.connected ?? null) : null;
      d.lastSeen = c?.connected === false ? (c.since ?? null) : null;
    }
  }
  const counts: Record<string, number> = {};
  for (const d of devices) counts[d.status] = (counts[d.status] ?? 0) + 1;
  const dep = parseDeployment(job.description);
  const status = job.status ?? 'UNKNOWN';
  const allTerminal = devices.length > 0 && devices.every((d) => TERMINAL_EXECUTION_STATUSES.has(d.status));
  return {
    jobId,
    status,
    modelId: dep?.modelId,
    version: dep?.version,
    description: job.description,
    reasonCode: job.reasonCode,
    comment: job.comment,
    createdAt: job.createdAt?.toISOString(),
    completedAt: job.completedAt?.toISOString(),
    counts,
    devices,
    done: TERMINAL_JOB_STATUSES.has(status) || (allTerminal && job.targetSelection !== 'CONTINUOUS'),
  };
}

/** Polls a job until it is done (or `timeoutMs` passes), calling `onUpdate` after every poll. */
export async function watchJob(
  iot: IoTClient,
  jobId: string,
  opts: { intervalMs?: number; timeoutMs?: number; details?: boolean; onUpdate?: (p: JobProgress) => void; signal?: AbortSignal } = {},
): Promise<JobProgress> {
  const deadline = Date.now() + (opts.timeoutMs ?? Number.POSITIVE_INFINITY);
  for (;;) {
    const p = await getJobProgress(iot, jobId, { details: opts.details ?? true });
    opts.onUpdate?.(p);
    if (p.done) return p;
    if (Date.now() >= deadline) throw new TransportError(`job ${jobId} not done after ${opts.timeoutMs} ms (status ${p.status}, ${JSON.stringify(p.counts)})`, { code: 'TRANSPORT_TIMEOUT' });
    if (opts.signal?.aborted) return p;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1000));
  }
}

/** One line per device, for humans. */
export function formatProgress(p: JobProgress): string {
  const head = `job ${p.jobId} ${p.status}${p.modelId ? ` ${p.modelId}@${p.version}` : ''}  ${Object.entries(p.counts)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}${p.reasonCode ? `  reason=${p.reasonCode}` : ''}`;
  const width = Math.max(6, ...p.devices.map((d) => d.thingName.length));
  const lines = p.devices.map((d) => {
    const det = d.statusDetails;
    const detail = Object.entries(det)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const offline = d.online === false && !TERMINAL_EXECUTION_STATUSES.has(d.status) ? `(${formatOnline({ online: false, lastSeen: d.lastSeen ?? null })})` : '';
    return [`  ${d.thingName.padEnd(width)}  ${d.status.padEnd(11)}`, detail, offline].filter(Boolean).join(' ').trimEnd();
  });
  return [head, ...lines].join('\n');
}
