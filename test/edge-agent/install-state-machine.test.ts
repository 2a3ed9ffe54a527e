// The install state machine: the table NEXT picks every move, every step is on disk, a restart resumes,
// fails or (after too many crashes in one phase) gives up as ON_RESTART and the crash-loop guard say,
// and a damaged state file is kept aside instead of stopping the agent.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CRASH_GUARDED,
  FINISHED,
  InstallStateStore,
  NEXT,
  ON_RESTART,
  PHASES,
  RESUME_PHASE,
  type ActiveJob,
  type Outcome,
  type RestartFailure,
} from '../../edge-agent/install-state-machine.ts';

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-state-'));
const prev = { modelId: 'm', version: '1' };
const outcomeFor = (job: ActiveJob, why: RestartFailure, crashes: number): Outcome => ({
  status: 'FAILED',
  statusDetails: { step: job.phase, reason: `${why} x${crashes}` },
});

/** Walks a fresh job to `phase` through ok events. */
async function reach(s: InstallStateStore, phase: (typeof PHASES)[number]): Promise<void> {
  await s.begin('job-1', { any: 'doc' }, prev);
  const path = ['received', 'downloading', 'verifying', 'installing', 'health-checking', 'committing'] as const;
  for (const p of path) {
    if (s.active!.phase === phase) return;
    await s.advance({ event: 'ok', ...(p === 'health-checking' ? { outcome: { status: 'SUCCEEDED', statusDetails: {} } } : {}) });
  }
  if (s.active!.phase !== phase) throw new Error(`cannot reach ${phase} on ok events`);
}

describe('the transition table', () => {
  it('has an ok edge out of every phase, and a failed edge wherever the crash-loop guard may fire', () => {
    for (const p of PHASES) expect(NEXT[p].ok, p).toBeDefined();
    for (const p of CRASH_GUARDED) expect(NEXT[p].failed, p).toBeDefined();
    expect(NEXT.reporting).toEqual({ ok: FINISHED });
  });

  it('lets a cancel stop a job only before anything is installed', () => {
    const cancelable = PHASES.filter((p) => NEXT[p].canceled !== undefined);
    expect(cancelable).toEqual(['received', 'downloading', 'verifying']);
  });

  it('resolves every restart rule to a phase', () => {
    expect(RESUME_PHASE['health-checking']).toBe('rolling-back');
    expect(RESUME_PHASE.verifying).toBe('downloading');
    for (const p of PHASES) expect(PHASES).toContain(RESUME_PHASE[p]);
    expect(ON_RESTART.reporting).toBe('redo');
  });
});

describe('InstallStateStore', () => {
  it('persists every move so a fresh process sees it', async () => {
    const dir = await tmp();
    const s = await InstallStateStore.open(dir);
    await s.begin('job-1', { any: 'doc' }, prev);
    await s.advance({ event: 'ok', target: { modelId: 'm', version: '2' } });
    const again = await InstallStateStore.open(dir);
    expect(again.active?.phase).toBe('downloading');
    expect(again.active?.target).toEqual({ modelId: 'm', version: '2' });
    const onDisk = JSON.parse(await fs.readFile(path.join(dir, 'install-state.json'), 'utf8'));
    expect(onDisk.schemaVersion).toBe(2);
  });

  it('refuses events the table has no entry for', async () => {
    const s = await InstallStateStore.open(await tmp());
    await reach(s, 'committing');
    await expect(s.advance({ event: 'canceled' })).rejects.toThrow(/illegal install transition from committing on canceled; allowed from committing: ok -> reporting, failed -> rolling-back/);
    const t = await InstallStateStore.open(await tmp());
    await t.begin('job-1', {}, null);
    await expect(t.advance({ event: 'failed' })).rejects.toThrow(/needs an outcome/);
  });

  it('turns a crash during the health check into a rollback', async () => {
    const dir = await tmp();
    await reach(await InstallStateStore.open(dir), 'health-checking');
    const r = await (await InstallStateStore.open(dir)).restart(3, outcomeFor);
    expect(r?.job.phase).toBe('rolling-back');
    expect(r?.job.outcome).toEqual({ status: 'FAILED', statusDetails: { step: 'health-checking', reason: 'interrupted x1' } });
    expect(r).toMatchObject({ crashed: true, diedIn: 'health-checking', crashes: 1, crashLoop: false });
  });

  it('gives up on a job after crashLoopLimit crashes in one phase, taking that phase failed edge', async () => {
    const dir = await tmp();
    await reach(await InstallStateStore.open(dir), 'installing');
    for (let i = 1; i <= 2; i++) {
      const r = await (await InstallStateStore.open(dir)).restart(3, outcomeFor);
      expect(r).toMatchObject({ crashes: i, crashLoop: false, job: { phase: 'installing' } });
    }
    const r = await (await InstallStateStore.open(dir)).restart(3, outcomeFor);
    expect(r).toMatchObject({ crashes: 3, crashLoop: true, job: { phase: 'rolling-back' } });
    expect(r?.job.outcome?.statusDetails.reason).toBe('crash-loop x3');
  });

  it('lets a job kind re-enter a phase its own way', async () => {
    const dir = await tmp();
    await reach(await InstallStateStore.open(dir), 'health-checking');
    const r = await (await InstallStateStore.open(dir)).restart(3, outcomeFor, () => ({ ...ON_RESTART, 'health-checking': 'redo' }));
    expect(r?.job.phase).toBe('health-checking');
  });

  it('does not count a clean stop as a crash', async () => {
    const dir = await tmp();
    await reach(await InstallStateStore.open(dir), 'downloading');
    for (let i = 0; i < 5; i++) {
      const s = await InstallStateStore.open(dir);
      const r = await s.restart(3, outcomeFor);
      expect(r?.crashLoop).toBe(false);
      await s.markCleanStop();
    }
    const s = await InstallStateStore.open(dir);
    expect(s.active?.crashes).toEqual({ downloading: 1 });
    expect(s.active?.resumes).toBe(5);
  });

  it('never gives up in reporting (that would lose the final status)', async () => {
    const dir = await tmp();
    const s = await InstallStateStore.open(dir);
    await s.begin('job-1', {}, null);
    await s.advance({ event: 'failed', outcome: { status: 'REJECTED', statusDetails: {} } });
    for (let i = 0; i < 5; i++) expect((await (await InstallStateStore.open(dir)).restart(3, outcomeFor))?.job.phase).toBe('reporting');
  });

  it('remembers finished jobs so a redelivery is recognised', async () => {
    const dir = await tmp();
    const s = await InstallStateStore.open(dir);
    await s.begin('job-1', {}, null);
    await s.advance({ event: 'failed', outcome: { status: 'REJECTED', statusDetails: { reason: 'bad' } } });
    expect(await s.advance({ event: 'ok' })).toBeNull();
    const again = await InstallStateStore.open(dir);
    expect(again.active).toBeNull();
    expect(again.finished('job-1')?.outcome.status).toBe('REJECTED');
    expect(again.finished('job-2')).toBeUndefined();
  });

  it('tells a retried execution (new executionNumber) from a redelivery of the same one', async () => {
    const s = await InstallStateStore.open(await tmp());
    await s.begin('job-1', {}, null, 1);
    await s.advance({ event: 'failed', outcome: { status: 'FAILED', statusDetails: { reason: 'slow' } } });
    await s.advance({ event: 'ok' });
    expect(s.finished('job-1', 1)?.outcome.status).toBe('FAILED');
    expect(s.finished('job-1', 2)).toBeUndefined();
  });

  it('reads a version 1 record', async () => {
    const dir = await tmp();
    const v1 = {
      schemaVersion: 1,
      active: { jobId: 'j', executionNumber: 1, phase: 'downloading', document: {}, previous: null, target: null, outcome: null, resumes: 0, updatedAt: 'x' },
      finished: [],
    };
    await fs.writeFile(path.join(dir, 'install-state.json'), JSON.stringify(v1));
    const s = await InstallStateStore.open(dir);
    expect(s.recovery).toBeNull();
    expect(s.active).toMatchObject({ jobId: 'j', crashes: {}, cleanStop: false });
  });

  for (const [name, content] of [
    ['empty', ''],
    ['truncated', '{"schemaVersion":2,"active":{"jobId":"j'],
    ['from an unknown schema version', JSON.stringify({ schemaVersion: 99, active: null, finished: [] })],
  ] as const) {
    it(`keeps a ${name} state file aside and starts clean`, async () => {
      const dir = await tmp();
      await fs.writeFile(path.join(dir, 'install-state.json'), content);
      const s = await InstallStateStore.open(dir);
      expect(s.active).toBeNull();
      expect(s.recovery?.problem).toMatch(name === 'empty' ? /empty/ : /invalid install state/);
      expect(await fs.readFile(s.recovery!.keptAs, 'utf8')).toBe(content);
      // The fresh record is on disk, so the next start is clean.
      expect((await InstallStateStore.open(dir)).recovery).toBeNull();
    });
  }
});
