// The launcher's decisions, apart from process handling so they can be tested alone: which version to
// start given the pending-update record and `current`, and how to roll back. Every step is ordered so a
// kill -9 between any two leaves a record and a link from which the next start decides the same way.
import { describeError } from '../../common/errors.ts';
import type { Logger } from '../log.ts';
import type { AgentHome } from './agent-home.ts';
import { readUpdateRecord, writeUpdateRecord, type UpdateRecord } from './update-record.ts';

export interface LaunchPlan {
  /** The version to start (its versions/<version>/bin/fleetlm-agent). */
  version: string;
  /** Set when this start is the new agent's trial: it must confirm within `confirmTimeoutMs`. */
  trial: UpdateRecord | null;
}

/** Marks the update failed (reason first, so it survives a kill), then points `current` back at `from`. */
export async function rollBack(home: AgentHome, record: UpdateRecord, reason: string, log: Logger): Promise<UpdateRecord> {
  const next = await writeUpdateRecord(home.root, { ...record, state: 'rolled-back', reason, deadline: null });
  await home.switchCurrent(record.from);
  log.warn('self-update rolled back', { jobId: record.jobId, from: record.to, to: record.from, reason });
  return next;
}

async function ensureCurrent(home: AgentHome, version: string): Promise<void> {
  if ((await home.currentVersion()) !== version) await home.switchCurrent(version);
}

/**
 * Decides what to start. No record: `current`. `pending`: switch to `to` (again, harmlessly, if the agent
 * already did), count the attempt, start `to` on trial. `starting` at launch: the trial ended without a
 * confirmation (crash, kill, power cut), so roll back. `rolled-back`: `from`. `confirmed`: `to`.
 */
export async function planLaunch(home: AgentHome, log: Logger, hooks: { beforeTrialStart?: () => void } = {}): Promise<LaunchPlan> {
  await home.removeLeftovers();
  let record: UpdateRecord | null;
  try {
    record = await readUpdateRecord(home.root);
  } catch (err) {
    // Unreadable by this launcher (a newer format?): start what `current` says rather than nothing.
    log.error('cannot read the self-update record; starting the current version', { error: describeError(err) });
    record = null;
  }
  if (record?.state === 'pending') {
    try {
      await home.switchCurrent(record.to);
    } catch (err) {
      await rollBack(home, record, `cannot switch to ${record.to}: ${describeError(err)}`, log);
      return { version: record.from, trial: null };
    }
    const trial = await writeUpdateRecord(home.root, {
      ...record,
      state: 'starting',
      attempts: record.attempts + 1,
      deadline: Date.now() + record.confirmTimeoutMs,
    });
    hooks.beforeTrialStart?.();
    log.info('starting the new agent on trial', { jobId: trial.jobId, from: trial.from, to: trial.to, attempt: trial.attempts, confirmTimeoutMs: trial.confirmTimeoutMs });
    return { version: trial.to, trial };
  }
  if (record?.state === 'starting') {
    const reason = `agent ${record.to} stopped before it confirmed (start attempt ${record.attempts}: it crashed, was killed, or the device restarted)`;
    await rollBack(home, record, reason, log);
    return { version: record.from, trial: null };
  }
  if (record?.state === 'rolled-back') {
    await ensureCurrent(home, record.from);
    return { version: record.from, trial: null };
  }
  if (record?.state === 'confirmed') {
    await ensureCurrent(home, record.to);
    return { version: record.to, trial: null };
  }
  const current = await home.currentVersion();
  if (!current) throw new Error(`no agent is installed: ${home.root}/current is missing`);
  return { version: current, trial: null };
}

/** The agent's last words for a failure reason: its last error log line, else an uncaught error, else its last lines. */
export function lastWords(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '' && !/^\s+at /.test(l) && !/^Node\.js v\d/.test(l));
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    if (line.startsWith('{')) {
      try {
        const j = JSON.parse(line) as { level?: unknown; msg?: unknown; error?: unknown };
        if (j.level === 'error') return `${String(j.msg)}${j.error ? `: ${String(j.error)}` : ''}`.slice(0, 600);
      } catch {
        // not a log line
      }
    } else if (/^([A-Za-z]*Error|Uncaught)\b|\bError: /.test(line)) {
      return line.slice(0, 600);
    }
  }
  return lines.slice(-2).join(' | ').slice(-600);
}
