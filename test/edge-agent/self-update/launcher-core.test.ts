// The launcher's decisions for every state of the pending-update record, including the states a kill -9
// can leave between two steps (record written but link not switched, and the reverse).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../edge-agent/log.ts';
import { AgentHome } from '../../../edge-agent/self-update/agent-home.ts';
import { lastWords, planLaunch, rollBack } from '../../../edge-agent/self-update/launcher-core.ts';
import { newUpdateRecord, readUpdateRecord, writeUpdateRecord, type UpdateRecord } from '../../../edge-agent/self-update/update-record.ts';
import { tempDir } from '../../helpers/temp-dir.ts';

let home: AgentHome;

async function fakeVersion(v: string): Promise<void> {
  await fs.mkdir(path.join(home.versionDir(v), 'bin'), { recursive: true });
  await fs.writeFile(home.entryOf(v), '');
}

async function record(patch: Partial<UpdateRecord>): Promise<UpdateRecord> {
  return writeUpdateRecord(home.root, { ...newUpdateRecord('job-1', '1.0.0', '2.0.0', 30_000), ...patch });
}

beforeEach(async () => {
  home = new AgentHome(path.join(await tempDir('fleetlm-launcher-'), 'agent'));
  await fakeVersion('1.0.0');
  await fakeVersion('2.0.0');
  await home.switchCurrent('1.0.0');
});

describe('planLaunch', () => {
  it('starts current when no update is pending', async () => {
    expect(await planLaunch(home, silentLogger)).toEqual({ version: '1.0.0', trial: null });
  });

  it('refuses to guess when nothing is installed', async () => {
    await fs.rm(path.join(home.root, 'current'));
    await expect(planLaunch(home, silentLogger)).rejects.toThrow(/no agent is installed/);
  });

  for (const switched of [false, true]) {
    it(`pending (${switched ? 'after' : 'before'} the agent switched current): switches, counts the attempt, starts the new one on trial`, async () => {
      await record({ state: 'pending' });
      if (switched) await home.switchCurrent('2.0.0');
      const before = Date.now();
      const plan = await planLaunch(home, silentLogger);
      expect(plan.version).toBe('2.0.0');
      expect(plan.trial).toMatchObject({ state: 'starting', attempts: 1 });
      expect(plan.trial!.deadline).toBeGreaterThanOrEqual(before + 30_000);
      expect(await home.currentVersion()).toBe('2.0.0');
      expect(await readUpdateRecord(home.root)).toMatchObject({ state: 'starting', attempts: 1 });
    });
  }

  it('starting at launch means the trial ended unconfirmed: rolls back with a reason', async () => {
    await record({ state: 'starting', attempts: 1 });
    await home.switchCurrent('2.0.0');
    expect(await planLaunch(home, silentLogger)).toEqual({ version: '1.0.0', trial: null });
    expect(await home.currentVersion()).toBe('1.0.0');
    const r = await readUpdateRecord(home.root);
    expect(r).toMatchObject({ state: 'rolled-back', deadline: null });
    expect(r!.reason).toMatch(/2\.0\.0 stopped before it confirmed \(start attempt 1/);
  });

  it('rolled-back with current still on the new version (killed between record and switch): finishes the switch back', async () => {
    await record({ state: 'rolled-back', reason: 'crashed', attempts: 1 });
    await home.switchCurrent('2.0.0');
    expect(await planLaunch(home, silentLogger)).toEqual({ version: '1.0.0', trial: null });
    expect(await home.currentVersion()).toBe('1.0.0');
    expect((await readUpdateRecord(home.root))!.reason).toBe('crashed');
  });

  it('confirmed: keeps the new version', async () => {
    await record({ state: 'confirmed', attempts: 1 });
    expect(await planLaunch(home, silentLogger)).toEqual({ version: '2.0.0', trial: null });
    expect(await home.currentVersion()).toBe('2.0.0');
  });

  it('pending for a version whose directory is gone: rolls back instead of starting nothing', async () => {
    await record({ state: 'pending' });
    await fs.rm(home.versionDir('2.0.0'), { recursive: true });
    expect(await planLaunch(home, silentLogger)).toEqual({ version: '1.0.0', trial: null });
    expect((await readUpdateRecord(home.root))!.reason).toMatch(/cannot switch to 2\.0\.0/);
  });

  it('an unreadable record does not stop the agent from starting', async () => {
    await fs.writeFile(path.join(home.root, 'pending-update.json'), '{"schema":"fleetlm/agent-update-state@9"}');
    expect(await planLaunch(home, silentLogger)).toEqual({ version: '1.0.0', trial: null });
  });

  it('removes temp links and partial unpacks a kill left behind', async () => {
    await fs.symlink('versions/2.0.0', path.join(home.root, '.current.123.abcd.tmp'));
    await fs.mkdir(path.join(home.versionsDir, '.partial-3.0.0-beef'));
    await planLaunch(home, silentLogger);
    expect((await fs.readdir(home.root)).sort()).toEqual(['current', 'versions']);
    expect((await fs.readdir(home.versionsDir)).sort()).toEqual(['1.0.0', '2.0.0']);
  });
});

describe('rollBack', () => {
  it('writes the reason before it moves the link', async () => {
    const r = await record({ state: 'starting', attempts: 1 });
    await home.switchCurrent('2.0.0');
    // Make the switch fail: the reason must already be on disk.
    await fs.rm(home.versionDir('1.0.0'), { recursive: true });
    await expect(rollBack(home, r, 'exited with code 1', silentLogger)).rejects.toThrow();
    expect(await readUpdateRecord(home.root)).toMatchObject({ state: 'rolled-back', reason: 'exited with code 1' });
  });
});

describe('lastWords', () => {
  it('picks the uncaught error out of a Node crash', () => {
    const crash = [
      'file:///x/bin/fleetlm-agent:3',
      "throw new Error('agent 3.0.0 is broken at start');",
      '^',
      '',
      'Error: agent 3.0.0 is broken at start',
      '    at file:///x/bin/fleetlm-agent:3:7',
      '    at ModuleJob.run (node:internal/modules/esm/module_job:234:25)',
      '',
      'Node.js v20.20.2',
    ].join('\n');
    expect(lastWords(crash)).toBe('Error: agent 3.0.0 is broken at start');
  });

  it("prefers the agent's own last error log line", () => {
    const log = ['{"level":"info","msg":"starting"}', '{"level":"error","msg":"agent failed to start","error":"cannot read fleetPublicKeyPath"}', ''].join('\n');
    expect(lastWords(log)).toBe('agent failed to start: cannot read fleetPublicKeyPath');
  });

  it('falls back to the last lines', () => {
    expect(lastWords('one\ntwo\nthree\n')).toBe('two | three');
  });
});
