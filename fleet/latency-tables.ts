// Where a group's merged layer-latency tables live in the artifact bucket (latency/<group>/<class>-<storage>.json),
// written by `fleetlm latency` and read by `fleetlm search --group`, `latency --check` and the pipeline.
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { TransportError } from '../common/errors.ts';
import { readLatencyTable, type LayerLatencyTable } from '../models/search/latency-table.ts';
import { createS3Client, type FleetProfile } from './profile.ts';

/** Prefix of the merged tables. */
export const LATENCY_PREFIX = 'latency/';

/** The storage name a search's weight bits select (the table's `storage`). */
export function storageOfBits(bits: 32 | 16 | 8 | 4 | undefined): string {
  return bits === 8 ? 'int8' : bits === 4 ? 'int4' : bits === 16 ? 'fp16' : 'fp32';
}

async function getText(s3: S3Client, bucket: string, key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!out.Body) throw new TransportError(`s3://${bucket}/${key} has no body`);
  return out.Body.transformToString();
}

/** Key of a group's merged table for one class and storage. */
export function mergedTableKey(group: string, deviceClass: string, storage: string): string {
  return `${LATENCY_PREFIX}${group}/${deviceClass}-${storage}.json`;
}

/** Writes a merged table where `fleetlm search --group` and the pipeline read it. */
export async function putMergedTable(s3: S3Client, bucket: string, key: string, table: unknown): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: JSON.stringify(table, null, 2), ContentType: 'application/json' }));
}

/** Reads a merged table (raw JSON), or null when the group has none for that class and storage. */
export async function getMergedTable(s3: S3Client, bucket: string, key: string): Promise<unknown | null> {
  try {
    return JSON.parse(await getText(s3, bucket, key));
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (err as Error).name === 'NoSuchKey') return null;
    throw new TransportError(`cannot read s3://${bucket}/${key}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The merged table of `group` for a device class and the search's weight bits, or null when the fleet
 * has not measured one (the search then uses the roofline and says so).
 */
export async function groupLatencyTable(
  profile: FleetProfile,
  group: string,
  deviceClass: string,
  weightBits: 32 | 16 | 8 | 4 | undefined,
): Promise<{ table: LayerLatencyTable; url: string } | null> {
  const bucket = profile.s3.bucket;
  const key = mergedTableKey(group, deviceClass, storageOfBits(weightBits));
  const value = await getMergedTable(createS3Client(profile), bucket, key);
  // Written by `fleetlm latency` of any version: read with the tolerant reader.
  return value === null ? null : { table: readLatencyTable(value, `s3://${bucket}/${key}`), url: `s3://${bucket}/${key}` };
}
