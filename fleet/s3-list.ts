// Listing the keys under an S3 prefix: every page through the SDK's paginator, one error for a failed listing.
import { paginateListObjectsV2, type S3Client } from '@aws-sdk/client-s3';
import { TransportError } from '../common/errors.ts';

/** Every key under `prefix` in `bucket`, in S3's order (UTF-8 binary). */
export async function listKeys(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  try {
    for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket: bucket, Prefix: prefix })) {
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
    }
  } catch (err) {
    throw new TransportError(`cannot list s3://${bucket}/${prefix}`, { cause: err });
  }
  return keys;
}
