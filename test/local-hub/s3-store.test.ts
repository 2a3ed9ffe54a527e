// The hub's S3 store through @aws-sdk/client-s3: SigV4 and the body's hash checked on every call, keys that need
// URL encoding, listing, the SDK's default aws-chunked uploads, Range reads, nothing half-written. How it answers
// next to an independent S3 implementation is in s3-conformance.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { LocalHub } from '../../local-hub/hub.ts';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { publishBundle, readPublishedVersion } from '../../fleet/publisher.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';
import { uploadFileIfAbsent } from '../../fleet/object-upload.ts';
import { generateSigningKeyPair, LocalKeySigner, verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import { removeDir, s3Client, startTestHub } from './helpers.ts';

describe('local hub: S3 store', () => {
  let hub: LocalHub & { dir: string };
  let s3: S3Client;
  let bucket: string;

  beforeAll(async () => {
    hub = await startTestHub();
    s3 = s3Client(hub);
    bucket = hub.endpoints.s3.bucket;
  });

  afterAll(async () => {
    s3?.destroy();
    await hub?.stop();
    if (hub) await removeDir(hub.dir);
  });

  it('refuses signed requests whose key climbs out of the store, and writes nothing', async () => {
    const attempts: Array<{ key: string; rawPath?: string }> = [
      { key: '../../../pwned-a.txt' },
      { key: 'x', rawPath: `/${bucket}/..%2F..%2F..%2Fpwned-b.txt` },
      { key: 'x', rawPath: `/${bucket}/models%2F..%2F..%2F..%2F..%2Fpwned-c.txt` },
    ];
    for (const { key, rawPath } of attempts) {
      const client = s3Client(hub);
      if (rawPath) {
        // Rewrite the path before SigV4 signs it, so the request is validly signed as an attacker's would be.
        client.middlewareStack.add(
          (next) => async (args) => {
            (args.request as { path: string }).path = rawPath;
            return next(args);
          },
          { step: 'build', priority: 'low' },
        );
      }
      const err = await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'owned' })).catch((e: unknown) => e);
      expect(err, rawPath ?? key).toBeInstanceOf(S3ServiceException);
      expect((err as S3ServiceException).$metadata.httpStatusCode, rawPath ?? key).toBe(400);
      expect((err as S3ServiceException).name).toBe('InvalidArgument');
      client.destroy();
    }
    // Nothing was written anywhere above or inside the hub's directory.
    // Looks above the hub's directory too, where a key that climbed would have landed.
    const found = spawnSync('find', [path.dirname(hub.dir), '-maxdepth', '4', '-name', 'pwned-*'], { encoding: 'utf8' });
    expect(found.stdout).toBe('');
  });

  it('stores and lists keys that need encoding', async () => {
    const keys = ['models/tiny/1.0.0+build/model.onnx', 'odd keys/with space & ampersand=eq', 'unicode/日本語.txt'];
    for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: `body of ${Key}` }));
    for (const Key of keys) {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key }));
      expect(await got.Body!.transformToString()).toBe(`body of ${Key}`);
    }
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'models/tiny/', Delimiter: '/' }));
    expect(listed.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['models/tiny/1.0.0+build/']);
  });

  it('decodes streamed (aws-chunked) uploads and multipart parts', async () => {
    const bytes = Buffer.alloc(70_000, 7);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'stream.bin', Body: Readable.from([bytes.subarray(0, 30_000), bytes.subarray(30_000)]), ContentLength: bytes.length }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'stream.bin' }));
    expect(head.ContentLength).toBe(bytes.length);
    expect(head.ContentEncoding).toBeUndefined();

    const part = Buffer.alloc(5 * 1024 * 1024, 1);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'multi.bin' }));
    const p1 = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'multi.bin', UploadId, PartNumber: 1, Body: part }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'multi.bin', UploadId, PartNumber: 2, Body: Buffer.from('tail') }));
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: 'multi.bin',
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] },
      }),
    );
    const tail = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'multi.bin', Range: `bytes=${part.length}-` }));
    expect(await tail.Body!.transformToString()).toBe('tail');
  });

  it('honours If-None-Match: * on PutObject (conditional write)', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'once/manifest.json', Body: 'v1', IfNoneMatch: '*' }));
    const again = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'once/manifest.json', Body: 'v2', IfNoneMatch: '*' })).catch((e: unknown) => e);
    expect((again as S3ServiceException).$metadata.httpStatusCode).toBe(412);
    expect((again as S3ServiceException).name).toBe('PreconditionFailed');
    const kept = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'once/manifest.json' }));
    expect(await kept.Body!.transformToString()).toBe('v1');
  });

  it('conditional writes are atomic: of many concurrent If-None-Match PUTs of one key exactly one succeeds', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'race/claim.json', Body: `writer ${i}`, IfNoneMatch: '*' }))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const winner = results.findIndex((r) => r.status === 'fulfilled');
    const kept = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'race/claim.json' }));
    expect(await kept.Body!.transformToString()).toBe(`writer ${winner}`);
  });

  it('honours If-None-Match: * on CompleteMultipartUpload: a multipart upload onto a taken key writes nothing', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-mpu-'));
    const file = path.join(d, 'part.bin');
    writeFileSync(file, Buffer.alloc(3000, 5));
    const u = { bucket, key: 'mpu/once.bin', file, size: 3000, contentType: 'application/octet-stream' };
    expect(await uploadFileIfAbsent(s3, u, { multipartThresholdBytes: 1 })).toBe(true);
    writeFileSync(file, Buffer.alloc(3000, 6));
    expect(await uploadFileIfAbsent(s3, u, { multipartThresholdBytes: 1 })).toBe(false);
    rmSync(d, { recursive: true, force: true });
    const kept = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'mpu/once.bin' }));
    expect(Buffer.from(await kept.Body!.transformToByteArray()).equals(Buffer.alloc(3000, 5))).toBe(true);
  });

  it('two concurrent publishers of one version: exactly one wins and its manifest verifies against the bytes', async () => {
    const dirs = await Promise.all(
      [0, 1].map(async (i) => {
        const d = mkdtempSync(path.join(os.tmpdir(), `fleetlm-race-${i}-`));
        await writeTinyModel(d, { seed: i + 1 }); // two real models with different bytes
        for (const n of ['a.bin', 'b.bin', 'c.bin']) writeFileSync(path.join(d, n), Buffer.alloc(2048, 10 + i));
        return d;
      }),
    );
    const keys = generateSigningKeyPair();
    const results = await Promise.allSettled(
      dirs.map((d) => publishBundle({ s3, bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: d, modelId: 'race', version: '1' })),
    );
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(String((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason)).toMatch(/already (published|being published)/);
    const pub = await readPublishedVersion(s3, bucket, 'race', '1');
    expect(verifyManifestBytes(pub.manifestBytes, pub.signature, keys.publicKeyPem)).toBe(true);
    for (const f of pub.manifest.files) {
      const obj = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `models/race/1/${f.name}` }));
      expect(createHash('sha256').update(Buffer.from(await obj.Body!.transformToByteArray())).digest('hex'), f.name).toBe(f.sha256);
    }
  });

  it('refuses unsigned, forged, wrongly keyed and expired requests', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'secret.txt', Body: 'secret' }));
    const url = `${hub.endpoints.s3.endpoint}/${bucket}/secret.txt`;
    expect((await fetch(url)).status).toBe(403);
    const signed = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: 'secret.txt' }), { expiresIn: 60 });
    expect((await fetch(signed)).status).toBe(200);
    const forged = await fetch(signed.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`));
    expect(forged.status).toBe(403);
    expect(await forged.text()).toMatch(/SignatureDoesNotMatch/);
    const otherKey = await fetch(signed.replace('secret.txt', 'stream.bin'));
    expect(otherKey.status).toBe(403);
    const old = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: 'secret.txt' }), {
      expiresIn: 60,
      signingDate: new Date(Date.now() - 3600_000),
    });
    const expired = await fetch(old);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/expired/);
    const stranger = new S3Client({ region: 'us-east-1', endpoint: hub.endpoints.s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: hub.endpoints.credentials.accessKeyId, secretAccessKey: 'wrong' } });
    const err = await stranger.send(new GetObjectCommand({ Bucket: bucket, Key: 'secret.txt' })).catch((e: unknown) => e);
    expect((err as S3ServiceException).name).toBe('SignatureDoesNotMatch');
    stranger.destroy();
  });

  /** A client whose requests are altered after SigV4 signed them, as a man in the middle would. */
  function tamperingClient(alter: (request: { headers: Record<string, string>; body: unknown }) => void): S3Client {
    const client = new S3Client({ region: hub.endpoints.region, endpoint: hub.endpoints.s3.endpoint, forcePathStyle: true, credentials: hub.endpoints.credentials, maxAttempts: 1 });
    client.middlewareStack.add(
      (next) => async (args) => {
        alter(args.request as { headers: Record<string, string>; body: unknown });
        return next(args);
      },
      { step: 'deserialize', priority: 'low' },
    );
    return client;
  }

  const stagingLeft = () => readdirSync(path.join(hub.dir, 's3', 'tmp'));

  it('refuses a signed PUT whose body was swapped after signing (x-amz-content-sha256 is checked), and stores nothing', async () => {
    const client = tamperingClient((req) => {
      req.body = 'evil!!!';
    });
    const err = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'tampered.txt', Body: 'genuine' })).catch((e: unknown) => e);
    client.destroy();
    expect((err as S3ServiceException).$metadata.httpStatusCode).toBe(400);
    expect((err as S3ServiceException).name).toBe('XAmzContentSHA256Mismatch');
    const missing = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'tampered.txt' })).catch((e: unknown) => e);
    expect((missing as S3ServiceException).name).toBe('NoSuchKey');
    expect(stagingLeft()).toEqual([]);
  });

  it('refuses a streamed (aws-chunked) upload whose bytes do not match its CRC32 trailer, and stores nothing', async () => {
    const client = tamperingClient((req) => {
      // The SDK signed "hello" with a trailing CRC32; the bytes that arrive are others, with the original trailer.
      expect(req.headers['x-amz-content-sha256']).toBe('STREAMING-UNSIGNED-PAYLOAD-TRAILER');
      req.body = `5\r\nevil!\r\n0\r\nx-amz-checksum-crc32:${Buffer.from([0x36, 0x10, 0xa6, 0x86]).toString('base64')}\r\n\r\n`;
      delete req.headers['transfer-encoding'];
      req.headers['content-length'] = String(Buffer.byteLength(req.body as string));
    });
    const err = await client
      .send(new PutObjectCommand({ Bucket: bucket, Key: 'crc.txt', Body: Readable.from([Buffer.from('hello')]), ContentLength: 5 }))
      .catch((e: unknown) => e);
    client.destroy();
    expect((err as S3ServiceException).name).toBe('BadDigest');
    expect((err as S3ServiceException).$metadata.httpStatusCode).toBe(400);
    const missing = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'crc.txt' })).catch((e: unknown) => e);
    expect((missing as S3ServiceException).$metadata.httpStatusCode).toBe(404);
    expect(stagingLeft()).toEqual([]);
  });

  it('an upload cut off mid-body leaves neither an object nor a staged file, and an existing object stays whole', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut.bin', Body: 'old version' }));
    // The SDK signs the request; the middleware then sends it by hand and drops the connection after 40 of 100 kB.
    const client = new S3Client({ region: hub.endpoints.region, endpoint: hub.endpoints.s3.endpoint, forcePathStyle: true, credentials: hub.endpoints.credentials, maxAttempts: 1 });
    client.middlewareStack.add(
      () => async (args) => {
        const r = args.request as { hostname: string; port: number; path: string; method: string; headers: Record<string, string>; query: Record<string, string> };
        const query = Object.entries(r.query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        await new Promise<void>((resolve) => {
          const req = http.request({ host: r.hostname, port: r.port, path: `${r.path}?${query}`, method: r.method, headers: r.headers });
          req.on('error', () => resolve());
          req.write(Buffer.alloc(40_000, 3), () => setTimeout(() => {
            req.destroy();
            resolve();
          }, 100));
        });
        throw new Error('connection dropped mid-body');
      },
      { step: 'deserialize', priority: 'low' },
    );
    const err = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut.bin', Body: Buffer.alloc(100_000, 3) })).catch((e: unknown) => e);
    client.destroy();
    expect(String(err)).toMatch(/dropped mid-body/);
    const kept = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'cut.bin' }));
    expect(await kept.Body!.transformToString()).toBe('old version');
    // The server notices the cut asynchronously; its staged file goes when it does.
    for (let i = 0; i < 50 && stagingLeft().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(stagingLeft()).toEqual([]);
  });

  it('answers operations outside the supported subset with 501 NotImplemented, never as another operation', async () => {
    const { CopyObjectCommand, GetObjectTaggingCommand, ListObjectsCommand } = await import('@aws-sdk/client-s3');
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'src.txt', Body: 'source' }));
    for (const cmd of [
      new CopyObjectCommand({ Bucket: bucket, Key: 'copy.txt', CopySource: `${bucket}/src.txt` }),
      new GetObjectTaggingCommand({ Bucket: bucket, Key: 'src.txt' }),
      new ListObjectsCommand({ Bucket: bucket }),
    ]) {
      const err = await s3.send(cmd as Parameters<S3Client['send']>[0]).catch((e: unknown) => e);
      expect((err as S3ServiceException).name, cmd.constructor.name).toBe('NotImplemented');
      expect((err as S3ServiceException).$metadata.httpStatusCode).toBe(501);
    }
    const copy = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'copy.txt' })).catch((e: unknown) => e);
    expect((copy as S3ServiceException).$metadata.httpStatusCode).toBe(404);
  });
});
