// S3-protocol object store on loopback (s3rver) with the hub's bucket created, plus presigned GETs.
// s3rver predates the SDK's default CRC32 "aws-chunked" uploads, so a front middleware decodes them.
import { createRequire } from 'node:module';
import { mkdir } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { TransportError } from '../common/errors.ts';
import { verifySigV4 } from './sigv4.ts';

const require = createRequire(import.meta.url);

interface KoaContext {
  req: IncomingMessage | NodeJS.ReadableStream;
  method: string;
  originalUrl: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  middleware: KoaMiddleware[];
  store: { existsObject(bucket: string, key: string): Promise<boolean> };
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverInstance;
interface AwsAccountModule {
  DUMMY_ACCOUNT: { createKeyPair(accessKeyId: string, secretAccessKey: string): void };
}

export interface S3StoreOptions {
  /** Directory holding the objects (s3rver's filesystem layout). */
  directory: string;
  bucket: string;
  port?: number;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

export interface S3Store {
  endpoint: string;
  bucket: string;
  port: number;
  /** Presigned GET for `key` in `bucket`, valid `expiresInSec` seconds. */
  presignGet(bucket: string, key: string, expiresInSec: number): Promise<string>;
  /** Maps an S3 URL (virtual-host, path-style AWS URL or this store's own URL) to bucket and key. */
  parseS3Url(url: string): { bucket: string; key: string } | null;
  close(): Promise<void>;
}

/**
 * Decodes an `aws-chunked` body (hex size;chunk-signature CRLF data CRLF ... 0 CRLF trailers CRLF).
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
 */
class AwsChunkedDecoder extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private remaining = -1;
  private done = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    try {
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private drain(): void {
    while (!this.done) {
      if (this.remaining < 0) {
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return;
        const header = this.buf.subarray(0, eol).toString('latin1');
        const size = Number.parseInt(header.split(';')[0]!, 16);
        if (!Number.isFinite(size) || size < 0) throw new Error(`bad aws-chunked chunk header "${header}"`);
        this.buf = this.buf.subarray(eol + 2);
        if (size === 0) {
          this.done = true; // trailers (checksums) follow; they are not part of the object
          return;
        }
        this.remaining = size;
      }
      if (this.remaining > 0) {
        if (this.buf.length === 0) return;
        const take = Math.min(this.remaining, this.buf.length);
        this.push(this.buf.subarray(0, take));
        this.buf = this.buf.subarray(take);
        this.remaining -= take;
      }
      if (this.remaining === 0) {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.remaining = -1;
      }
    }
  }

  override _flush(cb: TransformCallback): void {
    cb(this.done || (this.remaining < 0 && this.buf.length === 0) ? null : new Error('truncated aws-chunked body'));
  }
}

/** Rewrites an aws-chunked upload into a plain body before s3rver sees it. */
const decodeAwsChunked: KoaMiddleware = async (ctx, next) => {
  const req = ctx.req as IncomingMessage;
  const encoding = req.headers['content-encoding'];
  if (typeof encoding === 'string' && encoding.split(',').some((e) => e.trim() === 'aws-chunked')) {
    const rest = encoding
      .split(',')
      .map((e) => e.trim())
      .filter((e) => e !== 'aws-chunked' && e !== '');
    if (rest.length > 0) req.headers['content-encoding'] = rest.join(',');
    else delete req.headers['content-encoding'];
    const decoded = req.headers['x-amz-decoded-content-length'];
    if (typeof decoded === 'string') req.headers['content-length'] = decoded;
    delete req.headers['x-amz-decoded-content-length'];
    delete req.headers['x-amz-trailer'];
    req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    ctx.req = req.pipe(new AwsChunkedDecoder());
  }
  await next();
};

const S3_ERROR_CODES = {
  missing: 'AccessDenied',
  'unknown-key': 'InvalidAccessKeyId',
  expired: 'AccessDenied',
  mismatch: 'SignatureDoesNotMatch',
  malformed: 'AuthorizationQueryParametersError',
} as const;

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** s3rver does not check SigV4 signatures (nor refuse anonymous calls); this middleware does. */
function requireSigV4(credentials: S3StoreOptions['credentials']): KoaMiddleware {
  return async (ctx, next) => {
    const req = ctx.req as IncomingMessage;
    const result = verifySigV4(
      { method: ctx.method, rawUrl: ctx.originalUrl, headers: req.headers },
      { service: 's3', singleEncodePath: true, secretFor: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined) },
    );
    if (!result.ok) {
      s3Error(ctx, 403, S3_ERROR_CODES[result.reason], result.message);
      return;
    }
    await next();
  };
}

function s3Error(ctx: KoaContext, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error>`;
}

/**
 * Object keys become file paths in s3rver's store, so a key whose segments climb out (`..`), or that
 * holds a backslash or NUL, is refused before s3rver sees it (AWS would store such keys verbatim; this
 * store cannot do so safely). Segments are percent-decoded first: `..%2F..%2Fx` is `../../x`.
 */
export function unsafeObjectKey(key: string): string | undefined {
  if (key.includes('\\') || key.includes('\0')) return 'holds a backslash or NUL';
  if (key.startsWith('/')) return 'starts with "/"';
  if (key.split('/').some((seg) => seg === '..' || seg === '.')) return 'has a "." or ".." segment';
  if (Buffer.byteLength(key) > 1024) return 'is longer than 1024 bytes';
  return undefined;
}

/** Refuses requests whose bucket or key would reach outside the store directory. */
const refuseUnsafeKeys: KoaMiddleware = async (ctx, next) => {
  const [, bucket = '', ...rest] = ctx.path.split('/');
  let key: string;
  let bucketName: string;
  try {
    bucketName = decodeURIComponent(bucket);
    key = rest.map((seg) => decodeURIComponent(seg)).join('/');
  } catch {
    s3Error(ctx, 400, 'InvalidURI', 'Couldn\'t parse the specified URI');
    return;
  }
  const bucketProblem = bucketName === '.' || bucketName === '..' || /[\\/\0]/.test(bucketName) ? 'is not a valid bucket name' : undefined;
  const keyProblem = key ? unsafeObjectKey(key) : undefined;
  if (bucketProblem || keyProblem) {
    s3Error(ctx, 400, bucketProblem ? 'InvalidBucketName' : 'InvalidArgument', bucketProblem ? `bucket ${JSON.stringify(bucketName)} ${bucketProblem}` : `object key ${JSON.stringify(key)} ${keyProblem}`);
    return;
  }
  await next();
};

/**
 * Conditional writes (PutObject or CompleteMultipartUpload with `If-None-Match: *`), which s3rver predates:
 * refuse with 412 when the key exists. https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
 */
function conditionalPut(store: S3rverInstance['store']): KoaMiddleware {
  // Keys with a conditional PUT in flight: the existence check and the write are two awaits apart, so
  // without this a second writer could pass the check before the first one's object exists (S3 is atomic here).
  const writing = new Set<string>();
  return async (ctx, next) => {
    const req = ctx.req as IncomingMessage;
    // PutObject, or CompleteMultipartUpload (POST ?uploadId), with `If-None-Match: *`.
    const putObject = ctx.method === 'PUT' && ctx.query.uploadId === undefined;
    const completeUpload = ctx.method === 'POST' && ctx.query.uploadId !== undefined;
    if ((putObject || completeUpload) && req.headers['if-none-match'] === '*') {
      const [, bucket, ...rest] = ctx.path.split('/');
      const key = rest.map((seg) => decodeURIComponent(seg)).join('/');
      if (bucket && key) {
        const id = `${decodeURIComponent(bucket)}/${key}`;
        if (writing.has(id) || (await store.existsObject(decodeURIComponent(bucket), key)) || writing.has(id)) {
          s3Error(ctx, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
          return;
        }
        writing.add(id);
        try {
          await next();
        } finally {
          writing.delete(id);
        }
        return;
      }
    }
    await next();
  };
}

/** Resolves when 127.0.0.1:`port` can be listened on (and is released again); rejects with the listen error. */
function assertPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

/** Starts s3rver on 127.0.0.1 with `bucket` created and `credentials` accepted. */
export async function startS3Store(options: S3StoreOptions): Promise<S3Store> {
  await mkdir(options.directory, { recursive: true });
  const S3rver = require('s3rver') as S3rverCtor;
  const account = require('s3rver/lib/models/account') as AwsAccountModule;
  account.DUMMY_ACCOUNT.createKeyPair(options.credentials.accessKeyId, options.credentials.secretAccessKey);
  const server = new S3rver({
    address: '127.0.0.1',
    port: options.port ?? 0,
    silent: true,
    directory: options.directory,
    // Path-style only: virtual-host parsing would treat "127.0.0.1" as a bucket name.
    vhostBuckets: false,
    configureBuckets: [{ name: options.bucket }],
  });
  server.middleware.unshift(requireSigV4(options.credentials), refuseUnsafeKeys, conditionalPut(server.store), decodeAwsChunked);
  let address: AddressInfo;
  try {
    // s3rver's listen never hears its server's 'error' event, so a taken port would crash the process
    // instead of failing this call: try the port first.
    if (options.port) await assertPortFree(options.port);
    address = await server.run();
  } catch (err) {
    throw new TransportError(`S3 store could not listen on 127.0.0.1:${options.port ?? 0}`, { cause: err });
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = new S3Client({
    region: options.region,
    endpoint,
    forcePathStyle: true,
    credentials: options.credentials,
  });
  const ownHost = `127.0.0.1:${address.port}`;
  return {
    endpoint,
    bucket: options.bucket,
    port: address.port,
    presignGet: (bucket, key, expiresInSec) =>
      getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: expiresInSec }),
    parseS3Url(url) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        return null;
      }
      const path = decodeURIComponent(u.pathname.replace(/^\//, ''));
      // https://bucket.s3.region.amazonaws.com/key and https://bucket.s3.amazonaws.com/key
      const vhost = /^([a-z0-9.-]+)\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com(\.cn)?$/.exec(u.hostname);
      if (vhost) return path ? { bucket: vhost[1]!, key: path } : null;
      const pathStyle = /^s3[.-]([a-z0-9-]+\.)?amazonaws\.com(\.cn)?$/.test(u.hostname) || u.host === ownHost || u.host === `localhost:${address.port}`;
      if (pathStyle) {
        const slash = path.indexOf('/');
        if (slash <= 0 || slash === path.length - 1) return null;
        return { bucket: path.slice(0, slash), key: path.slice(slash + 1) };
      }
      return null;
    },
    async close() {
      client.destroy();
      await server.close();
    },
  };
}
