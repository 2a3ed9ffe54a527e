// A signed rollback: the fleet key's explicit permission to install one older model version below the
// device's security-version floor. The old manifest cannot change (its signature covers it), so the
// permission is a separate small document, signed like a manifest and carried in the job document.
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { ManifestSignatureSchema, ModelIdSchema, ModelVersionSchema } from './manifest.ts';
import { signManifestBytes, verifyManifestBytes, type ManifestSigner } from './manifest-signing.ts';

export const ROLLBACK_AUTHORIZATION_FORMAT = 'fleetlm/rollback-authorization@1';

/** Failure codes an agent reports (job FAILED) when it refuses an install on security-version grounds. */
export const ANTI_ROLLBACK_CODES = {
  /** The manifest's securityVersion is below the device's floor and the job carries no rollback authorization. */
  refused: 'VALIDATION_ROLLBACK_REFUSED',
  /** A rollback authorization is present but not signed by the fleet key, names another version, or expired. */
  badAuthorization: 'VALIDATION_ROLLBACK_AUTHORIZATION',
  /** The manifest's expiresAt has passed. */
  expired: 'VALIDATION_MANIFEST_EXPIRED',
} as const;

export const RollbackAuthorizationSchema = z
  .object({
    format: z.literal(ROLLBACK_AUTHORIZATION_FORMAT),
    modelId: ModelIdSchema,
    /** The one version this permits installing below the floor. */
    version: ModelVersionSchema,
    issuedAt: z.string().datetime(),
    /** Short-lived: a captured authorization cannot be replayed after this. */
    expiresAt: z.string().datetime(),
  })
  .strict();

export type RollbackAuthorization = z.output<typeof RollbackAuthorizationSchema>;

/** What the job document carries: the exact signed bytes (as text) and their detached signature. */
export const SignedRollbackAuthorizationSchema = z
  .object({
    authorization: z.string().min(1).max(2048),
    signature: ManifestSignatureSchema,
  })
  .strict();

export type SignedRollbackAuthorization = z.output<typeof SignedRollbackAuthorizationSchema>;

/** Longest validity `signRollbackAuthorization` grants. */
export const MAX_ROLLBACK_AUTHORIZATION_MS = 7 * 24 * 3600_000;

/** Signs a rollback authorization for `modelId@version`, valid for `validForMs` from `now`. */
export async function signRollbackAuthorization(
  target: { modelId: string; version: string },
  signer: ManifestSigner,
  opts: { validForMs?: number; now?: Date } = {},
): Promise<SignedRollbackAuthorization> {
  const now = opts.now ?? new Date();
  const validFor = opts.validForMs ?? 24 * 3600_000;
  if (!(validFor > 0 && validFor <= MAX_ROLLBACK_AUTHORIZATION_MS)) {
    throw new ValidationError(`a rollback authorization is valid for 1 ms to ${MAX_ROLLBACK_AUTHORIZATION_MS / 3600_000} h, got ${validFor} ms`);
  }
  const auth: RollbackAuthorization = {
    format: ROLLBACK_AUTHORIZATION_FORMAT,
    modelId: target.modelId,
    version: target.version,
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + validFor).toISOString(),
  };
  const text = JSON.stringify(auth);
  return { authorization: text, signature: await signManifestBytes(Buffer.from(text), signer) };
}

/** Throws VALIDATION_ROLLBACK_AUTHORIZATION unless `signed` is the fleet key's permission for `target`, valid at `now`. */
export function verifyRollbackAuthorization(
  signed: SignedRollbackAuthorization,
  publicKeyPem: string,
  target: { modelId: string; version: string },
  now = new Date(),
): RollbackAuthorization {
  const code = ANTI_ROLLBACK_CODES.badAuthorization;
  if (!verifyManifestBytes(Buffer.from(signed.authorization), signed.signature, publicKeyPem)) {
    throw new ValidationError('the rollback authorization is not signed by the fleet key', { code });
  }
  let auth: RollbackAuthorization;
  try {
    auth = parseJsonWith(RollbackAuthorizationSchema, signed.authorization, 'rollback authorization');
  } catch (err) {
    throw new ValidationError(`the rollback authorization is malformed: ${(err as Error).message}`, { code, cause: err });
  }
  if (auth.modelId !== target.modelId || auth.version !== target.version) {
    throw new ValidationError(`the rollback authorization is for ${auth.modelId}@${auth.version}, not ${target.modelId}@${target.version}`, { code });
  }
  if (Date.parse(auth.expiresAt) <= now.getTime()) {
    throw new ValidationError(`the rollback authorization expired at ${auth.expiresAt}`, { code });
  }
  return auth;
}
