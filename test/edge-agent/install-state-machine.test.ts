// The install state machine: the transition table is enforced, every step is on disk, and a restart
// resumes or rolls back as RESUME_PHASE says.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InstallStateStore, PHASES, RESUME_PHASE, TRANSITIONS } from '../../edge-agent/install-state-machine.ts';

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-state-'));
const prev = { modelId: 'm', version: '1' };

describe('InstallStateStore', () => {
  it('persists every transition so a fresh process sees it', async () => {
    const dir = await tmp();
    const s = await InstallStateStore.open(dir);
    await s.begin('job-1', { any: 'doc' }, prev);
    await s.transition('downloading', { target: { modelId: 'm', version: '2' } });
    const again = await InstallStateStore.open(dir);
    expect(again.active?.phase).toBe('downloading');
    expect(again.active?.target).toEqual({ modelId: 'm', version: '2' });
    const onDisk = JSON.parse(await fs.readFile(path.join(dir, 'install-state.json'), 'utf8'));
    expect(onDisk.schemaVersion).toBe(1);
  });

  it('refuses moves outside the table', async () => {
    const s = await InstallStateStore.open(await tmp());
    await s.begin('job-1', {}, null);
    await expect(s.transition('committing')).rejects.toThrow(/illegal install transition received -> committing/);
    await expect(s.transition('reporting')).rejects.toThrow(/needs an outcome/);
  });

  it('turns a crash during the health check into a rollback with a reason', async () => {
    const dir = await tmp();
    const s = await InstallStateStore.open(dir);
    await s.begin('job-1', {}, prev);
    for (const p of ['downloading', 'verifying', 'installing', 'health-checking'] as const) await s.transition(p);
    const resumed = await (await InstallStateStore.open(dir)).resumeAfterRestart('restarted');
    expect(resumed?.phase).toBe('rolling-back');
    expect(resumed?.outcome).toEqual({ status: 'FAILED', statusDetails: { step: 'health-check', reason: 'restarted' } });
    expect(resumed?.resumes).toBe(1);
  });

  it('remembers finished jobs so a redelivery is recognised', async () => {
    const dir = await tmp();
    const s = await InstallStateStore.open(dir);
    await s.begin('job-1', {}, null);
    await s.transition('reporting', { outcome: { status: 'REJECTED', statusDetails: { reason: 'bad' } } });
    await s.finish();
    const again = await InstallStateStore.open(dir);
    expect(again.active).toBeNull();
    expect(again.finished('job-1')?.outcome.status).toBe('REJECTED');
    expect(again.finished('job-2')).toBeUndefined();
  });

  it('tells a retried execution (new executionNumber) from a redelivery of the same one', async () => {
    const s = await InstallStateStore.open(await tmp());
    await s.begin('job-1', {}, null, 1);
    await s.transition('reporting', { outcome: { status: 'FAILED', statusDetails: { reason: 'slow' } } });
    await s.finish();
    expect(s.finished('job-1', 1)?.outcome.status).toBe('FAILED');
    expect(s.finished('job-1', 2)).toBeUndefined();
  });

  it('has a resume target for every phase that the table can reach', () => {
    for (const p of PHASES) {
      const r = RESUME_PHASE[p];
      expect(r === p || TRANSITIONS[p].includes(r) || r === 'downloading').toBe(true);
    }
  });

  it('rejects a state file from an unknown schema version', async () => {
    const dir = await tmp();
    await fs.writeFile(path.join(dir, 'install-state.json'), JSON.stringify({ schemaVersion: 99, active: null, finished: [] }));
    await expect(InstallStateStore.open(dir)).rejects.toThrow(/schemaVersion/);
  });
});
