// Durable hub state (things, groups, jobs, job executions) kept in memory and committed as one JSON
// snapshot with writeJsonAtomic. Commits are grouped: callers await `commit()` before replying.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { parseJsonWith } from '../common/validate.ts';

export const EXECUTION_STATUSES = [
  'QUEUED',
  'IN_PROGRESS',
  'SUCCEEDED',
  'FAILED',
  'TIMED_OUT',
  'REJECTED',
  'REMOVED',
  'CANCELED',
] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<ExecutionStatus> = new Set([
  'SUCCEEDED',
  'FAILED',
  'TIMED_OUT',
  'REJECTED',
  'REMOVED',
  'CANCELED',
]);

const DetailsSchema = z.record(z.string(), z.string());

const ThingSchema = z.object({
  thingName: z.string(),
  thingId: z.string(),
  thingArn: z.string(),
  attributes: DetailsSchema,
  version: z.number().int(),
  createdAt: z.number(),
});
export type ThingRecord = z.infer<typeof ThingSchema>;

const GroupSchema = z.object({
  thingGroupName: z.string(),
  thingGroupId: z.string(),
  thingGroupArn: z.string(),
  description: z.string().optional(),
  attributes: DetailsSchema,
  version: z.number().int(),
  createdAt: z.number(),
  /** Members in the order they were added (rollout order). */
  things: z.array(z.string()),
});
export type GroupRecord = z.infer<typeof GroupSchema>;

const RolloutSchema = z.object({
  maximumPerMinute: z.number().int().optional(),
  exponentialRate: z
    .object({
      baseRatePerMinute: z.number().int(),
      incrementFactor: z.number(),
      rateIncreaseCriteria: z.object({
        numberOfNotifiedThings: z.number().int().optional(),
        numberOfSucceededThings: z.number().int().optional(),
      }),
    })
    .optional(),
});
export type RolloutConfig = z.infer<typeof RolloutSchema>;

const AbortCriteriaSchema = z.object({
  failureType: z.enum(['FAILED', 'REJECTED', 'TIMED_OUT', 'ALL']),
  action: z.literal('CANCEL'),
  thresholdPercentage: z.number(),
  minNumberOfExecutedThings: z.number().int(),
});
export type AbortCriteria = z.infer<typeof AbortCriteriaSchema>;

const RetryCriteriaSchema = z.object({
  failureType: z.enum(['FAILED', 'TIMED_OUT', 'ALL']),
  numberOfRetries: z.number().int(),
});
export type RetryCriteria = z.infer<typeof RetryCriteriaSchema>;

const JobSchema = z.object({
  jobId: z.string(),
  jobArn: z.string(),
  description: z.string().optional(),
  document: z.string(),
  targets: z.array(z.string()),
  targetSelection: z.enum(['SNAPSHOT', 'CONTINUOUS']),
  status: z.enum(['IN_PROGRESS', 'CANCELED', 'COMPLETED', 'DELETION_IN_PROGRESS', 'SCHEDULED']),
  forceCanceled: z.boolean().optional(),
  reasonCode: z.string().optional(),
  comment: z.string().optional(),
  presignedUrlConfig: z.object({ roleArn: z.string().optional(), expiresInSec: z.number().int() }).optional(),
  rollout: RolloutSchema.optional(),
  abortCriteria: z.array(AbortCriteriaSchema).optional(),
  inProgressTimeoutInMinutes: z.number().int().optional(),
  retryCriteria: z.array(RetryCriteriaSchema).optional(),
  createdAt: z.number(),
  lastUpdatedAt: z.number(),
  completedAt: z.number().optional(),
  /** Things targeted but not yet given an execution (held back by the rollout rate). */
  pendingThings: z.array(z.string()),
  /** Rollout accounting: the current minute window and how many executions it created. */
  rolloutWindowStart: z.number(),
  rolloutSentInWindow: z.number().int(),
  rolloutRate: z.number().optional(),
  /** Rate in force for the current window (increases apply from the next window). */
  rolloutWindowRate: z.number().optional(),
  rolloutNotifiedSinceIncrease: z.number().int(),
  rolloutSucceededSinceIncrease: z.number().int(),
});
export type JobRecord = z.infer<typeof JobSchema>;

const ExecutionSchema = z.object({
  jobId: z.string(),
  thingName: z.string(),
  executionNumber: z.number().int(),
  status: z.enum(EXECUTION_STATUSES),
  statusDetails: DetailsSchema,
  queuedAt: z.number(),
  startedAt: z.number().optional(),
  lastUpdatedAt: z.number(),
  versionNumber: z.number().int(),
  retryAttempt: z.number().int(),
  forceCanceled: z.boolean().optional(),
  /** Absolute deadlines (ms since epoch) of the step and in-progress timers. */
  stepDeadline: z.number().optional(),
  inProgressDeadline: z.number().optional(),
  /** Global creation order; pending executions are offered to a device in this order. */
  seq: z.number().int(),
});
export type ExecutionRecord = z.infer<typeof ExecutionSchema>;

const StateSchema = z.object({
  format: z.literal('fleetlm/local-hub-state@1'),
  seq: z.number().int(),
  things: z.record(z.string(), ThingSchema),
  groups: z.record(z.string(), GroupSchema),
  jobs: z.record(z.string(), JobSchema),
  /** Every execution ever created, keyed `${jobId}/${thingName}`, oldest first. */
  executions: z.record(z.string(), z.array(ExecutionSchema)),
});
export type HubState = z.infer<typeof StateSchema>;

/** Key of a (job, thing) pair in `HubState.executions`. */
export function executionKey(jobId: string, thingName: string): string {
  return `${jobId}/${thingName}`;
}

function emptyState(): HubState {
  return { format: 'fleetlm/local-hub-state@1', seq: 0, things: {}, groups: {}, jobs: {}, executions: {} };
}

/** In-memory state with grouped, atomic snapshot commits to `{dir}/state.json`. */
export class JobStore {
  readonly file: string;
  state: HubState;
  private flushing: Promise<void> | null = null;
  private dirty = false;
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];

  private constructor(file: string, state: HubState) {
    this.file = file;
    this.state = state;
  }

  /** Loads `{dir}/state.json` (or starts empty). */
  static async open(dir: string): Promise<JobStore> {
    const file = path.join(dir, 'state.json');
    let text: string | null = null;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const state = text === null ? emptyState() : parseJsonWith(StateSchema, text, `hub state ${file}`);
    return new JobStore(file, state);
  }

  /** Next global sequence number (orders executions). */
  nextSeq(): number {
    this.state.seq += 1;
    return this.state.seq;
  }

  /** Resolves once every change made before the call is on disk. */
  commit(): Promise<void> {
    this.dirty = true;
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.flushing) this.flushing = this.flushLoop();
    return done;
  }

  private async flushLoop(): Promise<void> {
    while (this.dirty) {
      this.dirty = false;
      const waiters = this.waiters;
      this.waiters = [];
      try {
        // Compact JSON: the snapshot is rewritten on every commit, so its size is the cost.
        await writeFileAtomic(this.file, JSON.stringify(this.state));
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.flushing = null;
  }

  /** Waits for pending commits (used on shutdown). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}
