// Registry and Jobs state machine behind the control plane and the device API: things, groups, jobs,
// executions, rollout rates, abort, timeouts, retries, CONTINUOUS targets.
// Semantics follow https://docs.aws.amazon.com/iot/latest/developerguide/jobs-api.html
import { randomUUID } from 'node:crypto';
import {
  TERMINAL_STATUSES,
  executionKey,
  type AbortCriteria,
  type ExecutionRecord,
  type ExecutionStatus,
  type GroupRecord,
  type JobRecord,
  type JobStore,
  type RetryCriteria,
  type RolloutConfig,
  type ThingRecord,
} from './job-store.ts';

/** Error kinds shared by both APIs; each API maps them to its own wire names. */
export type HubErrorKind =
  | 'ResourceNotFound'
  | 'ResourceAlreadyExists'
  | 'InvalidRequest'
  | 'InvalidStateTransition'
  | 'VersionMismatch'
  | 'LimitExceeded'
  | 'Conflict';

/** An expected API failure (a rejection), not a bug. */
export class HubApiError extends Error {
  readonly kind: HubErrorKind;
  readonly execution?: ExecutionRecord;
  constructor(kind: HubErrorKind, message: string, execution?: ExecutionRecord) {
    super(message);
    this.kind = kind;
    this.execution = execution;
  }
}

export interface EngineOptions {
  region: string;
  accountId: string;
  /** Length of a "minute" in ms for timeouts and rollout rates (60000 unless scaled for tests). */
  minuteMs: number;
  /** Publishes as the hub (notify / notify-next). */
  publish(topic: string, payload: string): Promise<void>;
  /** Turns a stored document into the JSON a device receives (presigned URL substitution). */
  renderDocument(job: JobRecord): Promise<unknown>;
  now?: () => number;
}

export interface CreateJobInput {
  jobId: string;
  targets: string[];
  document: string;
  description?: string;
  targetSelection?: 'SNAPSHOT' | 'CONTINUOUS';
  presignedUrlConfig?: { roleArn?: string; expiresInSec?: number };
  rollout?: RolloutConfig;
  abortCriteria?: AbortCriteria[];
  inProgressTimeoutInMinutes?: number;
  retryCriteria?: RetryCriteria[];
}

export type DeviceUpdateStatus = 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'REJECTED';

export interface DeviceUpdateInput {
  status: DeviceUpdateStatus;
  statusDetails?: Record<string, string>;
  expectedVersion?: number;
  executionNumber?: number;
  stepTimeoutInMinutes?: number;
}

const PENDING: ReadonlySet<ExecutionStatus> = new Set(['QUEUED', 'IN_PROGRESS']);
const MAX_RATE_PER_MINUTE = 1000;

function byQueueOrder(a: ExecutionRecord, b: ExecutionRecord): number {
  return a.seq - b.seq;
}

/** The registry plus the jobs state machine; mutations mark things whose notifications are due. */
export class JobEngine {
  private readonly store: JobStore;
  private readonly opts: EngineOptions;
  private readonly now: () => number;
  /** Non-terminal executions by key, for timers and pending lists. */
  private readonly active = new Map<string, ExecutionRecord>();
  private readonly dirtyThings = new Set<string>();
  /** What was last announced per thing, so notify / notify-next fire only on change. */
  private readonly lastPendingKey = new Map<string, string>();
  private readonly lastNextKey = new Map<string, string>();

  constructor(store: JobStore, opts: EngineOptions) {
    this.store = store;
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    for (const list of Object.values(store.state.executions)) {
      const latest = list[list.length - 1];
      if (latest && !TERMINAL_STATUSES.has(latest.status)) this.active.set(executionKey(latest.jobId, latest.thingName), latest);
    }
    for (const thing of this.thingsWithExecutions()) {
      this.lastPendingKey.set(thing, this.pendingKey(thing));
      this.lastNextKey.set(thing, this.nextKey(thing));
    }
  }

  get minuteMs(): number {
    return this.opts.minuteMs;
  }

  private get state() {
    return this.store.state;
  }

  // ---- ARNs ----------------------------------------------------------------------------------

  private arn(resource: string): string {
    return `arn:aws:iot:${this.opts.region}:${this.opts.accountId}:${resource}`;
  }

  thingArn(name: string): string {
    return this.arn(`thing/${name}`);
  }

  groupArn(name: string): string {
    return this.arn(`thinggroup/${name}`);
  }

  jobArn(id: string): string {
    return this.arn(`job/${id}`);
  }

  /** Parses a thing or thing-group ARN of this hub's account and region. */
  parseTargetArn(arn: string): { kind: 'thing' | 'thinggroup'; name: string } | null {
    const m = /^arn:aws:iot:([a-z0-9-]+):(\d{12}):(thing|thinggroup)\/([a-zA-Z0-9:_-]{1,128})$/.exec(arn);
    if (!m || m[1] !== this.opts.region || m[2] !== this.opts.accountId) return null;
    return { kind: m[3] as 'thing' | 'thinggroup', name: m[4]! };
  }

  // ---- things and groups ---------------------------------------------------------------------

  hasThing(name: string): boolean {
    return Object.hasOwn(this.state.things, name);
  }

  /** CreateThing: idempotent when the attributes are the same. */
  createThing(name: string, attributes: Record<string, string> = {}): ThingRecord {
    const existing = this.state.things[name];
    if (existing) {
      if (JSON.stringify(existing.attributes) !== JSON.stringify(attributes)) {
        throw new HubApiError('ResourceAlreadyExists', `Thing ${name} already exists with different attributes`);
      }
      return existing;
    }
    const thing: ThingRecord = {
      thingName: name,
      thingId: randomUUID(),
      thingArn: this.thingArn(name),
      attributes,
      version: 1,
      createdAt: this.now(),
    };
    this.state.things[name] = thing;
    return thing;
  }

  getThing(name: string): ThingRecord {
    const thing = this.state.things[name];
    if (!thing) throw new HubApiError('ResourceNotFound', `Thing ${name} cannot be found.`);
    return thing;
  }

  listThings(): ThingRecord[] {
    return Object.values(this.state.things).sort((a, b) => a.thingName.localeCompare(b.thingName));
  }

  createThingGroup(name: string, description: string | undefined, attributes: Record<string, string> = {}): GroupRecord {
    const existing = this.state.groups[name];
    if (existing) {
      if (existing.description !== description || JSON.stringify(existing.attributes) !== JSON.stringify(attributes)) {
        throw new HubApiError('ResourceAlreadyExists', `Thing group ${name} already exists with different properties`);
      }
      return existing;
    }
    const group: GroupRecord = {
      thingGroupName: name,
      thingGroupId: randomUUID(),
      thingGroupArn: this.groupArn(name),
      description,
      attributes,
      version: 1,
      createdAt: this.now(),
      things: [],
    };
    this.state.groups[name] = group;
    return group;
  }

  getGroup(name: string): GroupRecord {
    const group = this.state.groups[name];
    if (!group) throw new HubApiError('ResourceNotFound', `Thing group ${name} cannot be found.`);
    return group;
  }

  listGroups(): GroupRecord[] {
    return Object.values(this.state.groups).sort((a, b) => a.thingGroupName.localeCompare(b.thingGroupName));
  }

  /** AddThingToThingGroup; CONTINUOUS jobs targeting the group pick the thing up. */
  addThingToGroup(groupName: string, thingName: string): void {
    const group = this.getGroup(groupName);
    this.getThing(thingName);
    if (group.things.includes(thingName)) return;
    group.things.push(thingName);
    group.version += 1;
    for (const job of Object.values(this.state.jobs)) {
      if (job.status !== 'IN_PROGRESS' || job.targetSelection !== 'CONTINUOUS') continue;
      if (!job.targets.includes(group.thingGroupArn)) continue;
      if (job.pendingThings.includes(thingName) || this.state.executions[executionKey(job.jobId, thingName)]) continue;
      job.pendingThings.push(thingName);
      job.lastUpdatedAt = this.now();
      this.rollout(job);
    }
  }

  /** RemoveThingFromThingGroup; queued executions of CONTINUOUS jobs become REMOVED. */
  removeThingFromGroup(groupName: string, thingName: string): void {
    const group = this.getGroup(groupName);
    this.getThing(thingName);
    const at = group.things.indexOf(thingName);
    if (at < 0) return;
    group.things.splice(at, 1);
    group.version += 1;
    for (const job of Object.values(this.state.jobs)) {
      if (job.targetSelection !== 'CONTINUOUS' || !job.targets.includes(group.thingGroupArn)) continue;
      if (this.resolveTargets(job.targets).has(thingName)) continue; // still targeted another way
      job.pendingThings = job.pendingThings.filter((t) => t !== thingName);
      const exec = this.active.get(executionKey(job.jobId, thingName));
      if (exec && exec.status === 'QUEUED') this.finish(job, exec, 'REMOVED');
    }
  }

  private resolveTargets(targets: readonly string[]): Set<string> {
    const things = new Set<string>();
    for (const target of targets) {
      const parsed = this.parseTargetArn(target);
      if (!parsed) continue;
      if (parsed.kind === 'thing') {
        if (this.hasThing(parsed.name)) things.add(parsed.name);
      } else {
        for (const t of this.state.groups[parsed.name]?.things ?? []) things.add(t);
      }
    }
    return things;
  }

  // ---- jobs (control plane) ------------------------------------------------------------------

  /** CreateJob: resolves targets now (SNAPSHOT) and starts the rollout. */
  createJob(input: CreateJobInput): JobRecord {
    if (this.state.jobs[input.jobId]) {
      throw new HubApiError('ResourceAlreadyExists', `Job ${input.jobId} already exists.`);
    }
    const targetSelection = input.targetSelection ?? 'SNAPSHOT';
    for (const target of input.targets) {
      const parsed = this.parseTargetArn(target);
      if (!parsed) {
        throw new HubApiError(
          'InvalidRequest',
          `Target ${target} is not a thing or thing group ARN of account ${this.opts.accountId} in ${this.opts.region}.`,
        );
      }
      if (parsed.kind === 'thing' && !this.hasThing(parsed.name)) {
        throw new HubApiError('ResourceNotFound', `Thing ${parsed.name} cannot be found.`);
      }
      if (parsed.kind === 'thinggroup' && !this.state.groups[parsed.name]) {
        throw new HubApiError('ResourceNotFound', `Thing group ${parsed.name} cannot be found.`);
      }
      if (parsed.kind === 'thing' && targetSelection === 'CONTINUOUS') {
        throw new HubApiError('InvalidRequest', 'A CONTINUOUS job must target thing groups only, not a thing ARN.');
      }
    }
    const now = this.now();
    const rate = input.rollout?.exponentialRate?.baseRatePerMinute ?? input.rollout?.maximumPerMinute;
    const job: JobRecord = {
      jobId: input.jobId,
      jobArn: this.jobArn(input.jobId),
      description: input.description,
      document: input.document,
      targets: input.targets,
      targetSelection,
      status: 'IN_PROGRESS',
      presignedUrlConfig: input.presignedUrlConfig
        ? { roleArn: input.presignedUrlConfig.roleArn, expiresInSec: input.presignedUrlConfig.expiresInSec ?? 3600 }
        : undefined,
      rollout: input.rollout,
      abortCriteria: input.abortCriteria,
      inProgressTimeoutInMinutes: input.inProgressTimeoutInMinutes,
      retryCriteria: input.retryCriteria,
      createdAt: now,
      lastUpdatedAt: now,
      pendingThings: [...this.resolveTargets(input.targets)],
      rolloutWindowStart: now,
      rolloutSentInWindow: 0,
      rolloutRate: rate,
      rolloutNotifiedSinceIncrease: 0,
      rolloutSucceededSinceIncrease: 0,
    };
    this.state.jobs[job.jobId] = job;
    this.rollout(job);
    this.checkCompletion(job);
    return job;
  }

  getJob(jobId: string): JobRecord {
    const job = this.state.jobs[jobId];
    if (!job) throw new HubApiError('ResourceNotFound', `Job ${jobId} cannot be found.`);
    return job;
  }

  /** True when the job is COMPLETED or CANCELED. */
  isJobFinished(jobId: string): boolean {
    const status = this.state.jobs[jobId]?.status;
    return status === 'COMPLETED' || status === 'CANCELED';
  }

  listJobs(): JobRecord[] {
    return Object.values(this.state.jobs).sort((a, b) => a.createdAt - b.createdAt || a.jobId.localeCompare(b.jobId));
  }

  /** Latest execution of each thing for `jobId`, in queue order. */
  executionsForJob(jobId: string): ExecutionRecord[] {
    this.getJob(jobId);
    const out: ExecutionRecord[] = [];
    for (const [key, list] of Object.entries(this.state.executions)) {
      if (key.startsWith(`${jobId}/`) && list.length > 0) out.push(list[list.length - 1]!);
    }
    return out.sort(byQueueOrder);
  }

  /** Latest execution of each job for `thingName`. */
  executionsForThing(thingName: string): ExecutionRecord[] {
    this.getThing(thingName);
    const out: ExecutionRecord[] = [];
    for (const list of Object.values(this.state.executions)) {
      const latest = list[list.length - 1];
      if (latest && latest.thingName === thingName) out.push(latest);
    }
    return out.sort(byQueueOrder);
  }

  /** One execution: the latest, or the one with `executionNumber`. */
  getExecution(jobId: string, thingName: string, executionNumber?: number): ExecutionRecord {
    const list = this.state.executions[executionKey(jobId, thingName)];
    const exec =
      executionNumber === undefined ? list?.[list.length - 1] : list?.find((e) => e.executionNumber === executionNumber);
    if (!exec) {
      throw new HubApiError(
        'ResourceNotFound',
        `Job execution of job ${jobId} on thing ${thingName}${executionNumber === undefined ? '' : ` with executionNumber ${executionNumber}`} cannot be found.`,
      );
    }
    return exec;
  }

  /** Seconds until the earliest timer fires, or undefined without timers. */
  secondsBeforeTimedOut(exec: ExecutionRecord): number | undefined {
    const deadline = Math.min(exec.stepDeadline ?? Infinity, exec.inProgressDeadline ?? Infinity);
    if (!Number.isFinite(deadline)) return undefined;
    return Math.max(0, Math.ceil((deadline - this.now()) / 1000));
  }

  /** Counts of latest executions per status (DescribeJob jobProcessDetails). */
  processDetails(job: JobRecord): Record<ExecutionStatus, number> {
    const counts: Record<ExecutionStatus, number> = {
      QUEUED: 0,
      IN_PROGRESS: 0,
      SUCCEEDED: 0,
      FAILED: 0,
      TIMED_OUT: 0,
      REJECTED: 0,
      REMOVED: 0,
      CANCELED: 0,
    };
    for (const exec of this.executionsForJob(job.jobId)) counts[exec.status] += 1;
    return counts;
  }

  /** CancelJob: QUEUED executions are canceled; IN_PROGRESS ones too when `force`. */
  cancelJob(jobId: string, options: { force?: boolean; reasonCode?: string; comment?: string }): JobRecord {
    const job = this.getJob(jobId);
    if (job.status === 'COMPLETED') {
      throw new HubApiError('InvalidStateTransition', `Job ${jobId} is COMPLETED and cannot be canceled.`);
    }
    if (job.status === 'CANCELED' && !options.force) return job;
    this.cancel(job, options.force ?? false, options.reasonCode, options.comment);
    return job;
  }

  private cancel(job: JobRecord, force: boolean, reasonCode?: string, comment?: string): void {
    job.status = 'CANCELED';
    if (force) job.forceCanceled = true;
    if (reasonCode !== undefined) job.reasonCode = reasonCode;
    if (comment !== undefined) job.comment = comment;
    job.pendingThings = [];
    job.lastUpdatedAt = this.now();
    for (const exec of [...this.active.values()]) {
      if (exec.jobId !== job.jobId) continue;
      if (exec.status === 'QUEUED' || force) {
        if (force && exec.status === 'IN_PROGRESS') exec.forceCanceled = true;
        this.finish(job, exec, 'CANCELED');
      }
    }
  }

  /** DeleteJob: only a finished job unless `force`; executions disappear with it. */
  deleteJob(jobId: string, force: boolean): void {
    const job = this.getJob(jobId);
    const hasActive = [...this.active.values()].some((e) => e.jobId === jobId && e.status === 'IN_PROGRESS');
    if (job.status === 'IN_PROGRESS' && !force && hasActive) {
      throw new HubApiError('InvalidStateTransition', `Job ${jobId} has IN_PROGRESS executions; pass force to delete it.`);
    }
    for (const exec of [...this.active.values()]) {
      if (exec.jobId === jobId) this.finish(job, exec, 'REMOVED');
    }
    for (const key of Object.keys(this.state.executions)) {
      if (key.startsWith(`${jobId}/`)) delete this.state.executions[key];
    }
    delete this.state.jobs[jobId];
  }

  // ---- device API ----------------------------------------------------------------------------

  /** Pending executions of a thing: IN_PROGRESS first, then QUEUED, each in queue order. */
  pendingFor(thingName: string): { inProgress: ExecutionRecord[]; queued: ExecutionRecord[] } {
    const inProgress: ExecutionRecord[] = [];
    const queued: ExecutionRecord[] = [];
    for (const exec of this.active.values()) {
      if (exec.thingName !== thingName) continue;
      (exec.status === 'IN_PROGRESS' ? inProgress : queued).push(exec);
    }
    return { inProgress: inProgress.sort(byQueueOrder), queued: queued.sort(byQueueOrder) };
  }

  nextPending(thingName: string): ExecutionRecord | undefined {
    const { inProgress, queued } = this.pendingFor(thingName);
    return inProgress[0] ?? queued[0];
  }

  /** StartNextPendingJobExecution: the next execution, moved to IN_PROGRESS if it was QUEUED. */
  startNext(thingName: string, statusDetails: Record<string, string> | undefined, stepTimeoutInMinutes: number | undefined): ExecutionRecord | undefined {
    const exec = this.nextPending(thingName);
    if (!exec) return undefined;
    if (exec.status === 'QUEUED') {
      const job = this.getJob(exec.jobId);
      this.moveToInProgress(job, exec);
      if (statusDetails !== undefined) exec.statusDetails = statusDetails;
      exec.versionNumber += 1;
      exec.lastUpdatedAt = this.now();
      this.setStepTimer(exec, stepTimeoutInMinutes);
      this.dirtyThings.add(thingName);
    }
    return exec;
  }

  /** UpdateJobExecution from the device. */
  updateExecution(thingName: string, jobId: string, input: DeviceUpdateInput): ExecutionRecord {
    const job = this.state.jobs[jobId];
    const exec = job ? this.getExecution(jobId, thingName, input.executionNumber) : undefined;
    if (!job || !exec) throw new HubApiError('ResourceNotFound', `Job execution of job ${jobId} on thing ${thingName} cannot be found.`);
    if (input.expectedVersion !== undefined && input.expectedVersion !== exec.versionNumber) {
      throw new HubApiError(
        'VersionMismatch',
        `expectedVersion ${input.expectedVersion} does not match the current versionNumber ${exec.versionNumber} of the job execution.`,
        exec,
      );
    }
    if (TERMINAL_STATUSES.has(exec.status)) {
      throw new HubApiError(
        'InvalidStateTransition',
        `Job execution is in terminal state ${exec.status} and cannot be moved to ${input.status}.`,
        exec,
      );
    }
    const now = this.now();
    if (input.statusDetails !== undefined) exec.statusDetails = input.statusDetails;
    exec.versionNumber += 1;
    exec.lastUpdatedAt = now;
    if (input.status === 'IN_PROGRESS') {
      if (exec.status === 'QUEUED') this.moveToInProgress(job, exec);
      this.setStepTimer(exec, input.stepTimeoutInMinutes);
      this.dirtyThings.add(thingName);
    } else {
      if (exec.status === 'QUEUED') exec.startedAt ??= now;
      this.finish(job, exec, input.status, false);
    }
    return exec;
  }

  private moveToInProgress(job: JobRecord, exec: ExecutionRecord): void {
    const now = this.now();
    exec.status = 'IN_PROGRESS';
    exec.startedAt = now;
    if (job.inProgressTimeoutInMinutes !== undefined) {
      exec.inProgressDeadline = now + job.inProgressTimeoutInMinutes * this.opts.minuteMs;
    }
  }

  /** -1 cancels the step timer; a value sets a new one; undefined leaves it as it is. */
  private setStepTimer(exec: ExecutionRecord, minutes: number | undefined): void {
    if (minutes === undefined) return;
    if (minutes === -1) delete exec.stepDeadline;
    else exec.stepDeadline = this.now() + minutes * this.opts.minuteMs;
  }

  /** Moves an execution to a terminal state and runs the consequences (retry, abort, completion). */
  private finish(job: JobRecord, exec: ExecutionRecord, status: ExecutionStatus, bumpVersion = true): void {
    exec.status = status;
    if (bumpVersion) exec.versionNumber += 1;
    exec.lastUpdatedAt = this.now();
    delete exec.stepDeadline;
    delete exec.inProgressDeadline;
    this.active.delete(executionKey(exec.jobId, exec.thingName));
    this.dirtyThings.add(exec.thingName);
    if (status === 'SUCCEEDED' && job.rollout?.exponentialRate) {
      job.rolloutSucceededSinceIncrease += 1;
      this.maybeIncreaseRate(job);
    }
    if ((status === 'FAILED' || status === 'TIMED_OUT') && this.maybeRetry(job, exec)) return;
    this.checkAbort(job);
    this.checkCompletion(job);
  }

  /** Queues a new execution when jobExecutionsRetryConfig allows another attempt. */
  private maybeRetry(job: JobRecord, exec: ExecutionRecord): boolean {
    if (job.status !== 'IN_PROGRESS' || !job.retryCriteria) return false;
    const criterion =
      job.retryCriteria.find((c) => c.failureType === exec.status) ?? job.retryCriteria.find((c) => c.failureType === 'ALL');
    if (!criterion || exec.retryAttempt >= criterion.numberOfRetries) return false;
    this.createExecution(job, exec.thingName, exec.executionNumber + 1, exec.retryAttempt + 1);
    return true;
  }

  private createExecution(job: JobRecord, thingName: string, executionNumber: number, retryAttempt: number): ExecutionRecord {
    const now = this.now();
    const exec: ExecutionRecord = {
      jobId: job.jobId,
      thingName,
      executionNumber,
      status: 'QUEUED',
      statusDetails: {},
      queuedAt: now,
      lastUpdatedAt: now,
      versionNumber: 1,
      retryAttempt,
      seq: this.store.nextSeq(),
    };
    const key = executionKey(job.jobId, thingName);
    (this.state.executions[key] ??= []).push(exec);
    this.active.set(key, exec);
    this.dirtyThings.add(thingName);
    return exec;
  }

  // ---- rollout, abort, completion, timers ----------------------------------------------------

  private currentRate(job: JobRecord): number | undefined {
    if (!job.rollout) return undefined;
    if (job.rollout.exponentialRate) {
      return Math.min(job.rolloutRate ?? job.rollout.exponentialRate.baseRatePerMinute, job.rollout.maximumPerMinute ?? MAX_RATE_PER_MINUTE);
    }
    return job.rollout.maximumPerMinute;
  }

  private maybeIncreaseRate(job: JobRecord): void {
    const exp = job.rollout?.exponentialRate;
    if (!exp) return;
    const { numberOfNotifiedThings, numberOfSucceededThings } = exp.rateIncreaseCriteria;
    const hit =
      (numberOfNotifiedThings !== undefined && job.rolloutNotifiedSinceIncrease >= numberOfNotifiedThings) ||
      (numberOfSucceededThings !== undefined && job.rolloutSucceededSinceIncrease >= numberOfSucceededThings);
    if (!hit) return;
    job.rolloutRate = Math.min((job.rolloutRate ?? exp.baseRatePerMinute) * exp.incrementFactor, MAX_RATE_PER_MINUTE);
    job.rolloutNotifiedSinceIncrease = 0;
    job.rolloutSucceededSinceIncrease = 0;
  }

  /** Creates executions for pending targets, at most `rate` per minute window. */
  private rollout(job: JobRecord): void {
    if (job.status !== 'IN_PROGRESS' || job.pendingThings.length === 0) return;
    const now = this.now();
    const rate = this.currentRate(job);
    let allowance = Infinity;
    if (rate !== undefined) {
      if (now - job.rolloutWindowStart >= this.opts.minuteMs || job.rolloutWindowRate === undefined) {
        if (now - job.rolloutWindowStart >= this.opts.minuteMs) job.rolloutWindowStart = now;
        job.rolloutSentInWindow = 0;
        job.rolloutWindowRate = rate;
      }
      allowance = Math.max(0, Math.floor(job.rolloutWindowRate) - job.rolloutSentInWindow);
    }
    let sent = 0;
    while (sent < allowance && job.pendingThings.length > 0) {
      const thingName = job.pendingThings.shift()!;
      if (!this.hasThing(thingName)) continue;
      const previous = this.state.executions[executionKey(job.jobId, thingName)];
      const last = previous?.[previous.length - 1];
      if (last && !TERMINAL_STATUSES.has(last.status)) continue;
      this.createExecution(job, thingName, (last?.executionNumber ?? 0) + 1, 0);
      sent += 1;
    }
    if (sent > 0) {
      job.rolloutSentInWindow += sent;
      job.rolloutNotifiedSinceIncrease += sent;
      job.lastUpdatedAt = now;
      this.maybeIncreaseRate(job);
    }
  }

  /** abortConfig: cancel the job once a failure type passes its threshold. */
  private checkAbort(job: JobRecord): void {
    if (job.status !== 'IN_PROGRESS' || !job.abortCriteria || job.abortCriteria.length === 0) return;
    const latest = this.executionsForJob(job.jobId);
    const executed = latest.filter((e) => TERMINAL_STATUSES.has(e.status) && e.status !== 'CANCELED' && e.status !== 'REMOVED');
    for (const c of job.abortCriteria) {
      if (executed.length < c.minNumberOfExecutedThings) continue;
      const failures = executed.filter((e) =>
        c.failureType === 'ALL' ? e.status === 'FAILED' || e.status === 'REJECTED' || e.status === 'TIMED_OUT' : e.status === c.failureType,
      ).length;
      const percentage = (failures * 100) / executed.length;
      if (percentage >= c.thresholdPercentage) {
        this.cancel(
          job,
          false,
          'ABORTED',
          `Job aborted by abortConfig: ${failures} of ${executed.length} executed things ended ${c.failureType} (${percentage.toFixed(1)}% >= ${c.thresholdPercentage}%, minNumberOfExecutedThings ${c.minNumberOfExecutedThings}).`,
        );
        return;
      }
    }
  }

  private checkCompletion(job: JobRecord): void {
    if (job.status !== 'IN_PROGRESS' || job.targetSelection !== 'SNAPSHOT' || job.pendingThings.length > 0) return;
    for (const exec of this.active.values()) if (exec.jobId === job.jobId) return;
    job.status = 'COMPLETED';
    job.completedAt = this.now();
    job.lastUpdatedAt = job.completedAt;
  }

  /** Advances rollouts and fires expired timers; called periodically by the hub. */
  tick(): void {
    const now = this.now();
    for (const exec of [...this.active.values()]) {
      const deadline = Math.min(exec.stepDeadline ?? Infinity, exec.inProgressDeadline ?? Infinity);
      if (deadline <= now) {
        const job = this.state.jobs[exec.jobId];
        if (job) this.finish(job, exec, 'TIMED_OUT');
      }
    }
    for (const job of Object.values(this.state.jobs)) this.rollout(job);
  }

  /** True when something changed since the last `takeNotifications`. */
  hasPendingNotifications(): boolean {
    return this.dirtyThings.size > 0;
  }

  // ---- notifications -------------------------------------------------------------------------

  private thingsWithExecutions(): Set<string> {
    const things = new Set<string>();
    for (const exec of this.active.values()) things.add(exec.thingName);
    return things;
  }

  private pendingKey(thingName: string): string {
    const { inProgress, queued } = this.pendingFor(thingName);
    return [...inProgress, ...queued].map((e) => `${e.jobId}#${e.executionNumber}`).join(',');
  }

  private nextKey(thingName: string): string {
    const next = this.nextPending(thingName);
    return next ? `${next.jobId}#${next.executionNumber}` : '';
  }

  /**
   * Sends notify (pending list changed) and notify-next (next execution changed) for every thing
   * touched since the last call. https://docs.aws.amazon.com/iot/latest/developerguide/jobs-comm-notifications.html
   */
  async sendNotifications(): Promise<void> {
    const things = [...this.dirtyThings];
    this.dirtyThings.clear();
    const sends: Promise<void>[] = [];
    for (const thingName of things) {
      const pendingKey = this.pendingKey(thingName);
      const nextKey = this.nextKey(thingName);
      const timestamp = Math.floor(this.now() / 1000);
      const base = `$aws/things/${thingName}/jobs`;
      if (pendingKey !== (this.lastPendingKey.get(thingName) ?? '')) {
        this.lastPendingKey.set(thingName, pendingKey);
        const { inProgress, queued } = this.pendingFor(thingName);
        const jobs: Record<string, unknown[]> = {};
        if (inProgress.length > 0) jobs.IN_PROGRESS = inProgress.map(executionSummary);
        if (queued.length > 0) jobs.QUEUED = queued.map(executionSummary);
        sends.push(this.opts.publish(`${base}/notify`, JSON.stringify({ timestamp, jobs })));
      }
      if (nextKey !== (this.lastNextKey.get(thingName) ?? '')) {
        this.lastNextKey.set(thingName, nextKey);
        const next = this.nextPending(thingName);
        sends.push(
          (async () => {
            const payload: Record<string, unknown> = { timestamp };
            if (next) payload.execution = await this.executionData(next, true);
            await this.opts.publish(`${base}/notify-next`, JSON.stringify(payload));
          })(),
        );
      }
    }
    await Promise.all(sends);
  }

  /** JobExecution as the MQTT API returns it (timestamps in epoch seconds). */
  async executionData(exec: ExecutionRecord, includeJobDocument: boolean): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {
      jobId: exec.jobId,
      thingName: exec.thingName,
      status: exec.status,
      statusDetails: exec.statusDetails,
      queuedAt: Math.floor(exec.queuedAt / 1000),
      lastUpdatedAt: Math.floor(exec.lastUpdatedAt / 1000),
      versionNumber: exec.versionNumber,
      executionNumber: exec.executionNumber,
    };
    if (exec.startedAt !== undefined) out.startedAt = Math.floor(exec.startedAt / 1000);
    if (includeJobDocument) {
      const job = this.state.jobs[exec.jobId];
      if (job) out.jobDocument = await this.opts.renderDocument(job);
    }
    return out;
  }
}

/** JobExecutionSummary as the MQTT API returns it. */
export function executionSummary(exec: ExecutionRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    jobId: exec.jobId,
    queuedAt: Math.floor(exec.queuedAt / 1000),
    lastUpdatedAt: Math.floor(exec.lastUpdatedAt / 1000),
    executionNumber: exec.executionNumber,
    versionNumber: exec.versionNumber,
  };
  if (exec.startedAt !== undefined) out.startedAt = Math.floor(exec.startedAt / 1000);
  return out;
}
