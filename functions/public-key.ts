// CloudFormation custom resource: exports the manifest-signing key's public key as PEM, writes it to
// the artifacts bucket (keys/manifest-signing.pub.pem) for `fleetlm device register`, and returns
// it as an attribute. https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';
import { exportKmsPublicKeyPem } from '../fleet/kms-signer.ts';
import { handlerEnv, kmsClient, s3Client } from './shared/env.ts';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { TransportError } from '../common/errors.ts';
import { sha256Hex } from '../contracts/manifest-signing.ts';

import { PUBLIC_KEY_OBJECT } from './shared/constants.ts';

export { PUBLIC_KEY_OBJECT };

const PropsSchema = z.object({ KeyArn: z.string().min(1), ServiceToken: z.string().optional() }).passthrough();

export interface PublicKeyResult {
  PhysicalResourceId: string;
  Data: { PublicKeyPem: string; PublicKeyObject: string; PublicKeySha256: string };
}

/** Custom resource onEvent handler (the Provider framework handles the CloudFormation response). */
export async function handler(event: CloudFormationCustomResourceEvent): Promise<PublicKeyResult | { PhysicalResourceId: string }> {
  const physicalId = 'PhysicalResourceId' in event ? event.PhysicalResourceId : `manifest-public-key`;
  // Deleting the stack leaves the PEM: agents in the field may still verify old bundles with it.
  if (event.RequestType === 'Delete') return { PhysicalResourceId: physicalId };
  const props = parseWith(PropsSchema, event.ResourceProperties, 'public key resource properties');
  const env = handlerEnv();
  const pem = await exportKmsPublicKeyPem(kmsClient(env), props.KeyArn);
  try {
    await s3Client(env).send(
      new PutObjectCommand({ Bucket: env.ARTIFACTS_BUCKET, Key: PUBLIC_KEY_OBJECT, Body: pem, ContentType: 'application/x-pem-file' }),
    );
  } catch (err) {
    throw new TransportError(`PutObject s3://${env.ARTIFACTS_BUCKET}/${PUBLIC_KEY_OBJECT} failed`, { cause: err });
  }
  return {
    PhysicalResourceId: physicalId,
    Data: { PublicKeyPem: pem, PublicKeyObject: `s3://${env.ARTIFACTS_BUCKET}/${PUBLIC_KEY_OBJECT}`, PublicKeySha256: sha256Hex(Buffer.from(pem)) },
  };
}
