// The install state machine: one transition table, and a versioned state record persisted atomically
// at every transition (in the spirit of Mender's update state scripts) so a crash or power cut at any
// point resumes or rolls back on restart. Finished job ids are remembered so a redelivery never installs twice.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { FleetError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { ModelRefSchema } from './model-store.ts';

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

/** Allowed moves. `reporting` carries the final status; leaving it means the service acknowledged it. */
export const TRANSITIONS: Readonly<Record<Phase, readonly Phase[]>> = {
  received: ['downloading', 'reporting'],
  downloading: ['verifying', 'reporting'],
  verifying: ['installing', 'reporting'],
  installing: ['health-checking', 'rolling-back', 'reporting'],
  'health-checking': ['committing', 'rolling-back'],
  committing: ['reporting'],
  'rolling-back': ['reporting'],
  reporting: [],
};

/**
 * Where a restarted agent picks up. Work before the pointer switch is redone (downloads resume);
 * a crash during the health check counts as a failed check, because the new model may be what crashed us.
 */
export const RESUME_PHASE: Readonly<Record<Phase, Phase>> = {
  received: 'received',
  downloading: 'downloading',
  verifying: 'downloading',
  installing: 'installing',
  'health-checking': 'rolling-back',
  committing: 'committing',
  'rolling-back': 'rolling-back',
  reporting: 'reporting',
};

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
    /** The raw job document as received; re-validated on resume. */
    document: z.unknown(),
    previous: ModelRefSchema.nullable(),
    target: ModelRefSchema.nullable(),
    outcome: OutcomeSchema.nullable(),
    /** How many times this job was resumed after a restart. */
    resumes: z.number().int().nonnegative(),
    updatedAt: z.string(),
  })
  .strict();
export type ActiveJob = z.output<typeof ActiveJobSchema>;

const FinishedJobSchema = z
  .object({ jobId: z.string(), executionNumber: z.number().int().nullable().default(null), outcome: OutcomeSchema, finishedAt: z.string() })
  .strict();
export type FinishedJob = z.output<typeof FinishedJobSchema>;

export const STATE_SCHEMA_VERSION = 1;
const StateRecordSchema = z
  .object({
    schemaVersion: z.literal(STATE_SCHEMA_VERSION),
    active: ActiveJobSchema.nullable(),
    finished: z.array(FinishedJobSchema),
  })
  .strict();
export type StateRecord = z.output<typeof StateRecordSchema>;

const FINISHED_KEPT = 100;

/** A move the table forbids: a bug, never an expected outcome. */
export class IllegalTransitionError extends FleetError {
  constructor(from: Phase, to: Phase) {
    super('STATE_TRANSITION', `illegal install transition ${from} -> ${to}; allowed from ${from}: ${TRANSITIONS[from].join(', ') || 'none'}`);
  }
}

/** Persisted install state; every mutation is written (temp, fsync, rename) before it returns. */
export class InstallStateStore {
  private record: StateRecord = { schemaVersion: STATE_SCHEMA_VERSION, active: null, finished: [] };

  constructor(private readonly file: string) {}

  /** Loads the record; a missing file is a fresh device. */
  static async open(stateDir: string): Promise<InstallStateStore> {
    const store = new InstallStateStore(path.join(stateDir, 'install-state.json'));
    try {
      const text = await fs.readFile(store.file, 'utf8');
      store.record = parseJsonWith(StateRecordSchema, text, `install state ${store.file}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.mkdir(stateDir, { recursive: true });
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
      updatedAt: new Date().toISOString(),
    };
    await this.save({ ...this.record, active });
    return active;
  }

  /** Moves the active job to `to` (checked against TRANSITIONS) with optional field changes. */
  async transition(to: Phase, patch: Partial<Pick<ActiveJob, 'target' | 'outcome' | 'previous'>> = {}): Promise<ActiveJob> {
    const cur = this.requireActive();
    if (!TRANSITIONS[cur.phase].includes(to)) throw new IllegalTransitionError(cur.phase, to);
    if (to === 'reporting' && !(patch.outcome ?? cur.outcome)) {
      throw new FleetError('STATE_TRANSITION', 'entering reporting needs an outcome');
    }
    const active: ActiveJob = { ...cur, ...patch, phase: to, updatedAt: new Date().toISOString() };
    await this.save({ ...this.record, active });
    return active;
  }

  /** After a restart: moves the active job to where RESUME_PHASE says work continues. */
  async resumeAfterRestart(rollbackReason: string): Promise<ActiveJob | null> {
    const cur = this.record.active;
    if (!cur) return null;
    const phase = RESUME_PHASE[cur.phase];
    const outcome =
      phase === 'rolling-back' && cur.phase === 'health-checking'
        ? { status: 'FAILED' as const, statusDetails: { step: 'health-check', reason: rollbackReason } }
        : cur.outcome;
    const active: ActiveJob = { ...cur, phase, outcome, resumes: cur.resumes + 1, updatedAt: new Date().toISOString() };
    await this.save({ ...this.record, active });
    return active;
  }

  /** The service acknowledged the final status: forget the active job, remember its outcome. */
  async finish(): Promise<FinishedJob> {
    const cur = this.requireActive();
    if (cur.phase !== 'reporting' || !cur.outcome) throw new IllegalTransitionError(cur.phase, 'reporting');
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
