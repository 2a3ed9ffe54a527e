// Anti-rollback: the highest security version installed per model id (kept in the state directory), and
// the check that refuses an older one unless the job carries the fleet key's signed rollback authorization for this device.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { ValidationError, describeError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import type { DeployModelDocument } from '../contracts/job-document.ts';
import type { Manifest } from '../contracts/manifest.ts';
import { ANTI_ROLLBACK_CODES, verifyRollbackAuthorization, type RollbackDevice } from '../contracts/rollback-authorization.ts';
import type { Logger } from './log.ts';

const FILE = 'security-versions.json';
const FloorsSchema = z.record(z.string(), z.number().int().min(0));

/** The security-version floor per model id: only ever raised, on a committed install. */
export class SecurityFloors {
  private constructor(
    private readonly file: string,
    private readonly floors: Record<string, number>,
  ) {}

  /** Reads the floors; a damaged file is logged and rebuilt from the installed models' manifests by the caller. */
  static async open(stateDir: string, log: Logger): Promise<SecurityFloors> {
    const file = path.join(stateDir, FILE);
    let floors: Record<string, number> = {};
    try {
      floors = parseJsonWith(FloorsSchema, await fs.readFile(file, 'utf8'), file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('security version floors unreadable; starting from the installed model', { file, error: describeError(err) });
    }
    return new SecurityFloors(file, floors);
  }

  /** Highest security version installed for `modelId` (0 when none). */
  floor(modelId: string): number {
    return this.floors[modelId] ?? 0;
  }

  /** Raises the floor for `manifest`'s model to its security version (never lowers it). */
  async record(manifest: Pick<Manifest, 'modelId' | 'securityVersion'>): Promise<void> {
    const v = manifest.securityVersion ?? 0;
    if (v <= this.floor(manifest.modelId)) return;
    this.floors[manifest.modelId] = v;
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    await writeFileAtomic(this.file, `${JSON.stringify(this.floors, null, 2)}\n`);
  }
}

/**
 * Throws (codes in ANTI_ROLLBACK_CODES) when `manifest` may not be installed: expired, or below `floor`
 * without a valid rollback authorization for exactly this version and naming `device` in the job document.
 */
export function checkSecurityVersion(manifest: Manifest, doc: DeployModelDocument, floor: number, publicKeyPem: string, device: RollbackDevice, now = new Date()): void {
  if (manifest.expiresAt !== undefined && Date.parse(manifest.expiresAt) <= now.getTime()) {
    throw new ValidationError(`manifest of ${manifest.modelId}@${manifest.version} expired at ${manifest.expiresAt}`, { code: ANTI_ROLLBACK_CODES.expired });
  }
  const v = manifest.securityVersion ?? 0;
  if (v >= floor) return;
  if (!doc.rollbackAuthorization) {
    throw new ValidationError(
      `${manifest.modelId}@${manifest.version} has security version ${v}, below ${floor} already installed on this device; only a signed rollback naming this device or its group (fleetlm rollback --group G --key/--kms-key) may install it`,
      { code: ANTI_ROLLBACK_CODES.refused },
    );
  }
  verifyRollbackAuthorization(doc.rollbackAuthorization, publicKeyPem, manifest, device, now);
}
