// ECDSA P-256 signatures over manifest.json bytes. Local mode signs with a PEM key file;
// the cloud signs the same digest with an AWS KMS ECC_NIST_P256 key (see fleet/kms-signer.ts).
// Both produce DER signatures, so one verifier serves both.
import { sha256Hex } from '../common/hash.ts';

export { sha256Hex };
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { ValidationError } from '../common/errors.ts';
import type { ManifestSignature } from './manifest.ts';

/**
 * Signs message bytes with ECDSA P-256 over SHA-256 and returns a DER signature.
 * A KMS-backed signer hashes locally and sends only the digest (MessageType DIGEST).
 */
export interface ManifestSigner {
  readonly keyId: string;
  sign(message: Uint8Array): Promise<Uint8Array>;
}


/** A stable short id for a public key: sha256 of its SPKI DER, first 16 hex chars. */
export function keyFingerprint(publicKey: KeyObject): string {
  return sha256Hex(publicKey.export({ type: 'spki', format: 'der' })).slice(0, 16);
}

/** Generates a P-256 key pair as PEM strings. */
export function generateSigningKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Signer backed by a local PEM private key (local mode and tests). */
export class LocalKeySigner implements ManifestSigner {
  readonly keyId: string;
  private readonly key: KeyObject;
  constructor(privateKeyPem: string) {
    this.key = createPrivateKey(privateKeyPem);
    const details = this.key.asymmetricKeyDetails;
    if (this.key.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'prime256v1') {
      throw new ValidationError('manifest signing key must be an EC P-256 private key');
    }
    this.keyId = `local:${keyFingerprint(createPublicKey(this.key))}`;
  }
  async sign(message: Uint8Array): Promise<Uint8Array> {
    return sign('sha256', message, { key: this.key, dsaEncoding: 'der' });
  }
}

/** Signs manifest.json bytes and returns the detached signature document. */
export async function signManifestBytes(manifestBytes: Uint8Array, signer: ManifestSigner): Promise<ManifestSignature> {
  const digestHex = sha256Hex(manifestBytes);
  const der = await signer.sign(manifestBytes);
  return {
    format: 'fleetlm/manifest-signature@1',
    algorithm: 'ECDSA_SHA_256',
    keyId: signer.keyId,
    signature: Buffer.from(der).toString('base64'),
    manifestSha256: digestHex,
  };
}

/** True when `sig` is a valid ECDSA P-256 / SHA-256 signature of `manifestBytes` by `publicKeyPem`. */
export function verifyManifestBytes(manifestBytes: Uint8Array, sig: ManifestSignature, publicKeyPem: string): boolean {
  if (sha256Hex(manifestBytes) !== sig.manifestSha256) return false;
  let key: KeyObject;
  try {
    key = createPublicKey(publicKeyPem);
  } catch (err) {
    throw new ValidationError('fleet public key is not a valid PEM public key', { cause: err });
  }
  try {
    return verify('sha256', manifestBytes, { key, dsaEncoding: 'der' }, Buffer.from(sig.signature, 'base64'));
  } catch {
    return false;
  }
}
