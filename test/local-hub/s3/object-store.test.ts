// The S3 store's disk layer: a commit is all or nothing, readers keep the version they opened, concurrent writes of
// one key leave the index and the disk agreeing, and what a crash leaves behind is cleared at the next start.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ObjectStore, type StagedFile } from '../../../local-hub/s3/object-store.ts';
import { S3Error } from '../../../local-hub/s3/s3-error.ts';
import { removeDir, tempDir } from '../helpers.ts';

let dir: string;

beforeEach(async () => {
  dir = await tempDir('fleetlm-objstore-');
});
afterEach(async () => {
  await removeDir(dir);
});

async function staged(store: ObjectStore, bytes: Buffer): Promise<StagedFile> {
  const s = await store.stage();
  await s.handle.write(bytes);
  return s;
}

async function put(store: ObjectStore, key: string, bytes: Buffer, cond = {}) {
  const etag = `"${createHash('md5').update(bytes).digest('hex')}"`;
  return store.commitObject('b-1', key, await staged(store, bytes), { metadata: {}, size: bytes.length, etag }, cond);
}

async function read(store: ObjectStore, key: string): Promise<Buffer> {
  const { handle } = await store.open('b-1', key);
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

describe('ObjectStore', () => {
  it('keeps objects across a reopen and clears what a crashed write left (staged files, unreferenced blobs)', async () => {
    const store = await ObjectStore.open(dir);
    await store.createBucket('b-1');
    await put(store, 'models/a.onnx', Buffer.from('model bytes'));
    // A write that crashed after staging, and one that crashed after moving its blob but before its record.
    writeFileSync(path.join(dir, 'tmp', 'half-written'), 'partial');
    writeFileSync(path.join(dir, 'buckets', 'b-1', 'blobs', '0123456789abcdef0123456789abcdef'), 'orphan');
    const again = await ObjectStore.open(dir);
    expect((await read(again, 'models/a.onnx')).toString()).toBe('model bytes');
    expect(readdirSync(path.join(dir, 'tmp'))).toEqual([]);
    expect(readdirSync(path.join(dir, 'buckets', 'b-1', 'blobs'))).toHaveLength(1);
    expect(again.sortedKeys('b-1').map((r) => r.key)).toEqual(['models/a.onnx']);
  });

  it('a reader keeps the version it opened while the key is replaced; later readers get the new one whole', async () => {
    const store = await ObjectStore.open(dir);
    await store.createBucket('b-1');
    const v1 = Buffer.alloc(300_000, 1);
    const v2 = Buffer.alloc(200_000, 2);
    await put(store, 'k', v1);
    const { handle } = await store.open('b-1', 'k');
    await put(store, 'k', v2);
    expect((await handle.readFile()).equals(v1)).toBe(true);
    await handle.close();
    expect((await read(store, 'k')).equals(v2)).toBe(true);
    expect(readdirSync(path.join(dir, 'buckets', 'b-1', 'blobs'))).toHaveLength(1);
  });

  it('concurrent writes of one key: the index and the disk agree on the last one, and only its blob is kept', async () => {
    const store = await ObjectStore.open(dir);
    await store.createBucket('b-1');
    await Promise.all(Array.from({ length: 10 }, (_, i) => put(store, 'race', Buffer.from(`writer ${i}`))));
    const inMemory = store.head('b-1', 'race')!;
    const reopened = await ObjectStore.open(dir);
    expect(reopened.head('b-1', 'race')).toEqual(inMemory);
    expect((await read(reopened, 'race')).toString()).toMatch(/^writer \d$/);
    expect(readdirSync(path.join(dir, 'buckets', 'b-1', 'blobs'))).toHaveLength(1);
  });

  it('If-None-Match: * under concurrency: exactly one of many conditional writes commits', async () => {
    const store = await ObjectStore.open(dir);
    await store.createBucket('b-1');
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => put(store, 'once', Buffer.from(`w${i}`), { ifNoneMatchAny: true })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as S3Error).code).toBe('PreconditionFailed');
    expect(readdirSync(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('files objects under a hash of the key: no key becomes a path', async () => {
    const store = await ObjectStore.open(dir);
    await store.createBucket('b-1');
    await put(store, 'a/b/../../../../escape.txt', Buffer.from('x'));
    const files = readdirSync(path.join(dir, 'buckets', 'b-1', 'objects'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{64}\.json$/);
  });

  it('refuses invalid bucket names and unknown buckets with S3 errors', async () => {
    const store = await ObjectStore.open(dir);
    await expect(store.createBucket('../up')).rejects.toMatchObject({ code: 'InvalidBucketName', status: 400 });
    expect(() => store.head('nope-bucket', 'k')).toThrow(expect.objectContaining({ code: 'NoSuchBucket' }) as Error);
  });
});
