// Manifest signing with an AWS KMS asymmetric key (ECC_NIST_P256, SIGN_VERIFY). The digest is
// computed here and only the 32 bytes go to KMS, so manifests of any size sign in one call.
// https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html
import { createHash, createPublicKey } from 'node:crypto';
import { GetPublicKeyCommand, SignCommand, type KMSClient } from '@aws-sdk/client-kms';
import { TransportError, ValidationError } from '../common/errors.ts';
import type { ManifestSigner } from '../contracts/manifest-signing.ts';

/** Signs with KMS `Sign` (MessageType DIGEST, ECDSA_SHA_256); the result is a DER signature like LocalKeySigner's. */
export class KmsSigner implements ManifestSigner {
  readonly keyId: string;
  constructor(
    private readonly kms: KMSClient,
    keyId: string,
  ) {
    if (!keyId) throw new ValidationError('KMS key id must not be empty: pass --kms-key ARN or set kmsKeyId in the profile');
    this.keyId = keyId;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const digest = createHash('sha256').update(message).digest();
    let out;
    try {
      out = await this.kms.send(
        new SignCommand({ KeyId: this.keyId, Message: digest, MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' }),
      );
    } catch (err) {
      throw new TransportError(`KMS Sign with key ${this.keyId} failed`, { cause: err });
    }
    if (!out.Signature) throw new TransportError(`KMS Sign with key ${this.keyId} returned no signature`);
    return out.Signature;
  }
}

/**
 * Exports a KMS key's public key as PEM, for the agents' `fleetPublicKey` file.
 * https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html
 */
export async function exportKmsPublicKeyPem(kms: KMSClient, keyId: string): Promise<string> {
  let out;
  try {
    out = await kms.send(new GetPublicKeyCommand({ KeyId: keyId }));
  } catch (err) {
    throw new TransportError(`KMS GetPublicKey for ${keyId} failed`, { cause: err });
  }
  if (out.KeySpec !== 'ECC_NIST_P256' || out.KeyUsage !== 'SIGN_VERIFY' || !out.PublicKey) {
    throw new ValidationError(
      `KMS key ${keyId} must be ECC_NIST_P256 with usage SIGN_VERIFY; it is ${out.KeySpec ?? '?'} / ${out.KeyUsage ?? '?'}`,
    );
  }
  const key = createPublicKey({ key: Buffer.from(out.PublicKey), format: 'der', type: 'spki' });
  return key.export({ type: 'spki', format: 'pem' }).toString();
}
