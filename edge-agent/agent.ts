// The agent: wires MQTT, the jobs client, the install state machine, the model store, the local API and
// telemetry, and drives one job at a time: the job kind's phase handlers return events and the state
// machine's table (install-state-machine.ts NEXT) picks the next phase. Three kinds: deploy-model@1 (models),
// update-agent@1 (the agent replaces itself; see self-update/ and docs/agent.md "Self-update") and
// benchmark@1 (time a signed grid of layer files and upload a latency table; benchmark-runner.ts).
import { readFileSync, promises as fs } from 'node:fs';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { FleetError, TransportError, ValidationError, describeError } from '../common/errors.ts';
import { ANTI_ROLLBACK_CODES } from '../contracts/rollback-authorization.ts';
import { BENCHMARK_SCHEMA, parseBenchmarkDocument, type BenchmarkDocument } from '../contracts/benchmark-job.ts';
import {
  DEPLOY_MODEL_SCHEMA,
  UPDATE_AGENT_SCHEMA,
  parseDeployModelDocument,
  parseUpdateAgentDocument,
  type DeployModelDocument,
  type JobArtifact,
  type UpdateAgentDocument,
} from '../contracts/job-document.ts';
import { MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, parseManifestBytes, type Manifest } from '../contracts/manifest.ts';
import type { AgentConfig } from './config.ts';
import { checkFreeSpace, confinedPath, diskFullError, downloadFile, fetchSmall, isDiskFull, verifyFileOnDisk } from './downloader.ts';
import { SecurityFloors, checkSecurityVersion } from './anti-rollback.ts';
import { resolveApiToken } from './api-guard.ts';
import { HEALTH_CHECK_CODES, runHealthCheck } from './health-check.ts';
import { InferenceServer } from './inference-server.ts';
import { InferenceStats } from './inference-stats.ts';
import {
  InstallStateStore,
  NEXT,
  ON_RESTART,
  type RestartRule,
  type ActiveJob,
  type Outcome,
  type Phase,
  type PhaseHandlers,
  type PhaseResult,
  type RestartFailure,
} from './install-state-machine.ts';
import { JobsClient, JobsRejectedError, type JobExecution, type StatusDetails } from './jobs-client.ts';
import type { Logger } from './log.ts';
import { ModelHolder } from './model-holder.ts';
import type { ModelRuntime, ServedModel } from './model-runtime.ts';
import { ModelStore, refString, sameRef, type ModelRef } from './model-store.ts';
import type { MqttTransport } from './mqtt-connection.ts';
import { AGENT_UPDATE_FAILED, AgentUpdater, type UpdateStep } from './self-update/agent-updater.ts';
import type { LaunchContext } from './self-update/launch-context.ts';
import { readUpdateRecord, type UpdateRecord } from './self-update/update-record.ts';
import { TelemetryOutbox, TelemetryReporter, type RecoveryNote } from './telemetry.ts';
import { UrlPolicy, defaultAllowedHosts } from './url-policy.ts';
import { verifyInstalledVersion, verifyManifest } from './verifier.ts';
import { AGENT_VERSION } from './version.ts';

/** Update rejections meaning the service no longer wants this execution (canceled, removed, timed out). */
const CANCELED_CODES: ReadonlySet<string> = new Set(['InvalidStateTransition', 'ResourceNotFound', 'TerminalStateReached']);

/** Written by the agent beside the model files; no artifact may take these names. */
const DOWNLOAD_STATS_FILE = '.download-stats.json';
const RESERVED_NAMES: ReadonlySet<string> = new Set([MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, DOWNLOAD_STATS_FILE]);

/** AWS IoT caps statusDetails values; keep reasons well inside the limit. */
const MAX_DETAIL = 1000;

function details(d: Record<string, string | number | undefined>): StatusDetails {
  const out: StatusDetails = {};
  for (const [k, v] of Object.entries(d)) {
    if (v === undefined) continue;
    // The Jobs API refuses control characters in statusDetails values (multi-line error messages have them).
    const s = typeof v === 'number' ? String(Math.round(v * 100) / 100) : v.replace(/[\u0000-\u001f\u007f]+/g, ' ');
    out[k] = s.length > MAX_DETAIL ? `${s.slice(0, MAX_DETAIL - 1)}…` : s;
  }
  return out;
}

/** A validation message already names the rule and value; its zod cause would only add noise. */
function reasonOf(err: unknown): string {
  return err instanceof ValidationError ? err.message : describeError(err);
}

function failed(step: string, err: unknown, extra: Record<string, string | number | undefined> = {}): Outcome {
  const code = isDiskFull(err) ? 'VALIDATION_DISK_FULL' : err instanceof FleetError ? err.code : 'ERROR';
  return { status: 'FAILED', statusDetails: details({ step, reason: reasonOf(err), code, ...extra }) };
}

const STEP_OF: Readonly<Record<Phase, string>> = {
  received: 'validating',
  downloading: 'downloading',
  verifying: 'verifying',
  installing: 'installing',
  'health-checking': 'health-check',
  committing: 'committing',
  'rolling-back': 'rolling-back',
  reporting: 'reporting',
};

/** Phases after which the job's target is on disk, so a failure means rolling back to `previous`. */
const INSTALLED: ReadonlySet<Phase> = new Set(['installing', 'health-checking', 'committing', 'rolling-back']);

/** The outcome of a phase the agent died in: an interrupted health check, or a crash loop. */
function restartOutcome(job: ActiveJob, why: RestartFailure, crashes: number): Outcome {
  const rolledBackTo = INSTALLED.has(job.phase) ? refString(job.previous) : undefined;
  if (why === 'interrupted') {
    return {
      status: 'FAILED',
      statusDetails: details({
        step: 'health-check',
        reason: 'the agent restarted during the health check (the new model may be what stopped it)',
        code: HEALTH_CHECK_CODES.interrupted,
        rolledBackTo,
      }),
    };
  }
  return {
    status: 'FAILED',
    statusDetails: details({
      step: STEP_OF[job.phase],
      reason: `the agent crashed ${crashes} times in ${job.phase} of this job; giving up on it instead of restarting forever`,
      code: 'AGENT_CRASH_LOOP',
      rolledBackTo,
    }),
  };
}

export interface AgentDeps {
  config: AgentConfig;
  transport: MqttTransport;
  runtime: ModelRuntime;
  log: Logger;
  /** Test hook wiring: called when a phase starts running, on entry or on re-entry after a restart (main.ts uses it to crash on purpose). */
  onPhase?: (phase: Phase) => void;
  /** Set when the self-update launcher started this agent (agent home, running version); null or absent refuses agent updates. */
  launch?: LaunchContext | null;
  /** Asks the process to stop and exit so the supervisor restarts it through the launcher (after an agent update switched `current`). */
  requestRestart?: (reason: string) => void;
  /** Test hook wiring: called after each self-update install step (main.ts uses it to crash on purpose). */
  onUpdateStep?: (step: UpdateStep) => void;
  /** How to start the benchmark worker (the agent entry script run with --benchmark-worker); default: this process's own. */
  benchmarkWorker?: { entry: string; execArgv: string[] };
}

/** Where a job's bytes come from and how its manifest is checked: the same path for models and agent packages. */
interface Payload {
  manifest: { url: string; sha256: string; size: number };
  signature: { url: string };
  artifacts: JobArtifact[];
  /** Verifies manifest bytes and signature text against the job; throws ValidationError. */
  verify(manifestBytes: Uint8Array, signatureText: string): void;
}

/** Thrown by a handler once the agent has asked to be restarted: the job continues in the next process. */
class RestartingError extends FleetError {
  constructor(jobId: string) {
    super('AGENT_RESTARTING', `the agent is restarting to continue job ${jobId}`);
  }
}

/** A job kind: its phase handlers and how a restart re-enters each phase. */
interface JobKind {
  handlers: PhaseHandlers;
  onRestart: Readonly<Record<Phase, RestartRule>>;
}

/** One device agent. `start` brings everything up; `stop` shuts down cleanly. */
export class Agent {
  private readonly cfg: AgentConfig;
  private readonly log: Logger;
  private readonly transport: MqttTransport;
  private readonly runtime: ModelRuntime;
  private readonly store: ModelStore;
  private readonly holder = new ModelHolder();
  private readonly stats = new InferenceStats();
  private readonly jobs: JobsClient;
  private state!: InstallStateStore;
  /** Highest security version installed per model id (anti-rollback). */
  private floors!: SecurityFloors;
  private server!: InferenceServer;
  private telemetry!: TelemetryReporter;
  private outbox!: TelemetryOutbox;
  private publicKeyPem = '';
  private running: Promise<void> | null = null;
  private rerun = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  /** Aborted when the service cancels or removes the active job, or the agent stops. */
  private jobAbort = new AbortController();
  private readonly canceled = new Set<string>();
  /** When the last IN_PROGRESS update went out (heartbeats are sent only after a quiet `jobs.heartbeatMs`). */
  private lastProgressAt = 0;
  /** Jobs whose artifacts were hashed while streaming in this process (a restart forgets them). */
  private readonly hashedThisRun = new Set<string>();
  /** Phase handlers (and restart rules) per job kind, keyed by the job document's `schema`; deploy-model is the default. */
  private readonly kinds = new Map<string, JobKind>();
  /** What start-up had to repair (damaged state or pointer files), reported in telemetry. */
  private readonly recoveries: RecoveryNote[] = [];
  private readonly updater: AgentUpdater;
  /** Port the local API is bound to (useful when the config asked for port 0). */
  httpPort = 0;
  /** Hosts job documents may download from (every job kind's downloads go through it). */
  readonly urlPolicy: UrlPolicy;

  constructor(private readonly deps: AgentDeps) {
    this.cfg = deps.config;
    this.log = deps.log;
    this.transport = deps.transport;
    this.runtime = deps.runtime;
    this.store = new ModelStore(this.cfg.modelDir, this.cfg.models.keepVersions);
    this.jobs = new JobsClient(this.transport, this.cfg.thingName, this.log, this.cfg.mqtt.requestTimeoutMs);
    this.urlPolicy = new UrlPolicy(this.cfg.download.allowedHosts ?? defaultAllowedHosts(this.cfg.mqtt.host));
    this.kinds.set(DEPLOY_MODEL_SCHEMA, {
      handlers: {
        received: (job) => this.onReceived(job),
        downloading: (job) => this.onDownloading(job),
        verifying: (job) => this.onVerifying(job),
        installing: (job) => this.onInstalling(job),
        'health-checking': (job) => this.onHealthChecking(job),
        committing: (job) => this.onCommitting(job),
        'rolling-back': (job) => this.onRollingBack(job),
        reporting: (job) => this.onReporting(job),
      },
      onRestart: ON_RESTART,
    });
    this.updater = new AgentUpdater({ launch: deps.launch ?? null, log: this.log, onStep: deps.onUpdateStep });
    // The agent update spans a restart: installing ends in the new process (confirm) or the restored old one.
    this.registerJobKind(UPDATE_AGENT_SCHEMA, {
      handlers: {
        received: (job) => this.onReceivedAgentUpdate(job),
        downloading: (job) => this.onDownloading(job),
        verifying: (job) => this.onVerifying(job),
        installing: (job) => this.onInstallingAgent(job),
        'health-checking': (job) => this.onAgentConfirmed(job),
        committing: (job) => this.onCommittingAgent(job),
        'rolling-back': (job) => this.onRollingBackAgent(job),
        reporting: (job) => this.onReporting(job),
      },
      // `health-checking` only reports a confirmation already on disk: a restart there runs it again.
      onRestart: { 'health-checking': 'redo' },
    });
    // A benchmark downloads and verifies its signed grid like a model, times it in `installing` (nothing is
    // installed: the serving model stays), and reports; a restart while timing runs the timing again.
    const cleanStaging = async (job: ActiveJob): Promise<PhaseResult> => {
      await fs.rm(this.store.stagingDir(job.jobId), { recursive: true, force: true });
      return { event: 'ok' };
    };
    this.registerJobKind(BENCHMARK_SCHEMA, {
      handlers: {
        received: (job) => this.onReceivedBenchmark(job),
        downloading: (job) => this.onDownloading(job),
        verifying: (job) => this.onVerifying(job),
        installing: (job) => this.onBenchmarking(job),
        'health-checking': async () => ({ event: 'ok' }),
        committing: cleanStaging,
        'rolling-back': cleanStaging,
        reporting: (job) => this.onReporting(job),
      },
      onRestart: { 'health-checking': 'redo' },
    });
  }

  /**
   * Adds a job kind: jobs whose document has `schema` run through `kind.handlers` (the same table, state
   * record, crash-loop guard, cancel handling and reporting). `onRestart` overrides how a restart re-enters
   * some phases (a kind whose install restarts the agent on purpose). Call before `start`.
   */
  registerJobKind(schema: string, kind: { handlers: PhaseHandlers; onRestart?: Partial<Record<Phase, RestartRule>> }): void {
    if (this.kinds.has(schema)) throw new ValidationError(`job kind ${schema} is already registered`);
    this.kinds.set(schema, { handlers: kind.handlers, onRestart: { ...ON_RESTART, ...kind.onRestart } });
  }

  /** The deploy-model handlers, for a job kind that reuses some of them (e.g. its reporting phase). */
  get deployHandlers(): PhaseHandlers {
    return this.kinds.get(DEPLOY_MODEL_SCHEMA)!.handlers;
  }

  async start(): Promise<void> {
    try {
      this.publicKeyPem = readFileSync(this.cfg.fleetPublicKeyPath, 'utf8');
    } catch (err) {
      throw new ValidationError(`cannot read fleetPublicKeyPath ${this.cfg.fleetPublicKeyPath}: ${(err as Error).message}`);
    }
    await fs.mkdir(this.cfg.modelDir, { recursive: true });
    this.state = await InstallStateStore.open(this.cfg.stateDir);
    this.floors = await SecurityFloors.open(this.cfg.stateDir, this.log);
    if (this.state.recovery) this.noteRecovery(this.state.recovery);
    await this.recoverPointer();
    const restart = await this.state.restart(this.cfg.jobs.crashLoopLimit, restartOutcome, (job) => this.kindOf(job).onRestart);
    const active = restart?.job ?? null;
    if (restart) {
      const { job, crashed, diedIn, crashes, crashLoop } = restart;
      this.log.info('resuming job after restart', { jobId: job.jobId, diedIn, phase: job.phase, crashed, crashes, resumes: job.resumes });
      if (crashLoop) this.log.error('crash loop: giving up on the job', { jobId: job.jobId, phase: diedIn, crashes });
      // A rollback that keeps crashing is reported as it stands, but the pointer still goes back first.
      if (crashLoop && diedIn === 'rolling-back' && !this.isAgentUpdate(job)) await this.undoInstall(job);
    }
    await this.updater.tidy(active?.jobId ?? null, (jobId) => this.state.finished(jobId) !== undefined);
    // Decide what serves before anything listens: never an unchecked model.
    if (active?.phase === 'rolling-back') await this.store.setCurrent(active.previous);
    const serving = active?.phase === 'installing' ? active.previous : await this.store.current();
    if (serving) await this.loadServingOrFallback(serving, !active);
    // The serving model sets the security floor too (covers a lost security-versions.json).
    const servingRef = this.holder.current?.ref;
    if (servingRef) await this.floors.record(await this.readInstalledManifest(servingRef)).catch(() => undefined);

    this.server = new InferenceServer({
      host: this.cfg.http.host,
      port: this.cfg.http.port,
      maxConcurrent: this.cfg.http.maxConcurrent,
      apiToken: resolveApiToken(this.cfg.http),
      holder: this.holder,
      stats: this.stats,
      agentGauges: {
        modelRef: () => this.holder.current?.ref ?? null,
        mqttConnected: () => this.transport.connected,
        telemetryDropped: () => this.outbox?.dropped ?? 0,
      },
    });
    this.httpPort = await this.server.start();
    this.log.info('local API listening', { host: this.cfg.http.host, port: this.httpPort });

    this.outbox = await TelemetryOutbox.open(`${this.cfg.stateDir}/telemetry-outbox`, this.cfg.telemetry.bufferMaxMessages);
    this.telemetry = new TelemetryReporter({
      thingName: this.cfg.thingName,
      transport: this.transport,
      outbox: this.outbox,
      stats: this.stats,
      currentModel: () => this.holder.current?.ref ?? null,
      intervalMs: this.cfg.telemetry.intervalMs,
      cpuWatts: this.cfg.telemetry.cpuWatts,
      sysfsRoot: this.cfg.telemetry.sysfsRoot,
      log: this.log,
      executionProviders: this.cfg.runtime.executionProviders,
    });
    this.telemetry.start();
    void this.telemetry.emit('startup');
    if (this.recoveries.length > 0) void this.telemetry.emit('recovery', this.recoveries);

    this.jobs.setNotifyListener((exec) => {
      this.log.info('notify-next', { jobId: exec?.jobId ?? null });
      const active = this.state.active;
      // The next job is no longer ours: the active one may have been canceled or removed.
      if (active && exec?.jobId !== active.jobId) void this.checkStillWanted(active.jobId);
      if (exec) this.kick();
    });
    await this.jobs.init();
    // On every (re)connect ask for work: notifications sent while offline are gone.
    this.transport.on('connected', () => this.kick());
    this.transport.start();
    if (this.state.active) this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.abort.abort(new TransportError('agent stopping'));
    this.jobAbort.abort(new TransportError('agent stopping'));
    await this.running?.catch(() => {});
    // A clean stop is not a crash: the crash-loop guard must not count it.
    await this.state?.markCleanStop().catch((err) => this.log.warn('could not record the clean stop', { error: describeError(err) }));
    await this.telemetry?.stop();
    await this.server?.stop();
    await this.transport.stop();
    this.holder.swap(null);
  }

  private noteRecovery(r: RecoveryNote): void {
    this.log.warn('recovered a damaged file', { ...r });
    this.recoveries.push({ file: r.file, problem: r.problem.slice(0, 500), keptAs: r.keptAs, action: r.action });
  }

  /**
   * A damaged current.json (storage that drops writes on power loss) is kept aside and rebuilt from the
   * newest installed version whose files match its signed manifest. An install whose health check has not
   * passed never becomes current this way.
   */
  private async recoverPointer(): Promise<void> {
    const active = this.state.active;
    const unchecked = active && ['installing', 'health-checking', 'rolling-back'].includes(active.phase) && !sameRef(active.target, active.previous) ? [active.target] : [];
    const r = await this.store.recoverPointer(async (dir, ref) => {
      try {
        await verifyInstalledVersion(dir, ref, this.publicKeyPem);
        return true;
      } catch (err) {
        this.log.warn('installed version left out of the rebuilt pointer', { model: refString(ref), error: describeError(err) });
        return false;
      }
    }, unchecked);
    if (r) this.noteRecovery(r);
  }

  private async readInstalledManifest(ref: ModelRef): Promise<Manifest> {
    return parseManifestBytes(await fs.readFile(confinedPath(this.store.versionDir(ref), MANIFEST_FILE)));
  }

  private async loadServing(ref: ModelRef): Promise<boolean> {
    try {
      const model = await this.runtime.load(this.store.versionDir(ref), await this.readInstalledManifest(ref), ref);
      this.holder.swap(model);
      this.log.info('serving model', { model: refString(ref) });
      return true;
    } catch (err) {
      this.log.error('could not load the installed model', { model: refString(ref), error: describeError(err) });
      return false;
    }
  }

  /** At startup: serve `ref`, or else the newest older version that still loads (and point `current` at it). */
  private async loadServingOrFallback(ref: ModelRef, movePointer: boolean): Promise<void> {
    if (await this.loadServing(ref)) return;
    for (const older of await this.store.history()) {
      if (sameRef(older, ref) || !(await this.store.has(older))) continue;
      if (await this.loadServing(older)) {
        this.log.warn('fell back to an older installed version', { broken: refString(ref), serving: refString(older) });
        if (movePointer) await this.store.setCurrent(older);
        return;
      }
    }
    this.log.error('no installed model loads; the local API answers 503 until a deploy succeeds');
  }

  /** Runs the job loop unless it is running; a call while running makes it go round once more. */
  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = (async () => {
      do {
        this.rerun = false;
        try {
          await this.jobLoop();
        } catch (err) {
          if (err instanceof RestartingError) break;
          this.log.warn('job loop paused; retrying shortly', { error: describeError(err) });
          clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => this.kick(), 5000);
          this.retryTimer.unref();
        }
      } while (this.rerun && !this.stopped);
    })().finally(() => {
      this.running = null;
    });
  }

  private async jobLoop(): Promise<void> {
    let lastOffered: string | undefined;
    while (!this.stopped) {
      const active = this.state.active;
      if (active) {
        await this.drive(active);
        continue;
      }
      if (!this.transport.connected) return;
      const exec = await this.jobs.startNext(details({ step: 'starting' }), this.cfg.jobs.stepTimeoutInMinutes);
      if (!exec) return;
      const done = this.state.finished(exec.jobId, exec.executionNumber ?? null);
      if (done) {
        // Redelivery of a job this device already finished (its final update was lost): report again, never reinstall.
        if (lastOffered === exec.jobId) return;
        lastOffered = exec.jobId;
        this.log.info('duplicate delivery of a finished job; re-sending its outcome', { jobId: exec.jobId, status: done.outcome.status });
        const res = await this.jobs.update(exec.jobId, done.outcome.status, done.outcome.statusDetails);
        if (!res.ok) this.log.warn('re-sent outcome rejected', { jobId: exec.jobId, code: res.code });
        continue;
      }
      const document = exec.jobDocument !== undefined ? exec.jobDocument : (await this.jobs.describe(exec.jobId))?.jobDocument;
      this.log.info('job received', { jobId: exec.jobId });
      await this.state.begin(exec.jobId, document ?? null, await this.store.current(), exec.executionNumber ?? null);
    }
  }

  /**
   * Best-effort IN_PROGRESS update: the final status is what must not be lost, and it is persisted.
   * Each one restarts the service's step timer (stepTimeoutInMinutes), so it doubles as a heartbeat.
   */
  private async progress(jobId: string, d: Record<string, string | number | undefined>): Promise<void> {
    if (!this.transport.connected) return;
    this.lastProgressAt = Date.now();
    try {
      const res = await this.jobs.update(jobId, 'IN_PROGRESS', details(d), this.cfg.jobs.stepTimeoutInMinutes);
      if (!res.ok) {
        this.log.warn('progress update rejected', { jobId, code: res.code, message: res.message });
        if (CANCELED_CODES.has(res.code)) this.markCanceled(jobId, `${res.code}: ${res.message}`);
      }
    } catch (err) {
      this.log.debug('progress update not delivered', { jobId, error: describeError(err) });
    }
  }

  /** Asks the service whether the active job still stands; cancels local work when it does not. */
  private async checkStillWanted(jobId: string): Promise<void> {
    if (this.jobs.sentTerminal(jobId) !== undefined) return; // we ended it ourselves; nothing left to stop
    try {
      const exec = await this.jobs.describe(jobId);
      if (!exec) this.markCanceled(jobId, 'the job execution no longer exists');
      else if (!['QUEUED', 'IN_PROGRESS'].includes(exec.status)) this.markCanceled(jobId, `the job execution is ${exec.status}`);
    } catch (err) {
      if (err instanceof JobsRejectedError && CANCELED_CODES.has(err.jobsCode)) this.markCanceled(jobId, err.message);
      else this.log.debug('could not check the active job', { jobId, error: describeError(err) });
    }
  }

  /**
   * Runs a long step, sending a heartbeat update every `jobs.heartbeatMs` so the service's step timer
   * does not expire while the device is busy (and does expire when the device dies).
   */
  private async withHeartbeat<T>(jobId: string, step: string, fn: () => Promise<T>): Promise<T> {
    const timer = setInterval(() => {
      if (Date.now() - this.lastProgressAt >= this.cfg.jobs.heartbeatMs) void this.progress(jobId, { step, heartbeat: 'alive' });
    }, Math.max(50, Math.floor(this.cfg.jobs.heartbeatMs / 4)));
    timer.unref();
    try {
      return await fn();
    } finally {
      clearInterval(timer);
    }
  }

  private markCanceled(jobId: string, why: string): void {
    if (this.state.active?.jobId !== jobId || this.canceled.has(jobId)) return;
    const own = this.jobs.sentTerminal(jobId);
    if (own !== undefined) {
      // The execution ended because this agent ended it (the reply or notification just raced the update's answer).
      this.log.debug('job ended by this agent; not a cancel', { jobId, status: own, why });
      return;
    }
    this.canceled.add(jobId);
    this.log.warn('job canceled by the service; stopping its work', { jobId, why });
    this.jobAbort.abort(new ValidationError(`job ${jobId} was canceled by the service (${why})`, { code: 'VALIDATION_CANCELED' }));
  }

  /** Advances the active job by one phase: its kind's handler returns an event, the table picks the next phase. */
  private async drive(job: ActiveJob): Promise<void> {
    if (this.jobAbort.signal.aborted && !this.stopped) this.jobAbort = new AbortController();
    // Each time a phase starts running, also when a restart re-enters it (so a test can make it crash every time).
    this.deps.onPhase?.(job.phase);
    // A phase with a `canceled` edge stops when the service canceled the job; later ones finish normally
    // (the new model is then healthy or rolled back), so a cancel never leaves half an install behind.
    const result =
      NEXT[job.phase].canceled !== undefined && this.canceled.has(job.jobId)
        ? await this.canceledResult(job)
        : await this.kindOf(job).handlers[job.phase](job);
    const next = await this.state.advance(result);
    if (!next) {
      this.canceled.delete(job.jobId);
      this.jobs.forget(job.jobId);
      return;
    }
    this.log.info('install phase', { jobId: next.jobId, phase: next.phase, event: result.event, ...(result.outcome ? { status: result.outcome.status } : {}) });
  }

  /** The job's kind (its document's `schema`); deploy-model when the schema is unknown, so `received` rejects it. */
  private kindOf(job: ActiveJob): JobKind {
    const schema = typeof job.document === 'object' && job.document !== null ? (job.document as { schema?: unknown }).schema : undefined;
    return (typeof schema === 'string' ? this.kinds.get(schema) : undefined) ?? this.kinds.get(DEPLOY_MODEL_SCHEMA)!;
  }

  private async canceledResult(job: ActiveJob): Promise<PhaseResult> {
    await fs.rm(this.store.stagingDir(job.jobId), { recursive: true, force: true });
    return { event: 'canceled', outcome: { status: 'FAILED', statusDetails: details({ step: job.phase, reason: 'canceled by the service', code: 'CANCELED' }) } };
  }

  private document(job: ActiveJob): DeployModelDocument {
    return parseDeployModelDocument(job.document);
  }

  private isAgentUpdate(job: ActiveJob): boolean {
    return (job.document as { schema?: unknown } | null)?.schema === UPDATE_AGENT_SCHEMA;
  }

  /** The bytes a job downloads and how their manifest is verified, for every job kind. */
  private payload(job: ActiveJob): Payload {
    if ((job.document as { schema?: unknown } | null)?.schema === BENCHMARK_SCHEMA) {
      const doc = parseBenchmarkDocument(job.document);
      // Signed by the fleet key like a model; no security floor (the grid is never installed).
      return { ...doc, verify: (b, s) => void verifyManifest(doc, b, s, this.publicKeyPem) };
    }
    if (this.isAgentUpdate(job)) {
      const doc = parseUpdateAgentDocument(job.document);
      const ref = this.updater.selectPackage(doc);
      return { ...ref, artifacts: [ref.artifact], verify: (b, s) => void this.updater.verifyManifest(doc, ref, b, s, this.publicKeyPem) };
    }
    const doc = this.document(job);
    return {
      ...doc,
      verify: (b, s) => {
        const m = verifyManifest(doc, b, s, this.publicKeyPem);
        // Anti-rollback: an older security version needs the fleet key's signed authorization, naming this device, in the job.
        checkSecurityVersion(m, doc, this.floors.floor(m.modelId), this.publicKeyPem, { thingName: this.cfg.thingName, thingGroups: this.cfg.thingGroups });
      },
    };
  }

  private async onReceived(job: ActiveJob): Promise<PhaseResult> {
    let doc: DeployModelDocument;
    try {
      doc = this.document(job);
      const clash = doc.artifacts.find((a) => RESERVED_NAMES.has(a.name));
      if (clash) {
        throw new ValidationError(`artifact name ${clash.name} is reserved for the agent's own files (${[...RESERVED_NAMES].join(', ')})`);
      }
    } catch (err) {
      // A schema no registered kind handles: say which kinds this agent runs.
      const schema = (job.document as { schema?: unknown } | null)?.schema;
      const kinds = typeof schema === 'string' && !this.kinds.has(schema) ? [...this.kinds.keys()].join(', ') : undefined;
      return { event: 'failed', outcome: { status: 'REJECTED', statusDetails: details({ step: 'validating', reason: reasonOf(err), kinds }) } };
    }
    const target: ModelRef = { modelId: doc.modelId, version: doc.version };
    if (sameRef(this.holder.current?.ref, target)) {
      return {
        event: 'skip',
        target,
        outcome: { status: 'SUCCEEDED', statusDetails: details({ step: 'done', note: `${refString(target)} is already installed and serving` }) },
      };
    }
    return { event: 'ok', target };
  }

  /** A benchmark is refused when its document is invalid; the serving model stays the job's target. */
  private async onReceivedBenchmark(job: ActiveJob): Promise<PhaseResult> {
    try {
      const doc = parseBenchmarkDocument(job.document);
      const clash = doc.artifacts.find((a) => RESERVED_NAMES.has(a.name));
      if (clash) throw new ValidationError(`artifact name ${clash.name} is reserved for the agent's own files (${[...RESERVED_NAMES].join(', ')})`);
      // Checked before anything is downloaded or timed: an upload the device may not make fails now.
      this.urlPolicy.check(doc.upload.url, 'benchmark upload URL');
    } catch (err) {
      return { event: 'failed', outcome: { status: 'REJECTED', statusDetails: details({ step: 'validating', reason: reasonOf(err), code: err instanceof FleetError ? err.code : undefined }) } };
    }
    return { event: 'ok', target: job.previous };
  }

  /** Times the verified grid in a low-priority worker, uploads the table and reports a summary. */
  private async onBenchmarking(job: ActiveJob): Promise<PhaseResult> {
    const doc: BenchmarkDocument = parseBenchmarkDocument(job.document);
    await this.progress(job.jobId, { step: 'benchmarking', runId: doc.runId });
    try {
      const { runBenchmark } = await import('./benchmark-runner.ts');
      const r = await this.withHeartbeat(job.jobId, 'benchmarking', () =>
        runBenchmark({
          doc,
          dir: this.store.stagingDir(job.jobId),
          thingName: this.cfg.thingName,
          agentVersion: this.updater.runningVersion ?? AGENT_VERSION,
          sysfsRoot: this.cfg.telemetry.sysfsRoot,
          serving: () => ({ inFlight: this.stats.inFlight, lastActivityAt: this.stats.lastActivityAt }),
          urlPolicy: this.urlPolicy,
          signal: this.jobAbort.signal,
          log: this.log,
          worker: this.deps.benchmarkWorker,
          onProgress: (done, total) => void this.progress(job.jobId, { step: 'benchmarking', progress: `${done}/${total}` }),
        }),
      );
      this.log.info('benchmark uploaded', { jobId: job.jobId, layers: r.table.layers.length, heads: r.table.heads.length, complete: r.complete, dropped: r.dropped.length });
      return {
        event: 'ok',
        outcome: {
          status: 'SUCCEEDED',
          statusDetails: details({
            step: 'done',
            runId: doc.runId,
            layers: r.table.layers.length,
            heads: r.table.heads.length,
            complete: r.complete ? 'yes' : `no (time limit ${doc.timeLimitSec} s)`,
            dropped: r.dropped.length > 0 ? r.dropped.slice(0, 3).join('; ') : undefined,
            waitedForIdleMs: r.waitedForIdleMs,
            uploadedBytes: r.uploadedBytes,
            board: r.table.measuredOn?.board,
            onnxruntime: r.table.measuredOn?.onnxruntime,
          }),
        },
      };
    } catch (err) {
      if (this.stopped) throw err;
      if (this.canceled.has(job.jobId)) return { event: 'failed', outcome: (await this.canceledResult(job)).outcome };
      this.log.warn('benchmark failed', { jobId: job.jobId, error: describeError(err) });
      return { event: 'failed', outcome: failed('benchmarking', err) };
    }
  }

  private async onDownloading(job: ActiveJob): Promise<PhaseResult> {
    const doc = this.payload(job);
    const staging = this.store.stagingDir(job.jobId);
    const dl = this.cfg.download;
    try {
      const total = doc.artifacts.reduce((s, a) => s + a.size, 0) + doc.manifest.size;
      let onDisk = 0;
      for (const a of doc.artifacts) {
        if (a.size > dl.maxArtifactBytes) {
          throw new ValidationError(`artifact ${a.name} is ${a.size} bytes; maxArtifactBytes is ${dl.maxArtifactBytes}`, { code: 'VALIDATION_TOO_LARGE' });
        }
        const p = confinedPath(staging, a.name);
        onDisk += (await fs.stat(p).then((s) => s.size, () => 0)) || (await fs.stat(`${p}.part`).then((s) => s.size, () => 0));
      }
      await checkFreeSpace(this.cfg.modelDir, Math.max(0, total - onDisk), dl.reserveFreeBytes);
      await this.progress(job.jobId, { step: 'downloading', progress: '0%' });

      const common = {
        maxBytes: dl.maxArtifactBytes,
        retry: dl.retry,
        idleTimeoutMs: dl.idleTimeoutMs,
        throttleBytesPerSec: dl.throttleBytesPerSec,
        log: this.log,
        signal: this.jobAbort.signal,
        urlPolicy: this.urlPolicy,
      };
      // Heartbeats keep the step timer alive through retry backoffs, when no bytes (and no progress) move.
      await this.withHeartbeat(job.jobId, 'downloading', async () => {
        // Manifest and signature first: a bad signature fails before the big files move.
        const manifestPath = confinedPath(staging, MANIFEST_FILE);
        await downloadFile({ url: doc.manifest.url, destPath: manifestPath, expectedSize: doc.manifest.size, expectedSha256: doc.manifest.sha256 }, common);
        const sigText = await fetchSmall(doc.signature.url, 64 * 1024, common);
        doc.verify(await fs.readFile(manifestPath), sigText);
        await writeFileAtomic(confinedPath(staging, MANIFEST_SIGNATURE_FILE), sigText);
      });

      let done = doc.manifest.size;
      let lastReported = 0;
      let lastAt = 0;
      let resumedBytes = 0;
      let rangeRequests = 0;
      let fetched = 0;
      await this.withHeartbeat(job.jobId, 'downloading', async () => {
        for (const a of doc.artifacts) {
          const base = done;
          const r = await downloadFile(
            { url: a.url, destPath: confinedPath(staging, a.name), expectedSize: a.size, expectedSha256: a.sha256 },
            {
              ...common,
              onProgress: (n) => {
                const pct = Math.floor(((base + n) / total) * 100);
                const now = Date.now();
                // Every 10% (at most once a second), and a heartbeat for the step timer while bytes keep moving.
                if ((pct >= lastReported + 10 && now - lastAt >= 1000) || now - this.lastProgressAt >= this.cfg.jobs.heartbeatMs) {
                  lastReported = pct;
                  lastAt = now;
                  void this.progress(job.jobId, { step: 'downloading', progress: `${pct}%` });
                }
              },
            },
          );
          if (r.resumedFrom > 0) this.log.info('download resumed', { file: a.name, resumedFrom: r.resumedFrom, rangeRequests: r.rangeRequests });
          resumedBytes += r.resumedFrom;
          rangeRequests += r.rangeRequests;
          fetched += r.bytesFetched;
          done += a.size;
        }
      });
      this.log.info('download complete', { jobId: job.jobId, bytesFetched: fetched, resumedBytes, rangeRequests });
      await writeFileAtomic(confinedPath(staging, DOWNLOAD_STATS_FILE), JSON.stringify({ fetched, resumedBytes, rangeRequests }));
      this.hashedThisRun.add(job.jobId);
      return { event: 'ok' };
    } catch (err) {
      // Stopping: no event, the phase runs again after the restart (the download resumes).
      if (this.stopped) throw err;
      await fs.rm(staging, { recursive: true, force: true });
      if (this.canceled.has(job.jobId)) return this.canceledResult(job);
      const reported = isDiskFull(err) && !(err instanceof ValidationError) ? diskFullError(this.cfg.modelDir, err) : err;
      const verifyCodes: readonly string[] = ['VALIDATION_SIGNATURE', ...Object.values(ANTI_ROLLBACK_CODES)];
      const step = reported instanceof ValidationError && verifyCodes.includes(reported.code) ? 'verifying' : 'downloading';
      this.log.warn('download failed', { jobId: job.jobId, error: describeError(reported) });
      return { event: 'failed', outcome: failed(step, reported) };
    }
  }

  private async onVerifying(job: ActiveJob): Promise<PhaseResult> {
    const doc = this.payload(job);
    const staging = this.store.stagingDir(job.jobId);
    await this.progress(job.jobId, { step: 'verifying' });
    try {
      // Re-checked from disk: after a restart the bytes are whatever survived, not what was streamed.
      doc.verify(await fs.readFile(confinedPath(staging, MANIFEST_FILE)), await fs.readFile(confinedPath(staging, MANIFEST_SIGNATURE_FILE), 'utf8'));
      // Hashing again is only needed when the bytes were not streamed through the hash in this process.
      if (!this.hashedThisRun.has(job.jobId)) {
        await this.withHeartbeat(job.jobId, 'verifying', async () => {
          for (const a of doc.artifacts) await verifyFileOnDisk(confinedPath(staging, a.name), a.size, a.sha256);
        });
      }
      this.hashedThisRun.delete(job.jobId);
      return { event: 'ok' };
    } catch (err) {
      await fs.rm(staging, { recursive: true, force: true });
      return { event: 'failed', outcome: failed('verifying', err) };
    }
  }

  private async onInstalling(job: ActiveJob): Promise<PhaseResult> {
    const target = job.target!;
    await this.progress(job.jobId, { step: 'installing' });
    try {
      await this.withHeartbeat(job.jobId, 'installing', () => this.store.install(this.store.stagingDir(job.jobId), target));
      await this.store.setCurrent(target);
      return { event: 'ok' };
    } catch (err) {
      return { event: 'failed', outcome: failed('installing', err, { rolledBackTo: refString(job.previous) }) };
    }
  }

  /** An agent update is refused when no package fits this device or no launcher runs it, and is done when this agent is that version. */
  private async onReceivedAgentUpdate(job: ActiveJob): Promise<PhaseResult> {
    let doc: UpdateAgentDocument;
    try {
      doc = parseUpdateAgentDocument(job.document);
      this.updater.selectPackage(doc);
    } catch (err) {
      return { event: 'failed', outcome: { status: 'REJECTED', statusDetails: details({ step: 'validating', reason: reasonOf(err), code: err instanceof FleetError ? err.code : undefined }) } };
    }
    // Offered again after the state file was lost: a rollback already decided this job.
    const decided = await this.updater.recordedFailure(job.jobId);
    if (decided) return { event: 'failed', target: job.previous, outcome: this.agentUpdateFailed(decided.reason ?? `agent ${decided.to} was rolled back`, decided) };
    // The model does not change: target stays the serving model, so model recovery leaves it alone.
    if (this.updater.runningVersion === doc.version) {
      return {
        event: 'skip',
        target: job.previous,
        outcome: { status: 'SUCCEEDED', statusDetails: details({ step: 'done', note: `agent ${doc.version} is already running`, agentVersion: doc.version }) },
      };
    }
    return { event: 'ok', target: job.previous };
  }

  /**
   * The agent-update install spans a restart: the old agent installs and restarts; the launcher starts the
   * new one on trial; the new one confirms (ok), or the launcher restores the old one, which fails the job.
   * The pending-update record (self-update/update-record.ts) says which process this is.
   */
  private async onInstallingAgent(job: ActiveJob): Promise<PhaseResult> {
    const doc = parseUpdateAgentDocument(job.document);
    const next = await this.updater.resolve(job.jobId);
    switch (next.kind) {
      case 'install': {
        await this.progress(job.jobId, { step: 'installing', agentVersion: doc.version });
        const artifact = this.updater.selectPackage(doc).artifact;
        const staging = this.store.stagingDir(job.jobId);
        try {
          await this.withHeartbeat(job.jobId, 'installing', () => this.updater.install(job.jobId, doc, confinedPath(staging, artifact.name), artifact.sha256));
        } catch (err) {
          this.log.warn('agent update could not be installed', { jobId: job.jobId, error: describeError(err) });
          return { event: 'failed', outcome: failed('installing', err, { agentVersion: this.updater.runningVersion ?? undefined }) };
        }
        return this.restartForUpdate(job.jobId, doc.version);
      }
      case 'restart':
        return this.restartForUpdate(job.jobId, doc.version);
      case 'confirm': {
        // Connected and answered by the jobs service: the new agent can take and report jobs.
        if (!this.transport.connected) throw new TransportError('offline; the new agent confirms once connected', { code: 'TRANSPORT_OFFLINE' });
        const res = await this.jobs.update(job.jobId, 'IN_PROGRESS', details({ step: 'confirming', agentVersion: next.record.to }), this.cfg.jobs.stepTimeoutInMinutes);
        if (!res.ok) this.log.warn('the confirming update was rejected; the link works, so the new agent stays', { jobId: job.jobId, code: res.code });
        const confirmed = await this.updater.confirm(next.record);
        this.log.info('agent update confirmed', { jobId: job.jobId, from: confirmed.from, to: confirmed.to });
        return { event: 'ok' };
      }
      case 'succeeded':
        return { event: 'ok' };
      case 'failed':
        this.log.warn('agent update failed; this agent stays', { jobId: job.jobId, reason: next.reason });
        return { event: 'failed', outcome: this.agentUpdateFailed(next.reason, next.record) };
    }
  }

  private agentUpdateFailed(reason: string, record: UpdateRecord | null): Outcome {
    return {
      status: 'FAILED',
      statusDetails: details({ step: 'agent-update', code: AGENT_UPDATE_FAILED, reason, agentVersion: this.updater.runningVersion ?? undefined, failedVersion: record?.to }),
    };
  }

  private restartForUpdate(jobId: string, version: string): never {
    if (!this.deps.requestRestart) throw new FleetError('STATE_NO_RESTART', 'the agent cannot restart itself here (no supervisor hook)');
    this.log.info('restarting into the new agent', { jobId, version });
    this.stopped = true;
    this.deps.requestRestart(`agent update ${jobId} to ${version}`);
    throw new RestartingError(jobId);
  }

  /** The new agent confirmed: there is nothing else to check, the job succeeded. */
  private async onAgentConfirmed(job: ActiveJob): Promise<PhaseResult> {
    const record = await readUpdateRecord(this.updater.home!.root);
    return {
      event: 'ok',
      outcome: { status: 'SUCCEEDED', statusDetails: details({ step: 'done', agentVersion: this.updater.runningVersion ?? undefined, previousAgentVersion: record?.from }) },
    };
  }

  /** Removes the record and the versions no longer needed (idempotent, so a restart here just does it again). */
  private async onCommittingAgent(job: ActiveJob): Promise<PhaseResult> {
    await this.updater.finish(await readUpdateRecord(this.updater.home!.root), true);
    await fs.rm(this.store.stagingDir(job.jobId), { recursive: true, force: true });
    return { event: 'ok' };
  }

  /**
   * A failed update (or one a restart or crash loop interrupted): the record decides what is reported, so an
   * interruption after the new agent confirmed still reports SUCCEEDED, and a rollback reports its reason.
   */
  private async onRollingBackAgent(job: ActiveJob): Promise<PhaseResult> {
    const doc = parseUpdateAgentDocument(job.document);
    const record = this.updater.home ? await readUpdateRecord(this.updater.home.root) : null;
    const mine = record?.jobId === job.jobId ? record : null;
    const running = this.updater.runningVersion;
    await fs.rm(this.store.stagingDir(job.jobId), { recursive: true, force: true });
    if (running === doc.version && (!mine || mine.state === 'confirmed') && this.updater.home) {
      await this.updater.finish(mine, true);
      return { event: 'ok', outcome: { status: 'SUCCEEDED', statusDetails: details({ step: 'done', agentVersion: running, previousAgentVersion: mine?.from }) } };
    }
    const outcome = mine?.state === 'rolled-back' && mine.reason ? this.agentUpdateFailed(mine.reason, mine) : job.outcome;
    if (this.updater.home) {
      await this.updater.finish(mine, false);
      // An install that failed before its record was written may still have left the unpacked version.
      if (running !== doc.version) await this.updater.home.removeVersion(doc.version);
    }
    if (mine) this.log.warn('agent update rolled back', { jobId: job.jobId, from: mine.to, to: running });
    return { event: 'ok', outcome };
  }

  private async onHealthChecking(job: ActiveJob): Promise<PhaseResult> {
    const doc = this.document(job);
    const target = job.target!;
    const rolledBackTo = refString(job.previous);
    await this.progress(job.jobId, { step: 'health-checking' });
    let manifest: Manifest;
    try {
      manifest = await this.readInstalledManifest(target);
    } catch (err) {
      return { event: 'failed', outcome: failed('health-check', err, { rolledBackTo }) };
    }
    const r = await this.withHeartbeat(job.jobId, 'health-checking', () =>
      runHealthCheck(this.runtime, this.store.versionDir(target), manifest, target, doc.healthCheck, this.cfg.healthCheck.timeoutMs),
    );
    void this.telemetry.emit('health-check');
    if (!r.ok) {
      this.log.warn('health check failed', { jobId: job.jobId, code: r.code, reason: r.reason });
      return {
        event: 'failed',
        outcome: {
          status: 'FAILED',
          statusDetails: details({
            step: 'health-check',
            reason: r.reason,
            code: r.code,
            rolledBackTo,
            firstTokenMs: r.stats?.firstTokenMs,
            tokensPerSecond: r.stats?.tokensPerSecond,
          }),
        },
      };
    }
    // The new model passed: it takes over new requests; in-flight ones finish on the old one.
    this.holder.swap(r.model);
    const dlStats = await fs.readFile(confinedPath(this.store.versionDir(target), DOWNLOAD_STATS_FILE), 'utf8').then(
      (t) => JSON.parse(t) as { fetched?: number; resumedBytes?: number; rangeRequests?: number },
      () => ({}) as { fetched?: number; resumedBytes?: number; rangeRequests?: number },
    );
    return {
      event: 'ok',
      outcome: {
        status: 'SUCCEEDED',
        statusDetails: details({
          step: 'done',
          model: refString(target),
          firstTokenMs: r.stats.firstTokenMs,
          tokensPerSecond: r.stats.tokensPerSecond,
          tokens: r.stats.tokens,
          loadMs: r.loadMs,
          bytesFetched: dlStats.fetched,
          resumedBytes: dlStats.resumedBytes,
          rangeRequests: dlStats.rangeRequests,
        }),
      },
    };
  }

  private async onCommitting(job: ActiveJob): Promise<PhaseResult> {
    const target = job.target!;
    if (!sameRef(this.holder.current?.ref, target)) await this.loadServing(target); // resumed after a restart
    await this.store.setCurrent(target);
    await this.floors.record(await this.readInstalledManifest(target));
    const removed = await this.store.prune([job.previous, target]);
    if (removed.length > 0) this.log.info('pruned old versions', { removed: removed.map(refString) });
    await this.store.cleanStaging(null);
    await this.telemetry.emit('install'); // on disk before the phase moves on, so a crash cannot lose it
    return { event: 'ok' };
  }

  /** Points `current` back at the previous version and deletes the failed one. */
  private async undoInstall(job: ActiveJob): Promise<void> {
    await this.store.setCurrent(job.previous);
    if (job.target && !sameRef(job.target, job.previous)) await this.store.remove(job.target);
    await this.store.cleanStaging(null);
  }

  private async onRollingBack(job: ActiveJob): Promise<PhaseResult> {
    await this.store.setCurrent(job.previous);
    const serving = this.holder.current?.ref ?? null;
    if (!sameRef(serving, job.previous)) {
      if (job.previous) await this.loadServing(job.previous);
      else this.holder.swap(null);
    }
    await this.undoInstall(job);
    this.log.warn('rolled back', { jobId: job.jobId, to: refString(job.previous) });
    await this.telemetry.emit('rollback');
    return { event: 'ok' };
  }

  private async onReporting(job: ActiveJob): Promise<PhaseResult> {
    const outcome = job.outcome!;
    // Whatever path led here (a crash loop skips the failing phase's own cleanup), no staging is left behind.
    await fs.rm(this.store.stagingDir(job.jobId), { recursive: true, force: true });
    if (!this.transport.connected) throw new TransportError('offline; the final status will be sent on reconnect', { code: 'TRANSPORT_OFFLINE' });
    let res = await this.jobs.update(job.jobId, outcome.status, outcome.statusDetails);
    if (!res.ok && res.code === 'InvalidRequest') {
      // Details the service will not store must not keep the job open: send the status with a plain reason.
      this.log.warn('final status details refused; retrying with minimal details', { jobId: job.jobId, message: res.message });
      res = await this.jobs.update(job.jobId, outcome.status, details({ step: outcome.statusDetails.step ?? 'unknown', reason: 'details refused by the jobs service' }));
    }
    if (!res.ok) {
      // The service will never accept this update (job canceled, removed, already terminal): stop trying.
      this.log.warn('final status rejected by the jobs service', { jobId: job.jobId, code: res.code, message: res.message });
    } else {
      this.log.info('job finished', { jobId: job.jobId, status: outcome.status, details: outcome.statusDetails });
    }
    return { event: 'ok' };
  }
}

export type { JobExecution, ServedModel };
