// The pending-update record, <agentHome>/pending-update.json: the one file that says where a self-update
// stands, shared by the agent (writes `pending`, `confirmed`; removes it) and the launcher (writes
// `starting`, `rolled-back`). Every write is atomic (temp, fsync, rename), so a kill -9 leaves the old or
// the new record, never a torn one.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { parseJsonWith } from '../../common/validate.ts';
import { AgentVersionSchema } from '../../contracts/agent-package.ts';

export const UPDATE_RECORD_FILE = 'pending-update.json';

/**
 * pending     the old agent unpacked `to` and is switching `current` to it (or has); the launcher starts `to` next.
 * starting    the launcher started `to` (its one attempt); only `confirmed` keeps it.
 * confirmed   `to` connected and reached the jobs service; it reports SUCCEEDED and removes the record.
 * rolled-back `current` points (or is being pointed) back at `from`; `from` reports FAILED with `reason`.
 */
export const UpdateStateSchema = z.enum(['pending', 'starting', 'confirmed', 'rolled-back']);
export type UpdateState = z.output<typeof UpdateStateSchema>;

export const UpdateRecordSchema = z
  .object({
    schema: z.literal('fleetlm/agent-update-state@1'),
    jobId: z.string().min(1).max(64),
    from: AgentVersionSchema,
    to: AgentVersionSchema,
    state: UpdateStateSchema,
    /** Start attempts of `to` so far (the launcher allows one). */
    attempts: z.number().int().nonnegative(),
    /** How long `to` has, from its start, to confirm. */
    confirmTimeoutMs: z.number().int().positive(),
    /** Wall-clock deadline of the running attempt (ms since the epoch), for people; the launcher times it monotonically. */
    deadline: z.number().int().nullable(),
    /** Why the update was rolled back. */
    reason: z.string().max(2000).nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .strict();
export type UpdateRecord = z.output<typeof UpdateRecordSchema>;

/** Path of the record under `agentHome`. */
export function updateRecordPath(agentHome: string): string {
  return path.join(agentHome, UPDATE_RECORD_FILE);
}

/** Reads the record; null when there is none. A corrupt record is an error (it is never half-written). */
export async function readUpdateRecord(agentHome: string): Promise<UpdateRecord | null> {
  const file = updateRecordPath(agentHome);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return parseJsonWith(UpdateRecordSchema, text, `self-update record ${file}`);
}

/** Writes the record atomically, stamping `updatedAt`. */
export async function writeUpdateRecord(agentHome: string, record: UpdateRecord): Promise<UpdateRecord> {
  const next = { ...record, updatedAt: new Date().toISOString() };
  await writeJsonAtomic(updateRecordPath(agentHome), next);
  return next;
}

/** Removes the record (the update is over and reported). */
export async function removeUpdateRecord(agentHome: string): Promise<void> {
  await fs.rm(updateRecordPath(agentHome), { force: true });
}

/** A fresh record in `pending`. */
export function newUpdateRecord(jobId: string, from: string, to: string, confirmTimeoutMs: number): UpdateRecord {
  const now = new Date().toISOString();
  return { schema: 'fleetlm/agent-update-state@1', jobId, from, to, state: 'pending', attempts: 0, confirmTimeoutMs, deadline: null, reason: null, createdAt: now, updatedAt: now };
}
