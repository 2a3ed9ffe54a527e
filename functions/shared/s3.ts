// S3 helpers for handlers: JSON objects and whole directories moved between /tmp and a key prefix.
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listKeys } from '../../fleet/s3-list.ts';
import type { z } from 'zod';
import { TransportError } from '../../common/errors.ts';
import { parseJsonWith } from '../../common/validate.ts';

/** Writes `value` as JSON to s3://bucket/key. */
export async function putJson(s3: S3Client, bucket: string, key: string, value: unknown): Promise<void> {
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${JSON.stringify(value, null, 2)}\n`, ContentType: 'application/json' }));
  } catch (err) {
    throw new TransportError(`PutObject s3://${bucket}/${key} failed`, { cause: err });
  }
}

/** Reads s3://bucket/key as bytes. */
export async function getBytes(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!out.Body) throw new Error('empty body');
    return Buffer.from(await out.Body.transformToByteArray());
  } catch (err) {
    throw new TransportError(`GetObject s3://${bucket}/${key} failed`, { cause: err });
  }
}

/** Reads and validates a JSON object. */
export async function getJson<S extends z.ZodType>(s3: S3Client, bucket: string, key: string, schema: S): Promise<z.output<S>> {
  return parseJsonWith(schema, (await getBytes(s3, bucket, key)).toString('utf8'), `s3://${bucket}/${key}`);
}

/** Uploads every regular file of `dir` (not recursive) under `prefix`; returns names and total bytes. */
export async function uploadDir(s3: S3Client, bucket: string, dir: string, prefix: string): Promise<{ files: string[]; bytes: number }> {
  const entries = (await fs.readdir(dir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name).sort();
  let bytes = 0;
  for (const name of entries) {
    const full = path.join(dir, name);
    const { size } = await fs.stat(full);
    try {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + name, Body: createReadStream(full), ContentLength: size }));
    } catch (err) {
      throw new TransportError(`upload of ${full} to s3://${bucket}/${prefix}${name} failed`, { cause: err });
    }
    bytes += size;
  }
  return { files: entries, bytes };
}

/** Streams one object to `file` (temp file + rename, so a failed download leaves nothing behind). */
export async function downloadFile(s3: S3Client, bucket: string, key: string, file: string): Promise<void> {
  const tmp = `${file}.part`;
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!out.Body) throw new Error('empty body');
    await pipeline(out.Body as Readable, createWriteStream(tmp));
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw new TransportError(`download of s3://${bucket}/${key} to ${file} failed`, { cause: err });
  }
}

/** Downloads every object directly under `prefix` into `dir`; returns the file names. */
export async function downloadPrefix(s3: S3Client, bucket: string, prefix: string, dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const key of await listKeys(s3, bucket, prefix)) {
    const rest = key.slice(prefix.length);
    if (!rest || rest.includes('/')) continue;
    await downloadFile(s3, bucket, key, path.join(dir, rest));
    names.push(rest);
  }
  return names.sort();
}

/** A fresh scratch directory under the Lambda's /tmp. */
export async function scratchDir(root: string, name: string): Promise<string> {
  const dir = path.join(root, `fleetlm-${name}-${process.pid}-${Date.now().toString(36)}`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  return dir;
}
