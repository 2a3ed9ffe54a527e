// Uploads one local file to S3 only if the key is still free (`If-None-Match: *`): a single PutObject up to a
// threshold, a multipart upload above it (S3 caps PutObject at 5 GB; a 1B-parameter fp16 model is 2.2 GB),
// with progress per part. Uses the client's own multipart commands; @aws-sdk/lib-storage would add
// parallel parts, but conditional completion is what publishing needs.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
import { createReadStream } from 'node:fs';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { TransportError, ValidationError } from '../common/errors.ts';

/** Files above this go up in parts. */
export const DEFAULT_MULTIPART_THRESHOLD_BYTES = 64 * 2 ** 20;
/** Part size; raised when a file would need more than S3's 10,000 parts. */
export const DEFAULT_PART_SIZE_BYTES = 16 * 2 ** 20;
/** S3's smallest part (all but the last) and most parts per upload. */
export const MIN_PART_SIZE_BYTES = 5 * 2 ** 20;
export const MAX_PARTS = 10_000;

export interface FileUpload {
  bucket: string;
  key: string;
  file: string;
  size: number;
  contentType: string;
  metadata?: Record<string, string>;
}

export interface UploadOptions {
  multipartThresholdBytes?: number;
  partSizeBytes?: number;
  /** Called with the bytes sent so far for this file, after each part (or once for a single PutObject). */
  onBytes?: (sent: number) => void;
}

function isPreconditionFailed(err: unknown): boolean {
  return err instanceof S3ServiceException && (err.name === 'PreconditionFailed' || err.$metadata?.httpStatusCode === 412);
}

/** The part size for a file: the requested size, raised so the file fits in MAX_PARTS parts. */
export function partSizeFor(size: number, requested = DEFAULT_PART_SIZE_BYTES): number {
  if (requested < MIN_PART_SIZE_BYTES) throw new ValidationError(`multipart part size must be at least ${MIN_PART_SIZE_BYTES} bytes (S3's minimum); got ${requested}`);
  return Math.max(requested, Math.ceil(size / MAX_PARTS));
}

/** Uploads `u.file` unless `u.key` exists; false when it exists (nothing was written). */
export async function uploadFileIfAbsent(s3: S3Client, u: FileUpload, opts: UploadOptions = {}): Promise<boolean> {
  const threshold = opts.multipartThresholdBytes ?? DEFAULT_MULTIPART_THRESHOLD_BYTES;
  const where = `s3://${u.bucket}/${u.key}`;
  if (u.size <= threshold) {
    try {
      await s3.send(
        new PutObjectCommand({ Bucket: u.bucket, Key: u.key, Body: createReadStream(u.file), ContentLength: u.size, ContentType: u.contentType, Metadata: u.metadata, IfNoneMatch: '*' }),
      );
    } catch (err) {
      if (isPreconditionFailed(err)) return false;
      throw new TransportError(`upload of ${u.file} to ${where} failed`, { cause: err });
    }
    opts.onBytes?.(u.size);
    return true;
  }
  const partSize = partSizeFor(u.size, opts.partSizeBytes);
  let uploadId: string | undefined;
  try {
    uploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket: u.bucket, Key: u.key, ContentType: u.contentType, Metadata: u.metadata }))).UploadId;
    if (!uploadId) throw new TransportError(`CreateMultipartUpload for ${where} returned no upload id`);
    const parts: CompletedPart[] = [];
    // Parts go up one at a time: memory stays at one stream buffer, and a slow link is not made slower by contention.
    for (let start = 0, n = 1; start < u.size; start += partSize, n++) {
      const end = Math.min(u.size, start + partSize);
      const out = await s3.send(
        new UploadPartCommand({ Bucket: u.bucket, Key: u.key, UploadId: uploadId, PartNumber: n, Body: createReadStream(u.file, { start, end: end - 1 }), ContentLength: end - start }),
      );
      parts.push({ PartNumber: n, ETag: out.ETag });
      opts.onBytes?.(end);
    }
    // The condition is checked when the parts are joined: a key that appeared meanwhile wins.
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: u.bucket, Key: u.key, UploadId: uploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: '*' }));
    return true;
  } catch (err) {
    if (uploadId) await s3.send(new AbortMultipartUploadCommand({ Bucket: u.bucket, Key: u.key, UploadId: uploadId })).catch(() => undefined);
    if (isPreconditionFailed(err)) return false;
    if (err instanceof TransportError) throw err;
    throw new TransportError(`multipart upload of ${u.file} to ${where} failed`, { cause: err });
  }
}
