// Canary rollouts: a first job (`<id>-canary`) to the canary devices, and the rollout's own job (`<id>`) to the
// whole group only once every canary execution SUCCEEDED; a canary that fails or runs out of time stops the
// rollout, and the rest of the group is never notified (issue 14, fault 7). The CLI runs it end to end
// (runCanaryRollout); the pipeline runs the same steps from Lambdas with a Step Functions wait loop between them.
import type { IoTClient } from '@aws-sdk/client-iot';
import type { S3Client } from '@aws-sdk/client-s3';
import { ValidationError } from '../common/errors.ts';
import { getJobProgress, TERMINAL_JOB_STATUSES, type JobProgress } from './fleet-status.ts';
import type { FleetProfile } from './profile.ts';
import { canarySize, type RolloutPolicy } from './rollout-policy.ts';
import {
  cancelRollout,
  canaryJobId,
  createAgentRollout,
  createRollout,
  makeJobId,
  MAX_ROLLOUT_JOB_ID,
  parseDeployment,
  rolloutThings,
  splitSettings,
  type AgentRolloutRequest,
  type AgentRolloutResult,
  type RolloutRequest,
  type RolloutResult,
  type RolloutSettings,
} from './rollout.ts';

/** A started canary: which devices, under which job, for which rollout. */
export interface CanaryStart<R = RolloutResult> {
  /** The rollout's job id; the rest of the group gets the job of this id once the canary succeeded. */
  jobId: string;
  canaryJobId: string;
  canaryThings: string[];
  /** Devices the whole rollout reaches now (canary included). */
  targetCount: number;
  policy: RolloutPolicy;
  /** The canary job as created (absent when an existing canary job was picked up again). */
  canary?: R;
}

/** Where a canary stands: still running, every execution SUCCEEDED, or it failed (with why). */
export type CanaryOutcome = { state: 'pending' } | { state: 'succeeded' } | { state: 'failed'; reason: string };

/** The canary devices: the first `canarySize` of the rollout's devices by name, so a rerun picks the same ones. */
export function pickCanaryThings(things: readonly string[], policy: RolloutPolicy): string[] {
  const size = canarySize(policy, things.length);
  if (size === undefined) throw new ValidationError('the rollout policy has no canary (canaryPercent)');
  return [...things].sort().slice(0, size);
}

/**
 * Judges the canary job from its progress. Succeeded only when every canary device's execution SUCCEEDED.
 * Without retries the first failed execution decides; with retries the job must end first, because a failed
 * attempt may still be retried.
 */
export function canaryOutcome(p: JobProgress, expectedDevices: number, retries: number): CanaryOutcome {
  const failed = p.devices.filter((d) => ['FAILED', 'REJECTED', 'TIMED_OUT', 'REMOVED', 'CANCELED'].includes(d.status));
  const describe = () =>
    failed.map((d) => `${d.thingName} ${d.status}${d.statusDetails.reason ? ` (${d.statusDetails.reason})` : ''}`).join(', ') || `job ${p.status}${p.reasonCode ? ` (${p.reasonCode})` : ''}`;
  const succeeded = p.devices.filter((d) => d.status === 'SUCCEEDED').length;
  if (succeeded >= expectedDevices && failed.length === 0 && p.status !== 'CANCELED') return { state: 'succeeded' };
  if (TERMINAL_JOB_STATUSES.has(p.status)) return { state: 'failed', reason: `canary ${p.jobId}: ${describe()}` };
  if (failed.length > 0 && retries === 0) return { state: 'failed', reason: `canary ${p.jobId}: ${describe()}` };
  return { state: 'pending' };
}

/** What a canary needs from any rollout kind (model or agent): its targets, policy and job id, and how to make one job. */
export interface CanaryPlan<R> {
  group?: string;
  things?: string[];
  settings?: RolloutSettings;
  /** The rollout's job id (its canary job is `<jobId>-canary`). */
  jobId: string;
  /** Picks an existing canary job up again (a rerun with the same --job-id, a retried Lambda) when it is this rollout's. */
  resume: boolean;
  /** What is rolled out, for messages: `tiny@2`, `agent 1.4.0`. */
  label: string;
  /** True when an existing job's description says it is this rollout's canary. */
  isOwnCanary: (description: string | undefined) => boolean;
  /** Creates one job of this rollout: the canary (with canaryOf and canaryThings) or the rollout's own. */
  create: (job: { jobId: string; settings: RolloutSettings; canaryOf?: string; canaryThings?: string[] }) => Promise<R>;
}

/** Creates the canary job (`<id>-canary`) for the first devices of the rollout; with `resume`, picks an existing one of this rollout up again. */
export async function startCanaryWith<R>(iot: IoTClient, plan: CanaryPlan<R>): Promise<CanaryStart<R>> {
  const { policy } = splitSettings(plan.settings);
  if (policy.canaryPercent === undefined) throw new ValidationError('a canary rollout needs a canary share (--canary 5%)');
  const jobId = plan.jobId;
  if (jobId.length > MAX_ROLLOUT_JOB_ID) throw new ValidationError(`--job-id is ${jobId.length} characters; with a canary it may have at most ${MAX_ROLLOUT_JOB_ID} (the canary job is ${canaryJobId('<id>')})`);
  const things = await rolloutThings(iot, plan, policy);
  if (things.length === 0) throw new ValidationError(`a canary needs devices to pick from: ${plan.group ? `group ${plan.group} has none now` : 'no things named'}`);
  const canaryThings = pickCanaryThings(things, policy);
  const base = { jobId, canaryJobId: canaryJobId(jobId), canaryThings, targetCount: things.length, policy };
  const existing = plan.resume ? await getJobProgress(iot, base.canaryJobId).catch(() => undefined) : undefined;
  if (existing) {
    if (!plan.isOwnCanary(existing.description)) {
      throw new ValidationError(`job ${base.canaryJobId} exists and is not the canary of ${plan.label} for ${jobId}: pick another --job-id`);
    }
    return { ...base, canaryThings: existing.devices.map((d) => d.thingName).sort() };
  }
  const canary = await plan.create({ jobId: base.canaryJobId, settings: { ...plan.settings, canaryPercent: undefined, targetSelection: 'SNAPSHOT' }, canaryOf: jobId, canaryThings });
  return { ...base, canary };
}

/** The plan of a model rollout (fleet/rollout.ts createRollout for both jobs). */
export function modelCanaryPlan(iot: IoTClient, s3: S3Client, profile: FleetProfile, req: RolloutRequest): CanaryPlan<RolloutResult> {
  return {
    group: req.group,
    things: req.things,
    settings: req.settings,
    jobId: req.jobId ?? makeJobId(req.modelId, req.version),
    resume: req.jobId !== undefined,
    label: `${req.modelId}@${req.version}`,
    isOwnCanary: (description) => {
      const dep = parseDeployment(description);
      return dep?.modelId === req.modelId && dep.version === req.version && dep.canaryOf === (req.jobId ?? '');
    },
    create: (job) => createRollout(iot, s3, profile, { ...req, jobId: job.jobId, settings: job.settings }, { canaryOf: job.canaryOf, canaryThings: job.canaryThings }),
  };
}

/** Creates a model rollout's canary job (`<id>-canary`); with `req.jobId` given, picks an existing one of the same version up again. */
export async function startCanary(iot: IoTClient, s3: S3Client, profile: FleetProfile, req: RolloutRequest): Promise<CanaryStart<RolloutResult>> {
  return startCanaryWith(iot, modelCanaryPlan(iot, s3, profile, req));
}

/** Creates the rollout's own job (`<id>`) for the whole target, once the canary succeeded; canary devices already run the version and report SUCCEEDED at once. */
export async function releaseRest(iot: IoTClient, s3: S3Client, profile: FleetProfile, req: RolloutRequest, jobId: string): Promise<RolloutResult> {
  return createRollout(iot, s3, profile, { ...req, jobId, settings: { ...req.settings, canaryPercent: undefined } });
}

/** What a canary rollout came to: the canary's last progress and outcome, and the rollout's job when the canary succeeded. */
export interface CanaryRolloutResult<R = RolloutResult> extends CanaryStart<R> {
  canaryProgress: JobProgress;
  outcome: Exclude<CanaryOutcome, { state: 'pending' }>;
  /** Set when the canary did not end in time and its job was canceled. */
  timedOut?: boolean;
  main?: R;
}

/** How long to poll, and who hears about the canary. */
export interface CanaryWatchOptions<R> {
  intervalMs?: number;
  timeoutMs?: number;
  onCanaryStarted?: (s: CanaryStart<R>) => void;
  onCanaryProgress?: (p: JobProgress) => void;
}

/**
 * Runs a canary rollout of any kind: the canary job, a poll until its outcome is known (at most the policy's
 * canaryTimeoutMinutes, or `timeoutMs` when shorter), then the rollout's job, or nothing when the canary failed.
 * A canary that fails or times out has its job canceled so no queued canary device starts.
 */
export async function runCanaryWith<R>(iot: IoTClient, plan: CanaryPlan<R>, opts: CanaryWatchOptions<R> = {}): Promise<CanaryRolloutResult<R>> {
  const start = await startCanaryWith(iot, plan);
  opts.onCanaryStarted?.(start);
  const deadline = Date.now() + Math.min(start.policy.canaryTimeoutMinutes * 60_000, opts.timeoutMs ?? Number.POSITIVE_INFINITY);
  for (;;) {
    const p = await getJobProgress(iot, start.canaryJobId, { details: true });
    opts.onCanaryProgress?.(p);
    const outcome = canaryOutcome(p, start.canaryThings.length, start.policy.retries);
    if (outcome.state === 'succeeded') {
      const main = await plan.create({ jobId: start.jobId, settings: { ...plan.settings, canaryPercent: undefined } });
      return { ...start, canaryProgress: p, outcome, main };
    }
    if (outcome.state === 'failed') {
      if (!TERMINAL_JOB_STATUSES.has(p.status)) await cancelRollout(iot, start.canaryJobId, { comment: `canary failed: ${outcome.reason}`.slice(0, 2028) });
      return { ...start, canaryProgress: p, outcome };
    }
    if (Date.now() >= deadline) {
      await cancelRollout(iot, start.canaryJobId, { comment: 'canary did not finish in time' });
      return { ...start, canaryProgress: p, outcome: { state: 'failed', reason: `canary ${start.canaryJobId} did not finish in time` }, timedOut: true };
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1000));
  }
}

/** The plan of an agent update (fleet/rollout.ts createAgentRollout for both jobs). */
export function agentPlan(iot: IoTClient, profile: FleetProfile, req: AgentRolloutRequest & { jobId: string }, resume: boolean): CanaryPlan<AgentRolloutResult> {
  const version = req.packages[0]?.version ?? '?';
  return {
    group: req.group,
    things: req.things,
    settings: req.settings,
    jobId: req.jobId,
    resume,
    label: `agent ${version}`,
    isOwnCanary: (description) => description?.startsWith(`fleetlm update-agent ${version} `) === true && description.endsWith(`(canary of ${req.jobId})`),
    create: (job) => createAgentRollout(iot, profile, { ...req, jobId: job.jobId, settings: job.settings }, { canaryOf: job.canaryOf, canaryThings: job.canaryThings }),
  };
}

/** A model rollout with a canary (runCanaryWith over createRollout). */
export async function runCanaryRollout(
  iot: IoTClient,
  s3: S3Client,
  profile: FleetProfile,
  req: RolloutRequest,
  opts: CanaryWatchOptions<RolloutResult> = {},
): Promise<CanaryRolloutResult<RolloutResult>> {
  return runCanaryWith(iot, modelCanaryPlan(iot, s3, profile, req), opts);
}

/** Reads a job that may not exist; other failures propagate. */
async function progressIfAny(iot: IoTClient, jobId: string, details: boolean): Promise<JobProgress | undefined> {
  try {
    return await getJobProgress(iot, jobId, { details });
  } catch (err) {
    if (err instanceof ValidationError) return undefined;
    throw err;
  }
}

/** A rollout as `status` shows it: its own job and, when it had one, its canary job (`<id>-canary`). */
export async function rolloutProgress(iot: IoTClient, jobId: string, opts: { details?: boolean } = {}): Promise<{ main?: JobProgress; canary?: JobProgress }> {
  const details = opts.details ?? true;
  const [main, canary] = await Promise.all([progressIfAny(iot, jobId, details), canaryJobId(jobId).length > 64 ? undefined : progressIfAny(iot, canaryJobId(jobId), details)]);
  if (!main && !canary) throw new ValidationError(`job ${jobId} does not exist (nor a canary job ${canaryJobId(jobId)})`);
  return { ...(main ? { main } : {}), ...(canary ? { canary } : {}) };
}

/** Cancels a rollout: its job and its canary job, whichever exist and are still running. Returns the ids canceled. */
export async function cancelRolloutWithCanary(iot: IoTClient, jobId: string, opts: { force?: boolean; comment?: string } = {}): Promise<string[]> {
  const { main, canary } = await rolloutProgress(iot, jobId, { details: false });
  const canceled: string[] = [];
  for (const p of [canary, main]) {
    // --force may still stop IN_PROGRESS executions of a job already CANCELED; a COMPLETED job has none.
    if (!p || (opts.force ? p.status === 'COMPLETED' : TERMINAL_JOB_STATUSES.has(p.status))) continue;
    await cancelRollout(iot, p.jobId, opts);
    canceled.push(p.jobId);
  }
  if (canceled.length === 0) {
    const states = [canary, main].filter((p): p is JobProgress => p !== undefined).map((p) => `${p.jobId} ${p.status}`);
    throw new ValidationError(`nothing to cancel: ${states.join(', ')}`);
  }
  return canceled;
}
