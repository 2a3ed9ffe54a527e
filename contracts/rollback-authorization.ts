// A signed rollback: the fleet key's explicit permission for the devices it names (things and/or thing groups)
// to install one older model version below their security-version floor. The old manifest cannot change (its
// signature covers it), so the permission is a separate small document, signed like a manifest and carried in
// the job document. Format @1 named no devices and could be replayed to any device; agents refuse it.
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith, parseWith } from '../common/validate.ts';
import { ManifestSignatureSchema, ModelIdSchema, ModelVersionSchema } from './manifest.ts';
import { isThingName } from './jobs-topics.ts';
import { signManifestBytes, verifyManifestBytes, type ManifestSigner } from './manifest-signing.ts';

export const ROLLBACK_AUTHORIZATION_FORMAT = 'fleetlm/rollback-authorization@2';
/** The unscoped format of earlier releases: valid for every device, so refused. */
export const LEGACY_ROLLBACK_AUTHORIZATION_FORMAT = 'fleetlm/rollback-authorization@1';

/** Failure codes an agent reports (job FAILED) when it refuses an install on security-version grounds. */
export const ANTI_ROLLBACK_CODES = {
  /** The manifest's securityVersion is below the device's floor and the job carries no rollback authorization. */
  refused: 'VALIDATION_ROLLBACK_REFUSED',
  /** A rollback authorization is present but not signed by the fleet key, names another version or other devices, is unscoped (@1), or expired. */
  badAuthorization: 'VALIDATION_ROLLBACK_AUTHORIZATION',
  /** The manifest's expiresAt has passed. */
  expired: 'VALIDATION_MANIFEST_EXPIRED',
} as const;

const ThingNameSchema = z.string().refine(isThingName, 'must be 1-128 of [a-zA-Z0-9:_-]');

/** Which devices may use an authorization: named things, members of named thing groups, or both (at least one name). */
export const RollbackScopeSchema = z
  .object({
    things: z.array(ThingNameSchema).max(100).default([]),
    thingGroups: z.array(ThingNameSchema).max(20).default([]),
  })
  .strict()
  .refine((s) => s.things.length + s.thingGroups.length > 0, { message: 'must name at least one thing or thing group' });

export type RollbackScope = z.output<typeof RollbackScopeSchema>;
export type RollbackScopeInput = z.input<typeof RollbackScopeSchema>;

export const RollbackAuthorizationSchema = z
  .object({
    format: z.literal(ROLLBACK_AUTHORIZATION_FORMAT),
    modelId: ModelIdSchema,
    /** The one version this permits installing below the floor. */
    version: ModelVersionSchema,
    /** The devices it permits: a device not named here refuses it, so a captured one cannot be replayed elsewhere. */
    scope: RollbackScopeSchema,
    issuedAt: z.string().datetime(),
    /** Short-lived: a captured authorization cannot be replayed after this. */
    expiresAt: z.string().datetime(),
  })
  .strict();

export type RollbackAuthorization = z.output<typeof RollbackAuthorizationSchema>;

/** What the job document carries: the exact signed bytes (as text) and their detached signature. */
export const SignedRollbackAuthorizationSchema = z
  .object({
    authorization: z.string().min(1).max(16_384),
    signature: ManifestSignatureSchema,
  })
  .strict();

export type SignedRollbackAuthorization = z.output<typeof SignedRollbackAuthorizationSchema>;

/** Longest validity `signRollbackAuthorization` grants. */
export const MAX_ROLLBACK_AUTHORIZATION_MS = 7 * 24 * 3600_000;

/** Signs a rollback authorization for `modelId@version` on the devices `scope` names, valid for `validForMs` from `now`. */
export async function signRollbackAuthorization(
  target: { modelId: string; version: string; scope: RollbackScopeInput },
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
    scope: parseWith(RollbackScopeSchema, target.scope, 'rollback authorization scope'),
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + validFor).toISOString(),
  };
  const text = JSON.stringify(auth);
  return { authorization: text, signature: await signManifestBytes(Buffer.from(text), signer) };
}

/**
 * Reads what a signed authorization says without checking its signature (the operator's CLI does this to refuse,
 * before creating a job, an authorization the devices would refuse anyway; devices verify the signature).
 */
export function readRollbackAuthorization(signed: SignedRollbackAuthorization): RollbackAuthorization {
  const code = ANTI_ROLLBACK_CODES.badAuthorization;
  try {
    return parseJsonWith(RollbackAuthorizationSchema, signed.authorization, 'rollback authorization');
  } catch (err) {
    throw new ValidationError(`the rollback authorization is not a scoped ${ROLLBACK_AUTHORIZATION_FORMAT}: ${(err as Error).message}`, { code, cause: err });
  }
}

/** The device checking an authorization: its thing name and the thing groups its configuration says it is in. */
export interface RollbackDevice {
  thingName: string;
  thingGroups: readonly string[];
}

/** True when `scope` names the device itself or one of its thing groups. */
export function scopeNamesDevice(scope: RollbackScope, device: RollbackDevice): boolean {
  return scope.things.includes(device.thingName) || scope.thingGroups.some((g) => device.thingGroups.includes(g));
}

/**
 * Throws VALIDATION_ROLLBACK_AUTHORIZATION unless `signed` is the fleet key's permission for `target` on `device`,
 * valid at `now`. Unscoped authorizations (format @1) are refused: they would let one captured rollback be replayed
 * to every device of the fleet.
 */
export function verifyRollbackAuthorization(
  signed: SignedRollbackAuthorization,
  publicKeyPem: string,
  target: { modelId: string; version: string },
  device: RollbackDevice,
  now = new Date(),
): RollbackAuthorization {
  const code = ANTI_ROLLBACK_CODES.badAuthorization;
  if (!verifyManifestBytes(Buffer.from(signed.authorization), signed.signature, publicKeyPem)) {
    throw new ValidationError('the rollback authorization is not signed by the fleet key', { code });
  }
  let format: unknown;
  try {
    format = (JSON.parse(signed.authorization) as { format?: unknown }).format;
  } catch {
    format = undefined;
  }
  if (format === LEGACY_ROLLBACK_AUTHORIZATION_FORMAT) {
    throw new ValidationError(
      `the rollback authorization is ${LEGACY_ROLLBACK_AUTHORIZATION_FORMAT}, which names no devices and is no longer accepted; issue a scoped one (${ROLLBACK_AUTHORIZATION_FORMAT}) with \`fleetlm rollback --group G --key/--kms-key\``,
      { code },
    );
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
  if (!scopeNamesDevice(auth.scope, device)) {
    throw new ValidationError(
      `the rollback authorization names things [${auth.scope.things.join(', ')}] and thing groups [${auth.scope.thingGroups.join(', ')}], not this device (${device.thingName}, groups [${device.thingGroups.join(', ')}] from its configuration)`,
      { code },
    );
  }
  if (Date.parse(auth.expiresAt) <= now.getTime()) {
    throw new ValidationError(`the rollback authorization expired at ${auth.expiresAt}`, { code });
  }
  return auth;
}
