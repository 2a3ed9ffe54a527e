// Checks on bucket names and object keys at the S3 store's boundary, before either reaches the disk.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html, .../object-keys.html
import { S3Error } from './s3-error.ts';

/** S3's longest object key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** Why `name` is not a valid S3 bucket name (general-purpose bucket rules), or undefined when it is. */
export function bucketNameProblem(name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return 'must be 3 to 63 characters long';
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) return 'may hold only lowercase letters, digits, dots and hyphens, and must start and end with a letter or digit';
  if (name.includes('..')) return 'must not hold two adjacent dots';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return 'must not look like an IP address';
  return undefined;
}

/**
 * Why `key` is refused by this store, or undefined when it is accepted. AWS stores `../x` verbatim; this store
 * refuses keys whose segments climb (`.` or `..`, also percent-encoded as `..%2F`), a leading `/`, backslashes
 * and NUL, so that no consumer that maps keys to paths (an agent, a sync tool) can be walked out of its folder.
 * The store itself never builds a path from a key (objects are filed under a hash of the key).
 */
export function unsafeObjectKey(key: string): string | undefined {
  if (key.length === 0) return 'is empty';
  if (key.includes('\\') || key.includes('\0')) return 'holds a backslash or NUL';
  if (key.startsWith('/')) return 'starts with "/"';
  if (key.split('/').some((seg) => seg === '..' || seg === '.')) return 'has a "." or ".." segment';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `is longer than ${MAX_KEY_BYTES} bytes`;
  return undefined;
}

/** Throws InvalidBucketName unless `name` is a valid bucket name. */
export function assertBucketName(name: string): void {
  const problem = bucketNameProblem(name);
  if (problem) throw new S3Error(400, 'InvalidBucketName', `The specified bucket is not valid: bucket ${JSON.stringify(name)} ${problem}`, { BucketName: name });
}

/** Throws InvalidArgument (KeyTooLongError for long keys) unless the store accepts `key`. */
export function assertObjectKey(key: string): void {
  const problem = unsafeObjectKey(key);
  if (!problem) return;
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error(400, 'KeyTooLongError', 'Your key is too long');
  throw new S3Error(400, 'InvalidArgument', `object key ${JSON.stringify(key)} ${problem}`);
}
