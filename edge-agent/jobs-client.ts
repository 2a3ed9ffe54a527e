// Device side of the AWS IoT Jobs MQTT API: start-next, get, describe, update and notify-next, with
// clientToken correlation and the execution's versionNumber tracked so every update sends the right
// expectedVersion. https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { TransportError, describeError } from '../common/errors.ts';
import { jobsTopics } from '../contracts/jobs-topics.ts';
import type { Logger } from './log.ts';
import type { MqttTransport } from './mqtt-connection.ts';

export type JobStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'REJECTED' | 'REMOVED' | 'CANCELED' | 'TIMED_OUT';
/** AWS caps statusDetails at string keys and string values. */
export type StatusDetails = Record<string, string>;

const JobExecutionSchema = z
  .object({
    jobId: z.string(),
    thingName: z.string().optional(),
    status: z.string(),
    statusDetails: z.record(z.string(), z.string()).nullish(),
    versionNumber: z.number().int(),
    executionNumber: z.number().int().optional(),
    jobDocument: z.unknown().optional(),
    queuedAt: z.number().optional(),
    startedAt: z.number().optional(),
    lastUpdatedAt: z.number().optional(),
  })
  .passthrough();
export type JobExecution = z.output<typeof JobExecutionSchema>;

const SummarySchema = z.object({ jobId: z.string(), versionNumber: z.number().int().optional(), executionNumber: z.number().int().optional() }).passthrough();
const ExecStateSchema = z.object({ status: z.string(), statusDetails: z.record(z.string(), z.string()).nullish(), versionNumber: z.number().int() }).passthrough();
const RejectedSchema = z
  .object({ code: z.string(), message: z.string().optional(), clientToken: z.string().optional(), executionState: ExecStateSchema.optional() })
  .passthrough();

export type UpdateResult =
  | { ok: true; versionNumber: number; status: string }
  | { ok: false; code: string; message: string };

/** The jobs service answered on a `/rejected` topic; `jobsCode` is its error code (e.g. TerminalStateReached). */
export class JobsRejectedError extends TransportError {
  constructor(
    what: string,
    readonly jobsCode: string,
    detail: string,
  ) {
    super(`jobs ${what} rejected: ${jobsCode} ${detail}`.trim(), { code: 'TRANSPORT_JOBS_REJECTED' });
  }
}

interface Pending {
  resolve: (v: { accepted: boolean; body: Record<string, unknown> }) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Client for one thing's jobs topics over an MqttTransport. */
export class JobsClient {
  private readonly topics;
  private readonly pending = new Map<string, Pending>();
  /**
   * Per job: the newest versionNumber seen and the execution it belongs to. Replies and notifications can
   * arrive out of order (the service answers requests concurrently), so a read never moves it backwards.
   */
  private readonly versions = new Map<string, { version: number; executionNumber: number | undefined }>();
  /** Terminal statuses this client has sent (in flight or accepted), so the agent never takes them for a cancel. */
  private readonly ownTerminal = new Map<string, JobStatus>();
  private notifyListener: ((execution: JobExecution | null) => void) | undefined;
  private counter = 0;
  private updateQueue: Promise<void> = Promise.resolve();
  private readonly tokenPrefix = randomBytes(4).toString('hex');

  constructor(
    private readonly transport: MqttTransport,
    thingName: string,
    private readonly log: Logger,
    private readonly timeoutMs: number,
  ) {
    this.topics = jobsTopics(thingName);
  }

  /** Subscribes to the response and notification topics (kept across reconnects by the transport). */
  async init(): Promise<void> {
    const t = this.topics;
    const filters: Array<[string, boolean]> = [
      [t.getAccepted, true],
      [t.getRejected, false],
      [t.startNextAccepted, true],
      [t.startNextRejected, false],
      [`${t.base}/+/get/accepted`, true],
      [`${t.base}/+/get/rejected`, false],
      [`${t.base}/+/update/accepted`, true],
      [`${t.base}/+/update/rejected`, false],
    ];
    for (const [filter, accepted] of filters) {
      await this.transport.subscribe(filter, (_topic, payload) => this.onResponse(payload, accepted));
    }
    await this.transport.subscribe(t.notifyNext, (_topic, payload) => this.handleNotifyNext(payload));
  }

  /** Called with the next pending execution (or null) whenever the service announces a change. */
  setNotifyListener(listener: (execution: JobExecution | null) => void): void {
    this.notifyListener = listener;
  }

  /** The versionNumber the next update will send as expectedVersion. */
  trackedVersion(jobId: string): number | undefined {
    return this.versions.get(jobId)?.version;
  }

  /** The terminal status this client sent for the job, if it sent one. */
  sentTerminal(jobId: string): JobStatus | undefined {
    return this.ownTerminal.get(jobId);
  }

  /** Forgets a finished job's bookkeeping. */
  forget(jobId: string): void {
    this.versions.delete(jobId);
    this.ownTerminal.delete(jobId);
  }

  /** Records a versionNumber read from the service; only a newer one (or a new execution) replaces it. */
  private observe(jobId: string, version: number, executionNumber?: number): void {
    const known = this.versions.get(jobId);
    const newExecution = executionNumber !== undefined && known?.executionNumber !== undefined && executionNumber !== known.executionNumber;
    if (newExecution) this.ownTerminal.delete(jobId); // a retry: our terminal status was for the previous execution
    if (!known || newExecution || version > known.version) {
      this.versions.set(jobId, { version, executionNumber: executionNumber ?? known?.executionNumber });
    }
  }

  /** StartNextPendingJobExecution: the in-progress or next queued execution, now IN_PROGRESS; null if none. */
  async startNext(statusDetails?: StatusDetails, stepTimeoutInMinutes?: number): Promise<JobExecution | null> {
    const body: Record<string, unknown> = {};
    if (statusDetails) body.statusDetails = statusDetails;
    if (stepTimeoutInMinutes !== undefined) body.stepTimeoutInMinutes = stepTimeoutInMinutes;
    const res = await this.request(this.topics.startNext, body);
    if (!res.accepted) throw this.rejectedError('start-next', res.body);
    return this.readExecution(res.body.execution);
  }

  /** DescribeJobExecution with the job document; null when the service no longer knows it. */
  async describe(jobId: string): Promise<JobExecution | null> {
    const res = await this.request(this.topics.describe(jobId), { includeJobDocument: true });
    if (!res.accepted) {
      const rej = RejectedSchema.safeParse(res.body);
      if (rej.success && rej.data.code === 'ResourceNotFound') return null;
      throw this.rejectedError(`describe ${jobId}`, res.body);
    }
    return this.readExecution(res.body.execution);
  }

  /** GetPendingJobExecutions: ids of in-progress and queued executions. */
  async getPending(): Promise<{ inProgress: string[]; queued: string[] }> {
    const res = await this.request(this.topics.get, {});
    if (!res.accepted) throw this.rejectedError('get', res.body);
    const list = (v: unknown) => z.array(SummarySchema).catch([]).parse(v ?? []).map((s) => s.jobId);
    return { inProgress: list(res.body.inProgressJobs), queued: list(res.body.queuedJobs) };
  }

  /**
   * UpdateJobExecution with expectedVersion = the tracked version. A VersionMismatch refreshes the
   * version from the rejection's executionState and retries once, since only this agent writes the
   * execution. `stepTimeoutInMinutes` (IN_PROGRESS only) restarts the service's step timer.
   */
  update(jobId: string, status: JobStatus, statusDetails: StatusDetails, stepTimeoutInMinutes?: number): Promise<UpdateResult> {
    // Serialised: two updates in flight would carry the same expectedVersion and one would be refused.
    const run = this.updateQueue.then(() => this.updateNow(jobId, status, statusDetails, stepTimeoutInMinutes));
    this.updateQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async updateNow(jobId: string, status: JobStatus, statusDetails: StatusDetails, stepTimeoutInMinutes?: number): Promise<UpdateResult> {
    if (status !== 'IN_PROGRESS') this.ownTerminal.set(jobId, status);
    for (let attempt = 0; ; attempt++) {
      const expectedVersion = this.versions.get(jobId)?.version;
      const body: Record<string, unknown> = { status, statusDetails, includeJobExecutionState: true };
      if (expectedVersion !== undefined) body.expectedVersion = expectedVersion;
      if (stepTimeoutInMinutes !== undefined && status === 'IN_PROGRESS') body.stepTimeoutInMinutes = stepTimeoutInMinutes;
      const res = await this.request(this.topics.update(jobId), body);
      if (res.accepted) {
        const state = ExecStateSchema.safeParse(res.body.executionState);
        if (state.success) this.observe(jobId, state.data.versionNumber);
        else if (expectedVersion !== undefined) this.observe(jobId, expectedVersion + 1);
        return { ok: true, versionNumber: this.trackedVersion(jobId) ?? 0, status: state.success ? state.data.status : status };
      }
      const rej = RejectedSchema.safeParse(res.body);
      const code = rej.success ? rej.data.code : 'Unknown';
      const message = rej.success ? (rej.data.message ?? '') : JSON.stringify(res.body);
      if (code === 'VersionMismatch' && attempt === 0) {
        this.log.warn('expectedVersion was stale; refreshing it', { jobId, expectedVersion, message });
        // The rejection carries the state at the moment our (serialised) update was refused: authoritative.
        const known = this.versions.get(jobId);
        if (rej.success && rej.data.executionState) this.versions.set(jobId, { version: rej.data.executionState.versionNumber, executionNumber: known?.executionNumber });
        else await this.describe(jobId);
        continue;
      }
      return { ok: false, code, message };
    }
  }

  private readExecution(value: unknown): JobExecution | null {
    if (value === undefined || value === null) return null;
    const exec = JobExecutionSchema.parse(value);
    this.observe(exec.jobId, exec.versionNumber, exec.executionNumber);
    return exec;
  }

  private rejectedError(what: string, body: Record<string, unknown>): JobsRejectedError {
    return new JobsRejectedError(what, String(body.code ?? 'Unknown'), String(body.message ?? ''));
  }

  private async request(topic: string, body: Record<string, unknown>): Promise<{ accepted: boolean; body: Record<string, unknown> }> {
    const clientToken = `${this.tokenPrefix}-${++this.counter}`;
    const result = new Promise<{ accepted: boolean; body: Record<string, unknown> }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(clientToken);
        reject(new TransportError(`no response on ${topic} within ${this.timeoutMs} ms`, { code: 'TRANSPORT_TIMEOUT' }));
      }, this.timeoutMs);
      this.pending.set(clientToken, { resolve, reject, timer });
    });
    try {
      await this.transport.publish(topic, JSON.stringify({ ...body, clientToken }), 1);
    } catch (err) {
      const p = this.pending.get(clientToken);
      if (p) {
        clearTimeout(p.timer);
        this.pending.delete(clientToken);
      }
      throw err;
    }
    return result;
  }

  private onResponse(payload: Buffer, accepted: boolean): void {
    let body: Record<string, unknown>;
    try {
      body = z.record(z.string(), z.unknown()).parse(JSON.parse(payload.toString('utf8')));
    } catch (err) {
      this.log.warn('unparseable jobs response', { error: describeError(err) });
      return;
    }
    const token = typeof body.clientToken === 'string' ? body.clientToken : undefined;
    const p = token ? this.pending.get(token) : undefined;
    if (!p || !token) return; // Another client's or a timed-out request.
    clearTimeout(p.timer);
    this.pending.delete(token);
    p.resolve({ accepted, body });
  }

  private handleNotifyNext(payload: Buffer): void {
    let execution: JobExecution | null = null;
    try {
      const body = z.record(z.string(), z.unknown()).parse(JSON.parse(payload.toString('utf8')));
      execution = this.readExecution(body.execution);
    } catch (err) {
      this.log.warn('unparseable notify-next', { error: describeError(err) });
      return;
    }
    this.notifyListener?.(execution);
  }
}
