// The local hub's IoT Jobs state machine behind the control plane and the device API: jobs, executions,
// CONTINUOUS targets, cancel and delete. The rollout policy (rate, abort, retry, timers) is pure and lives in
// rollout-policy.ts; things and groups in thing-registry.ts; notify / notify-next in job-notifications.ts.
// Semantics follow https://docs.aws.amazon.com/iot/latest/developerguide/jobs-api.html
import { HubApiError } from './hub-api-error.ts';
import { IotArns } from './iot-arns.ts';
import { executionWithoutDocument } from './execution-wire.ts';
import { jobDocumentProblem } from './job-document-limits.ts';
import { JobNotifier } from './job-notifications.ts';
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
import {
  abortDecision,
  afterNotified,
  afterSucceeded,
  hasTimedOut,
  inProgressDeadline,
  initialRolloutCounters,
  nextStepDeadline,
  rolloutAllowance,
  secondsBeforeTimedOut,
  shouldRetry,
  type JobsClock,
  type RolloutCounters,
} from './rollout-policy.ts';
import { ThingRegistry } from './thing-registry.ts';

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

function byQueueOrder(a: ExecutionRecord, b: ExecutionRecord): number {
  return a.seq - b.seq;
}

function countersOf(job: JobRecord): RolloutCounters {
  return {
    windowStart: job.rolloutWindowStart,
    sentInWindow: job.rolloutSentInWindow,
    rate: job.rolloutRate,
    windowRate: job.rolloutWindowRate,
    notifiedSinceIncrease: job.rolloutNotifiedSinceIncrease,
    succeededSinceIncrease: job.rolloutSucceededSinceIncrease,
  };
}

function setCounters(job: JobRecord, c: RolloutCounters): void {
  job.rolloutWindowStart = c.windowStart;
  job.rolloutSentInWindow = c.sentInWindow;
  job.rolloutRate = c.rate;
  job.rolloutWindowRate = c.windowRate;
  job.rolloutNotifiedSinceIncrease = c.notifiedSinceIncrease;
  job.rolloutSucceededSinceIncrease = c.succeededSinceIncrease;
}

/** The jobs state machine over the registry; mutations mark the things whose notifications are due. */
export class JobEngine {
  private readonly store: JobStore;
  private readonly opts: EngineOptions;
  private readonly now: () => number;
  private readonly clock: JobsClock;
  private readonly arns: IotArns;
  private readonly registry: ThingRegistry;
  private readonly notifier: JobNotifier;
  /** Non-terminal executions by key, for timers and pending lists. */
  private readonly active = new Map<string, ExecutionRecord>();

  constructor(store: JobStore, opts: EngineOptions) {
    this.store = store;
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.clock = { now: this.now, minuteMs: opts.minuteMs };
    this.arns = new IotArns(opts.region, opts.accountId);
    this.registry = new ThingRegistry(store.state, this.arns, this.now);
    this.notifier = new JobNotifier(this, { publish: opts.publish, now: this.now });
    for (const list of Object.values(store.state.executions)) {
      const latest = list[list.length - 1];
      if (latest && !TERMINAL_STATUSES.has(latest.status)) this.active.set(executionKey(latest.jobId, latest.thingName), latest);
    }
    this.notifier.prime(new Set([...this.active.values()].map((e) => e.thingName)));
  }

  get minuteMs(): number {
    return this.opts.minuteMs;
  }

  private get state() {
    return this.store.state;
  }

  // ---- ARNs, things and groups ---------------------------------------------------------------

  thingArn(name: string): string {
    return this.arns.thing(name);
  }

  groupArn(name: string): string {
    return this.arns.group(name);
  }

  jobArn(id: string): string {
    return this.arns.job(id);
  }

  /** Parses a thing or thing-group ARN of this hub's account and region. */
  parseTargetArn(arn: string): { kind: 'thing' | 'thinggroup'; name: string } | null {
    return this.arns.parseTarget(arn);
  }

  hasThing(name: string): boolean {
    return this.registry.hasThing(name);
  }

  /** CreateThing: idempotent when the attributes are the same. */
  createThing(name: string, attributes: Record<string, string> = {}): ThingRecord {
    return this.registry.createThing(name, attributes);
  }

  getThing(name: string): ThingRecord {
    return this.registry.getThing(name);
  }

  listThings(): ThingRecord[] {
    return this.registry.listThings();
  }

  createThingGroup(name: string, description: string | undefined, attributes: Record<string, string> = {}): GroupRecord {
    return this.registry.createThingGroup(name, description, attributes);
  }

  getGroup(name: string): GroupRecord {
    return this.registry.getGroup(name);
  }

  listGroups(): GroupRecord[] {
    return this.registry.listGroups();
  }

  /** AddThingToThingGroup; CONTINUOUS jobs targeting the group pick the thing up. */
  addThingToGroup(groupName: string, thingName: string): void {
    const group = this.registry.addThingToGroup(groupName, thingName);
    if (!group) return;
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
    const group = this.registry.removeThingFromGroup(groupName, thingName);
    if (!group) return;
    for (const job of Object.values(this.state.jobs)) {
      if (job.targetSelection !== 'CONTINUOUS' || !job.targets.includes(group.thingGroupArn)) continue;
      if (this.registry.resolveTargets(job.targets).has(thingName)) continue; // still targeted another way
      job.pendingThings = job.pendingThings.filter((t) => t !== thingName);
      const exec = this.active.get(executionKey(job.jobId, thingName));
      if (exec && exec.status === 'QUEUED') this.finish(job, exec, 'REMOVED');
    }
  }

  // ---- jobs (control plane) ------------------------------------------------------------------

  /** CreateJob: checks targets and document, resolves targets now (SNAPSHOT) and starts the rollout. */
  createJob(input: CreateJobInput): JobRecord {
    if (this.state.jobs[input.jobId]) {
      throw new HubApiError('ResourceAlreadyExists', `Job ${input.jobId} already exists.`);
    }
    // Nothing is stored that a device could not later be served (the control plane checks this too).
    const documentProblem = jobDocumentProblem(input.document);
    if (documentProblem) throw new HubApiError('InvalidRequest', documentProblem);
    const targetSelection = input.targetSelection ?? 'SNAPSHOT';
    for (const target of input.targets) {
      const parsed = this.arns.parseTarget(target);
      if (!parsed) {
        throw new HubApiError(
          'InvalidRequest',
          `Target ${target} is not a thing or thing group ARN of account ${this.opts.accountId} in ${this.opts.region}.`,
        );
      }
      if (parsed.kind === 'thing' && !this.registry.hasThing(parsed.name)) {
        throw new HubApiError('ResourceNotFound', `Thing ${parsed.name} cannot be found.`);
      }
      if (parsed.kind === 'thinggroup' && !this.registry.hasGroup(parsed.name)) {
        throw new HubApiError('ResourceNotFound', `Thing group ${parsed.name} cannot be found.`);
      }
      if (parsed.kind === 'thing' && targetSelection === 'CONTINUOUS') {
        throw new HubApiError('InvalidRequest', 'A CONTINUOUS job must target thing groups only, not a thing ARN.');
      }
    }
    const now = this.now();
    const counters = initialRolloutCounters(input.rollout, now);
    const job: JobRecord = {
      jobId: input.jobId,
      jobArn: this.arns.job(input.jobId),
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
      pendingThings: [...this.registry.resolveTargets(input.targets)],
      rolloutWindowStart: counters.windowStart,
      rolloutSentInWindow: counters.sentInWindow,
      rolloutRate: counters.rate,
      rolloutNotifiedSinceIncrease: counters.notifiedSinceIncrease,
      rolloutSucceededSinceIncrease: counters.succeededSinceIncrease,
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
    this.registry.getThing(thingName);
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
    return secondsBeforeTimedOut(exec, this.clock);
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
      this.notifier.touch(thingName);
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
      this.notifier.touch(thingName);
    } else {
      if (exec.status === 'QUEUED') exec.startedAt ??= now;
      this.finish(job, exec, input.status, false);
    }
    return exec;
  }

  private moveToInProgress(job: JobRecord, exec: ExecutionRecord): void {
    exec.status = 'IN_PROGRESS';
    exec.startedAt = this.now();
    const deadline = inProgressDeadline(job.inProgressTimeoutInMinutes, this.clock);
    if (deadline !== undefined) exec.inProgressDeadline = deadline;
  }

  private setStepTimer(exec: ExecutionRecord, minutes: number | undefined): void {
    const deadline = nextStepDeadline(exec.stepDeadline, minutes, this.clock);
    if (deadline === undefined) delete exec.stepDeadline;
    else exec.stepDeadline = deadline;
  }

  /** Moves an execution to a terminal state and runs the consequences (retry, abort, completion). */
  private finish(job: JobRecord, exec: ExecutionRecord, status: ExecutionStatus, bumpVersion = true): void {
    exec.status = status;
    if (bumpVersion) exec.versionNumber += 1;
    exec.lastUpdatedAt = this.now();
    delete exec.stepDeadline;
    delete exec.inProgressDeadline;
    this.active.delete(executionKey(exec.jobId, exec.thingName));
    this.notifier.touch(exec.thingName);
    if (status === 'SUCCEEDED') setCounters(job, afterSucceeded(job.rollout, countersOf(job)));
    if (job.status === 'IN_PROGRESS' && shouldRetry(job.retryCriteria, status, exec.retryAttempt)) {
      this.createExecution(job, exec.thingName, exec.executionNumber + 1, exec.retryAttempt + 1);
      return;
    }
    this.checkAbort(job);
    this.checkCompletion(job);
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
    this.notifier.touch(thingName);
    return exec;
  }

  // ---- rollout, abort, completion, timers ----------------------------------------------------

  /** Creates executions for pending targets, as many as the rollout policy allows now. */
  private rollout(job: JobRecord): void {
    if (job.status !== 'IN_PROGRESS' || job.pendingThings.length === 0) return;
    const { allowance, counters } = rolloutAllowance(job.rollout, countersOf(job), this.clock);
    setCounters(job, counters);
    let sent = 0;
    while (sent < allowance && job.pendingThings.length > 0) {
      const thingName = job.pendingThings.shift()!;
      if (!this.registry.hasThing(thingName)) continue;
      const previous = this.state.executions[executionKey(job.jobId, thingName)];
      const last = previous?.[previous.length - 1];
      if (last && !TERMINAL_STATUSES.has(last.status)) continue;
      this.createExecution(job, thingName, (last?.executionNumber ?? 0) + 1, 0);
      sent += 1;
    }
    if (sent > 0) {
      setCounters(job, afterNotified(job.rollout, countersOf(job), sent));
      job.lastUpdatedAt = this.now();
    }
  }

  /** abortConfig: cancel the job once a failure type passes its threshold. */
  private checkAbort(job: JobRecord): void {
    if (job.status !== 'IN_PROGRESS') return;
    const decision = abortDecision(job.abortCriteria, this.executionsForJob(job.jobId).map((e) => e.status));
    if (decision) this.cancel(job, false, 'ABORTED', decision.comment);
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
    for (const exec of [...this.active.values()]) {
      if (!hasTimedOut(exec, this.clock)) continue;
      const job = this.state.jobs[exec.jobId];
      if (job) this.finish(job, exec, 'TIMED_OUT');
    }
    for (const job of Object.values(this.state.jobs)) this.rollout(job);
  }

  // ---- notifications -------------------------------------------------------------------------

  /** True when something changed since the last `sendNotifications`. */
  hasPendingNotifications(): boolean {
    return this.notifier.hasPending();
  }

  /** Sends notify / notify-next for every thing touched since the last call. */
  sendNotifications(): Promise<void> {
    return this.notifier.send();
  }

  /** JobExecution as the MQTT API returns it (timestamps in epoch seconds). */
  async executionData(exec: ExecutionRecord, includeJobDocument: boolean): Promise<Record<string, unknown>> {
    const out = executionWithoutDocument(exec);
    if (includeJobDocument) {
      const job = this.state.jobs[exec.jobId];
      if (job) out.jobDocument = await this.opts.renderDocument(job);
    }
    return out;
  }
}
