// The install state machine: one table NEXT[phase][event] decides every move (as Mender's client does),
// phase handlers only return an event, and a versioned state record is persisted atomically at every move,
// so a crash or power cut at any point resumes, rolls back, or (after too many crashes) gives up on restart.
// Finished job ids are remembered so a redelivery never installs twice.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { FleetError, describeError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { ModelRefSchema, type ModelRef } from './model-store.ts';

export const PHASES = [
  'received',
  'downloading',
  'verifying',
  'installing',
  'health-checking',
  'committing',
  'rolling-back',
  'reporting',
] as const;
export type Phase = (typeof PHASES)[number];

/** What a phase handler tells the driver: done, failed, nothing to do, or canceled by the service. */
export const PHASE_EVENTS = ['ok', 'failed', 'skip', 'canceled'] as const;
export type PhaseEvent = (typeof PHASE_EVENTS)[number];

/** Where `reporting` leads once the service has the final status: the job leaves the record. */
export const FINISHED = 'finished';
export type NextPhase = Phase | typeof FINISHED;

/**
 * The one transition table. A handler's event picks the next phase here and nowhere else; a missing
 * entry is a bug (IllegalTransitionError). `reporting` carries the final status.
 */
export const NEXT: Readonly<Record<Phase, Readonly<Partial<Record<PhaseEvent, NextPhase>>>>> = {
  received: { ok: 'downloading', skip: 'reporting', failed: 'reporting', canceled: 'reporting' },
  downloading: { ok: 'verifying', failed: 'reporting', canceled: 'reporting' },
  verifying: { ok: 'installing', failed: 'reporting', canceled: 'reporting' },
  installing: { ok: 'health-checking', failed: 'rolling-back' },
  'health-checking': { ok: 'committing', failed: 'rolling-back' },
  // Reached only by the crash-loop guard: a commit that keeps killing the agent is undone.
  committing: { ok: 'reporting', failed: 'rolling-back' },
  // Reached only by the crash-loop guard: a rollback that keeps killing the agent is reported as it stands.
  'rolling-back': { ok: 'reporting', failed: 'reporting' },
  reporting: { ok: FINISHED },
};

/** Moves the table allows out of each phase (derived from NEXT; for checks and docs). */
export const TRANSITIONS: Readonly<Record<Phase, readonly NextPhase[]>> = Object.fromEntries(
  PHASES.map((p) => [p, [...new Set(Object.values(NEXT[p]))]]),
) as Record<Phase, NextPhase[]>;

/** How a restart re-enters a phase: run it again, take its failed edge, or go back to a named phase. */
export type RestartRule = 'redo' | 'failed' | Phase;

/**
 * How a restarted agent re-enters the phase it died in: `redo` runs it again (downloads resume, installs
 * are idempotent); `failed` takes the table's failed edge (a crash during the health check counts as a
 * failed check, because the new model may be what crashed us); a phase name goes back to that phase.
 */
export const ON_RESTART: Readonly<Record<Phase, RestartRule>> = {
  received: 'redo',
  downloading: 'redo',
  verifying: 'downloading',
  installing: 'redo',
  'health-checking': 'failed',
  committing: 'redo',
  'rolling-back': 'redo',
  reporting: 'redo',
};

/** Where a restarted agent picks up each phase (ON_RESTART resolved through NEXT). */
export const RESUME_PHASE: Readonly<Record<Phase, NextPhase>> = Object.fromEntries(
  PHASES.map((p) => {
    const r = ON_RESTART[p];
    return [p, r === 'redo' ? p : r === 'failed' ? NEXT[p].failed! : r];
  }),
) as Record<Phase, NextPhase>;

/** Crashes in `reporting` never trip the guard: giving up there would lose the final status. */
export const CRASH_GUARDED: ReadonlySet<Phase> = new Set(PHASES.filter((p) => p !== 'reporting'));

export const FinalStatusSchema = z.enum(['SUCCEEDED', 'FAILED', 'REJECTED']);
export type FinalStatus = z.output<typeof FinalStatusSchema>;

const OutcomeSchema = z.object({ status: FinalStatusSchema, statusDetails: z.record(z.string(), z.string()) }).strict();
export type Outcome = z.output<typeof OutcomeSchema>;

const ActiveJobSchema = z
  .object({
    jobId: z.string(),
    /** Distinguishes a retried execution of the same job (AWS IoT Jobs retry config) from a redelivery. */
    executionNumber: z.number().int().nullable().default(null),
    phase: z.enum(PHASES),
    /** The raw job document as received; re-validated on resume. Its `schema` picks the job kind's handlers. */
    document: z.unknown(),
    previous: ModelRefSchema.nullable(),
    target: ModelRefSchema.nullable(),
    outcome: OutcomeSchema.nullable(),
    /** How many times this job was resumed after a restart. */
    resumes: z.number().int().nonnegative(),
    /** Restarts without a clean stop, per phase the agent died in (the crash-loop guard counts these). */
    crashes: z.partialRecord(z.enum(PHASES), z.number().int().nonnegative()).default({}),
    /** Set by a clean shutdown (SIGTERM) so the next start does not count it as a crash. */
    cleanStop: z.boolean().default(false),
    updatedAt: z.string(),
  })
  .strict();
export type ActiveJob = z.output<typeof ActiveJobSchema>;

const FinishedJobSchema = z
  .object({ jobId: z.string(), executionNumber: z.number().int().nullable().default(null), outcome: OutcomeSchema, finishedAt: z.string() })
  .strict();
export type FinishedJob = z.output<typeof FinishedJobSchema>;

/** 2 added `crashes` and `cleanStop` to the active job; a version 1 record reads as version 2 with defaults. */
export const STATE_SCHEMA_VERSION = 2;
const StateRecordSchema = z
  .object({
    schemaVersion: z.union([z.literal(1), z.literal(STATE_SCHEMA_VERSION)]).transform(() => STATE_SCHEMA_VERSION),
    active: ActiveJobSchema.nullable(),
    finished: z.array(FinishedJobSchema),
  })
  .strict();
export type StateRecord = z.output<typeof StateRecordSchema>;

const FINISHED_KEPT = 100;
export const STATE_FILE = 'install-state.json';

/** A move the table forbids: a bug, never an expected outcome. */
export class IllegalTransitionError extends FleetError {
  constructor(from: Phase, event: PhaseEvent | NextPhase) {
    const allowed = Object.entries(NEXT[from]).map(([e, to]) => `${e} -> ${to}`).join(', ') || 'none';
    super('STATE_TRANSITION', `illegal install transition from ${from} on ${event}; allowed from ${from}: ${allowed}`);
  }
}

/** What a handler returns: the event, and fields of the record that change with the move. */
export interface PhaseResult {
  event: PhaseEvent;
  target?: ModelRef | null;
  outcome?: Outcome | null;
}

/** Runs one phase of a job and says how it went; never picks the next phase itself. */
export type PhaseHandler = (job: ActiveJob) => Promise<PhaseResult>;

/** A job kind's handlers, one per phase. Job kinds are keyed by their document's `schema`. */
export type PhaseHandlers = Readonly<Record<Phase, PhaseHandler>>;

/** What `open` found wrong with the state file and what it did about it (reported in telemetry). */
export interface StateRecovery {
  file: string;
  problem: string;
  /** Where the unreadable file was kept for inspection. */
  keptAs: string;
  action: string;
}

/** What a restart found: the job (already moved where work continues) and how it got there. */
export interface RestartResult {
  job: ActiveJob;
  /** The previous process died in `diedIn` without a clean stop. */
  crashed: boolean;
  diedIn: Phase;
  /** Crashes counted in `diedIn` for this job, this one included. */
  crashes: number;
  /** The crash-loop guard tripped: the job took the table's failed edge out of `diedIn`. */
  crashLoop: boolean;
}

/** Why a restart ends a phase as failed, for the caller to word the outcome. */
export type RestartFailure = 'interrupted' | 'crash-loop';

/** Persisted install state; every mutation is written (temp, fsync, rename) before it returns. */
export class InstallStateStore {
  private record: StateRecord = { schemaVersion: STATE_SCHEMA_VERSION, active: null, finished: [] };
  /** Set when `open` found the file damaged and started over. */
  recovery: StateRecovery | null = null;

  constructor(private readonly file: string) {}

  /**
   * Loads the record; a missing file is a fresh device. An empty, truncated or otherwise unreadable file
   * (storage that drops writes on power loss) is kept aside and the device starts with no active job:
   * refusing to start would leave it unreachable for good, while a job in flight is offered again by the
   * service (start-next returns IN_PROGRESS executions) and its download resumes from staging.
   */
  static async open(stateDir: string): Promise<InstallStateStore> {
    const store = new InstallStateStore(path.join(stateDir, STATE_FILE));
    await fs.mkdir(stateDir, { recursive: true });
    let text: string;
    try {
      text = await fs.readFile(store.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return store;
      throw err;
    }
    try {
      store.record = parseJsonWith(StateRecordSchema, text, `install state ${store.file}`);
    } catch (err) {
      const keptAs = `${store.file}.corrupt-${Date.now()}`;
      await fs.rename(store.file, keptAs);
      store.recovery = {
        file: store.file,
        problem: text.length === 0 ? 'the file is empty' : describeError(err),
        keptAs,
        action: 'started with no active job and no finished-job list',
      };
      await store.save(store.record);
    }
    return store;
  }

  get active(): ActiveJob | null {
    return this.record.active;
  }

  /** The recorded outcome of a job execution this device already finished, if any. */
  finished(jobId: string, executionNumber: number | null = null): FinishedJob | undefined {
    return this.record.finished.find(
      (f) => f.jobId === jobId && (executionNumber === null || f.executionNumber === null || f.executionNumber === executionNumber),
    );
  }

  /** Records a new job in `received`. */
  async begin(jobId: string, document: unknown, previous: ActiveJob['previous'], executionNumber: number | null = null): Promise<ActiveJob> {
    if (this.record.active) throw new FleetError('STATE_BUSY', `job ${this.record.active.jobId} is still active; cannot begin ${jobId}`);
    const active: ActiveJob = {
      jobId,
      executionNumber,
      phase: 'received',
      document,
      previous,
      target: null,
      outcome: null,
      resumes: 0,
      crashes: {},
      cleanStop: false,
      updatedAt: new Date().toISOString(),
    };
    await this.save({ ...this.record, active });
    return active;
  }

  /** Where the table sends the active job on `event` (throws IllegalTransitionError when it has no entry). */
  nextFor(event: PhaseEvent): NextPhase {
    const cur = this.requireActive();
    const to = NEXT[cur.phase][event];
    if (to === undefined) throw new IllegalTransitionError(cur.phase, event);
    return to;
  }

  /**
   * Applies a handler's result: the table picks the next phase, the record is written, and the new
   * active job is returned (null once `reporting` finished and the job moved to the finished list).
   */
  async advance(result: PhaseResult): Promise<ActiveJob | null> {
    const cur = this.requireActive();
    const to = this.nextFor(result.event);
    const outcome = result.outcome !== undefined ? result.outcome : cur.outcome;
    const target = result.target !== undefined ? result.target : cur.target;
    if (to === FINISHED) {
      await this.finish();
      return null;
    }
    if (to === 'reporting' && !outcome) throw new FleetError('STATE_TRANSITION', `entering reporting from ${cur.phase} needs an outcome`);
    const active: ActiveJob = { ...cur, target, outcome, phase: to, updatedAt: new Date().toISOString() };
    await this.save({ ...this.record, active });
    return active;
  }

  /**
   * After a restart: counts a crash in the phase the job was in (unless the last stop was clean), then
   * re-enters as ON_RESTART says. The crash-loop guard comes first: after `crashLoopLimit` crashes in one
   * phase the job takes that phase's failed edge (rolled back, or reported) instead of running it again.
   * `failedOutcome` words the outcome of a failed re-entry; `rulesFor` lets a job kind re-enter differently
   * (e.g. one whose install restarts the agent on purpose).
   */
  async restart(
    crashLoopLimit: number,
    failedOutcome: (job: ActiveJob, why: RestartFailure, crashes: number) => Outcome,
    rulesFor: (job: ActiveJob) => Readonly<Record<Phase, RestartRule>> = () => ON_RESTART,
  ): Promise<RestartResult | null> {
    const cur = this.record.active;
    if (!cur) return null;
    const crashed = !cur.cleanStop;
    const crashes = (cur.crashes[cur.phase] ?? 0) + (crashed ? 1 : 0);
    let job: ActiveJob = {
      ...cur,
      crashes: { ...cur.crashes, [cur.phase]: crashes },
      cleanStop: false,
      resumes: cur.resumes + 1,
      updatedAt: new Date().toISOString(),
    };
    const crashLoop = crashed && crashes >= crashLoopLimit && CRASH_GUARDED.has(cur.phase);
    const how = crashLoop ? 'failed' : rulesFor(cur)[cur.phase];
    if (how === 'failed') {
      const to = NEXT[cur.phase].failed;
      if (to === undefined || to === FINISHED) throw new IllegalTransitionError(cur.phase, 'failed');
      job = { ...job, phase: to, outcome: failedOutcome(cur, crashLoop ? 'crash-loop' : 'interrupted', crashes) };
    } else if (how !== 'redo') {
      job = { ...job, phase: how };
    }
    await this.save({ ...this.record, active: job });
    return { job, crashed, diedIn: cur.phase, crashes, crashLoop };
  }

  /** Records that the agent stopped cleanly, so the next start does not count a crash. */
  async markCleanStop(): Promise<void> {
    const cur = this.record.active;
    if (!cur || cur.cleanStop) return;
    await this.save({ ...this.record, active: { ...cur, cleanStop: true } });
  }

  /** The service acknowledged the final status: forget the active job, remember its outcome. */
  private async finish(): Promise<FinishedJob> {
    const cur = this.requireActive();
    if (cur.phase !== 'reporting' || !cur.outcome) throw new IllegalTransitionError(cur.phase, FINISHED);
    const done: FinishedJob = { jobId: cur.jobId, executionNumber: cur.executionNumber, outcome: cur.outcome, finishedAt: new Date().toISOString() };
    const finished = [...this.record.finished.filter((f) => f.jobId !== cur.jobId), done].slice(-FINISHED_KEPT);
    await this.save({ schemaVersion: STATE_SCHEMA_VERSION, active: null, finished });
    return done;
  }

  private requireActive(): ActiveJob {
    if (!this.record.active) throw new FleetError('STATE_IDLE', 'no active install job');
    return this.record.active;
  }

  private async save(next: StateRecord): Promise<void> {
    await writeJsonAtomic(this.file, next);
    this.record = next;
  }
}
