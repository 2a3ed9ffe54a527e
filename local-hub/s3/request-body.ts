// Reads an S3 request body once, checking it against everything the request claims about it: the SigV4 payload hash
// (x-amz-content-sha256, which the signature covers), Content-MD5, an x-amz-checksum-* header or aws-chunked
// trailer, and the declared length. A body that fails any check is refused before anything is stored.
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { crc32 } from 'node:zlib';
import { AwsChunkedDecoder } from './aws-chunked.ts';
import { S3Error, S3Errors } from './s3-error.ts';

/** What the body's SigV4 payload hash says: a SHA-256 to check, no hash, or an unsigned aws-chunked stream. */
export type PayloadMode = { kind: 'sha256'; hex: string } | { kind: 'unsigned' } | { kind: 'streaming-trailer' };

/** One header's value (repeated headers joined with commas, as HTTP defines). */
function h(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** Reads x-amz-content-sha256 (UNSIGNED-PAYLOAD for presigned requests, which carry none). */
export function payloadModeOf(headers: IncomingHttpHeaders, presigned: boolean): PayloadMode {
  const claimed = h(headers, 'x-amz-content-sha256') ?? (presigned ? 'UNSIGNED-PAYLOAD' : undefined);
  if (claimed === undefined) throw S3Errors.invalidRequest('Missing required header for this request: x-amz-content-sha256');
  if (/^[0-9a-f]{64}$/.test(claimed)) return { kind: 'sha256', hex: claimed };
  if (claimed === 'UNSIGNED-PAYLOAD') return { kind: 'unsigned' };
  if (claimed === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER') return { kind: 'streaming-trailer' };
  if (claimed.startsWith('STREAMING-')) throw S3Errors.notImplemented(`x-amz-content-sha256 ${claimed} (signed aws-chunked uploads)`);
  throw S3Errors.invalidArgument(`x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a SHA-256 in hex; got ${JSON.stringify(claimed)}`);
}

type ChecksumName = 'crc32' | 'sha1' | 'sha256';
const VERIFIABLE: readonly ChecksumName[] = ['crc32', 'sha1', 'sha256'];
const KNOWN_CHECKSUMS = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const;

/** A full-object checksum, as S3 names and encodes it (base64 of the big-endian digest). */
export interface ObjectChecksum {
  name: ChecksumName;
  value: string;
}

class ChecksumHasher {
  private crc = 0;
  private readonly hash: Hash | undefined;
  constructor(readonly name: ChecksumName) {
    this.hash = name === 'crc32' ? undefined : createHash(name);
  }
  update(data: Buffer): void {
    if (this.hash) this.hash.update(data);
    else this.crc = crc32(data, this.crc);
  }
  digestBase64(): string {
    if (this.hash) return this.hash.digest('base64');
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.crc >>> 0);
    return out.toString('base64');
  }
}

/** The checksum the request declares: its name, and its value unless it comes in the trailer. */
function declaredChecksum(headers: IncomingHttpHeaders, mode: PayloadMode): { name: ChecksumName; value?: string } | undefined {
  const found = KNOWN_CHECKSUMS.filter((n) => headers[`x-amz-checksum-${n}`] !== undefined);
  const trailer = h(headers, 'x-amz-trailer');
  if (trailer !== undefined) {
    if (mode.kind !== 'streaming-trailer') throw S3Errors.invalidRequest('x-amz-trailer needs x-amz-content-sha256 STREAMING-UNSIGNED-PAYLOAD-TRAILER');
    const m = /^x-amz-checksum-([a-z0-9]+)$/.exec(trailer.trim().toLowerCase());
    if (!m || !(KNOWN_CHECKSUMS as readonly string[]).includes(m[1]!)) throw S3Errors.invalidRequest(`x-amz-trailer ${JSON.stringify(trailer)} names no known checksum`);
    found.push(m[1] as (typeof KNOWN_CHECKSUMS)[number]);
  }
  if (found.length > 1) throw S3Errors.invalidRequest('Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
  const name = found[0];
  if (name === undefined) return undefined;
  if (!(VERIFIABLE as readonly string[]).includes(name)) throw S3Errors.notImplemented(`the ${name.toUpperCase()} checksum (use CRC32, SHA1 or SHA256)`);
  const value = h(headers, `x-amz-checksum-${name}`);
  return { name: name as ChecksumName, ...(typeof value === 'string' ? { value } : {}) };
}

export interface BodyCheckResult {
  size: number;
  md5Hex: string;
  checksum?: ObjectChecksum;
}

/**
 * Reads the body of `req`, handing each piece of object data to `sink` (awaited, so a slow disk slows the
 * client), and throws an S3Error when the body does not match what the request declared. Refuses a body
 * over `maxBytes` as soon as it gets there.
 */
export async function consumeBody(
  req: IncomingMessage,
  mode: PayloadMode,
  maxBytes: number,
  sink: (data: Buffer) => Promise<void> | void,
  /** Object data must declare its length (S3 refuses a PutObject or UploadPart without one). */
  requireLength = false,
): Promise<BodyCheckResult> {
  const headers = req.headers;
  const checksum = declaredChecksum(headers, mode);
  const contentMd5 = h(headers, 'content-md5');
  let declaredLength: number | undefined;
  let decoder: AwsChunkedDecoder | undefined;
  if (mode.kind === 'streaming-trailer') {
    const decoded = h(headers, 'x-amz-decoded-content-length');
    if (decoded === undefined || !/^\d+$/.test(decoded)) throw new S3Error(411, 'MissingContentLength', 'You must provide the x-amz-decoded-content-length HTTP header.');
    declaredLength = Number(decoded);
    decoder = new AwsChunkedDecoder();
  } else if (headers['content-length'] !== undefined) {
    declaredLength = Number(headers['content-length']);
  } else if (requireLength) {
    throw new S3Error(411, 'MissingContentLength', 'You must provide the Content-Length HTTP header.');
  }
  if (declaredLength !== undefined && declaredLength > maxBytes) throw new S3Error(400, 'EntityTooLarge', `Your proposed upload exceeds the maximum allowed size of ${maxBytes} bytes`);

  const md5 = createHash('md5');
  const sha256 = mode.kind === 'sha256' ? createHash('sha256') : undefined;
  const hasher = checksum ? new ChecksumHasher(checksum.name) : undefined;
  let size = 0;
  const take = async (data: Buffer) => {
    size += data.length;
    if (size > maxBytes) throw new S3Error(400, 'EntityTooLarge', `Your proposed upload exceeds the maximum allowed size of ${maxBytes} bytes`);
    md5.update(data);
    sha256?.update(data);
    hasher?.update(data);
    await sink(data);
  };
  for await (const chunk of req as AsyncIterable<Buffer>) {
    // SigV4 signs the encoded stream's hash only for signed chunks; unsigned streams are checked by their trailer checksum.
    if (decoder) for (const piece of decoder.feed(chunk)) await take(piece);
    else await take(chunk);
  }
  decoder?.finish();

  if (declaredLength !== undefined && size !== declaredLength) {
    throw new S3Error(400, 'IncompleteBody', `You did not provide the number of bytes specified by the Content-Length HTTP header (declared ${declaredLength}, got ${size})`);
  }
  if (sha256 && mode.kind === 'sha256' && sha256.digest('hex') !== mode.hex) {
    throw new S3Error(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  const md5Bytes = md5.digest();
  if (contentMd5 !== undefined) {
    const given = Buffer.from(contentMd5, 'base64');
    if (given.length !== 16 || given.toString('base64') !== contentMd5) throw new S3Error(400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.');
    if (!given.equals(md5Bytes)) throw new S3Error(400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
  }
  let verified: ObjectChecksum | undefined;
  if (checksum && hasher) {
    const expected = checksum.value ?? decoder?.trailers.get(`x-amz-checksum-${checksum.name}`);
    if (expected === undefined) throw S3Errors.invalidRequest(`the trailer x-amz-checksum-${checksum.name} announced in x-amz-trailer is missing`);
    const actual = hasher.digestBase64();
    if (expected !== actual) throw new S3Error(400, 'BadDigest', `The ${checksum.name.toUpperCase()} you specified did not match the calculated checksum.`);
    verified = { name: checksum.name, value: actual };
  }
  return { size, md5Hex: md5Bytes.toString('hex'), ...(verified ? { checksum: verified } : {}) };
}

/** Reads a small body (an XML document) into memory, checked like any other. */
export async function readSmallBody(req: IncomingMessage, mode: PayloadMode, maxBytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await consumeBody(req, mode, maxBytes, (data) => {
    parts.push(Buffer.from(data));
  });
  return Buffer.concat(parts);
}

/** Reads object data (with a declared length) into `file` at its current position. */
export function consumeBodyToFile(req: IncomingMessage, mode: PayloadMode, maxBytes: number, file: FileHandle): Promise<BodyCheckResult> {
  return consumeBody(
    req,
    mode,
    maxBytes,
    async (data) => {
      let off = 0;
      while (off < data.length) off += (await file.write(data, off, data.length - off)).bytesWritten;
    },
    true,
  );
}
