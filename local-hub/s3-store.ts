// The hub's S3-protocol object store on loopback (local-hub/s3/: SigV4-checked, atomic writes on disk) with the
// hub's bucket created, plus presigned GETs and the mapping of S3 URLs to bucket and key for IoT Jobs placeholders.
import type { AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { mkdir } from 'node:fs/promises';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { TransportError } from '../common/errors.ts';
import { ObjectStore } from './s3/object-store.ts';
import { createS3Handler } from './s3/s3-server.ts';

export interface S3StoreOptions {
  /** Directory holding the objects (layout in local-hub/s3/object-store.ts). */
  directory: string;
  bucket: string;
  port?: number;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Where unexpected failures inside the store are reported. */
  onInternalError?: (err: unknown) => void;
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

/** Starts the S3 store on 127.0.0.1 with `bucket` created and `credentials` accepted. */
export async function startS3Store(options: S3StoreOptions): Promise<S3Store> {
  await mkdir(options.directory, { recursive: true });
  const store = await ObjectStore.open(options.directory);
  await store.createBucket(options.bucket);
  let endpoint = '';
  const server = createHttpServer(
    createS3Handler({ store, region: options.region, credentials: options.credentials, endpoint: () => endpoint, ...(options.onInternalError ? { onInternalError: options.onInternalError } : {}) }),
  );
  let address: AddressInfo;
  try {
    address = await new Promise<AddressInfo>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve(server.address() as AddressInfo);
      });
    });
  } catch (err) {
    throw new TransportError(`S3 store could not listen on 127.0.0.1:${options.port ?? 0}`, { cause: err });
  }
  endpoint = `http://127.0.0.1:${address.port}`;
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
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
