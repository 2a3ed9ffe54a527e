// The rollback authorization contract: a signed permission names the devices it is for (things and/or thing
// groups); a device not named, an unscoped authorization of the earlier format, a tampered scope, another version
// or an expired one is refused with VALIDATION_ROLLBACK_AUTHORIZATION.
import { describe, expect, it } from 'vitest';
import { LocalKeySigner, generateSigningKeyPair, signManifestBytes } from '../../contracts/manifest-signing.ts';
import {
  LEGACY_ROLLBACK_AUTHORIZATION_FORMAT,
  ROLLBACK_AUTHORIZATION_FORMAT,
  scopeNamesDevice,
  signRollbackAuthorization,
  verifyRollbackAuthorization,
  type RollbackDevice,
  type SignedRollbackAuthorization,
} from '../../contracts/rollback-authorization.ts';
import { ValidationError } from '../../common/errors.ts';

const keys = generateSigningKeyPair();
const signer = new LocalKeySigner(keys.privateKeyPem);
const target = { modelId: 'tiny', version: '1' };
const pi1: RollbackDevice = { thingName: 'pi-1', thingGroups: ['fleetlm-rpi5'] };
const orin: RollbackDevice = { thingName: 'orin-1', thingGroups: ['fleetlm-orin'] };

function refusal(signed: SignedRollbackAuthorization, device: RollbackDevice, now?: Date): ValidationError {
  try {
    verifyRollbackAuthorization(signed, keys.publicKeyPem, target, device, now);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe('VALIDATION_ROLLBACK_AUTHORIZATION');
    return err as ValidationError;
  }
  throw new Error(`expected ${device.thingName} to refuse the authorization`);
}

describe('scoped rollback authorization', () => {
  it('given a group scope, then devices that list the group accept it and others refuse it, naming both sides', async () => {
    const signed = await signRollbackAuthorization({ ...target, scope: { thingGroups: ['fleetlm-rpi5'] } }, signer);
    const auth = verifyRollbackAuthorization(signed, keys.publicKeyPem, target, pi1);
    expect(auth).toMatchObject({ format: ROLLBACK_AUTHORIZATION_FORMAT, scope: { things: [], thingGroups: ['fleetlm-rpi5'] } });
    expect(refusal(signed, orin).message).toMatch(/thing groups \[fleetlm-rpi5\], not this device \(orin-1, groups \[fleetlm-orin\]/);
    // A device whose configuration lists no group cannot accept a group-scoped authorization.
    refusal(signed, { thingName: 'pi-1', thingGroups: [] });
  });

  it('given a thing scope, then only the named things accept it', async () => {
    const signed = await signRollbackAuthorization({ ...target, scope: { things: ['orin-1', 'pi-7'] } }, signer);
    expect(verifyRollbackAuthorization(signed, keys.publicKeyPem, target, orin).scope.things).toEqual(['orin-1', 'pi-7']);
    refusal(signed, pi1);
  });

  it('given an empty scope or a bad name, then signing refuses before anything is signed', async () => {
    await expect(signRollbackAuthorization({ ...target, scope: {} }, signer)).rejects.toThrow(/at least one thing or thing group/);
    await expect(signRollbackAuthorization({ ...target, scope: { things: ['no spaces'] } }, signer)).rejects.toThrow(ValidationError);
  });

  it('given an unscoped authorization of the earlier format, even fleet-signed and unexpired, then it is refused and the message says how to issue a scoped one', async () => {
    const now = new Date();
    const text = JSON.stringify({ format: LEGACY_ROLLBACK_AUTHORIZATION_FORMAT, ...target, issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 3600_000).toISOString() });
    const legacy = { authorization: text, signature: await signManifestBytes(Buffer.from(text), signer) };
    expect(refusal(legacy, pi1).message).toMatch(/names no devices.*fleetlm rollback --group G --key\/--kms-key/);
  });

  it('given a scope widened after signing, then the signature no longer matches', async () => {
    const signed = await signRollbackAuthorization({ ...target, scope: { thingGroups: ['fleetlm-rpi5'] } }, signer);
    const widened = { ...signed, authorization: signed.authorization.replace('"thingGroups":["fleetlm-rpi5"]', '"thingGroups":["fleetlm-rpi5","fleetlm-orin"]') };
    expect(widened.authorization).not.toBe(signed.authorization);
    expect(refusal(widened, orin).message).toMatch(/not signed by the fleet key/);
  });

  it('given another version or an expired authorization for the right device, then it is refused', async () => {
    const scope = { things: ['pi-1'] };
    const other = await signRollbackAuthorization({ modelId: 'tiny', version: '0.9', scope }, signer);
    expect(refusal(other, pi1).message).toMatch(/is for tiny@0\.9, not tiny@1/);
    const signed = await signRollbackAuthorization({ ...target, scope }, signer, { validForMs: 1000, now: new Date(0) });
    expect(refusal(signed, pi1, new Date(5000)).message).toMatch(/expired/);
  });

  it('scopeNamesDevice: a thing name or any shared group', () => {
    const scope = { things: ['a'], thingGroups: ['g1', 'g2'] };
    expect(scopeNamesDevice(scope, { thingName: 'a', thingGroups: [] })).toBe(true);
    expect(scopeNamesDevice(scope, { thingName: 'b', thingGroups: ['g0', 'g2'] })).toBe(true);
    expect(scopeNamesDevice(scope, { thingName: 'b', thingGroups: ['g0'] })).toBe(false);
  });
});
