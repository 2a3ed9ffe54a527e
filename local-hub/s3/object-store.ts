// The S3 store's objects on disk: buckets, objects and multipart uploads, each write made whole before it is
// visible. An object is a blob plus a small JSON record filed under the SHA-256 of its key; renaming the record
// into place is the commit, so a reader sees the old object or the new one, never part of one, and a crash leaves
// at most an unreferenced blob that the next start removes. Keys never become paths.
//   <dir>/buckets/<bucket>/bucket.json          creation time
//   <dir>/buckets/<bucket>/objects/<sha256(key)>.json   ObjectRecord
//   <dir>/buckets/<bucket>/blobs/<random>       object bytes
//   <dir>/uploads/<uploadId>/upload.json, part-<n>.json, part-<n>-<random>
//   <dir>/tmp/                                  staging, emptied at start
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs, type Dirent } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { fsyncDir, writeFileAtomic } from '../../common/atomic-file.ts';
import { assertBucketName } from './object-keys.ts';
import { S3Error, S3Errors } from './s3-error.ts';
import type { ObjectChecksum } from './request-body.ts';

/** What S3 keeps about an object besides its bytes. */
const ObjectRecord = z.object({
  key: z.string(),
  blob: z.string().regex(/^[0-9a-f]{32}$/),
  size: z.number().int().nonnegative(),
  etag: z.string(),
  lastModified: z.string(),
  contentType: z.string().optional(),
  contentEncoding: z.string().optional(),
  contentDisposition: z.string().optional(),
  contentLanguage: z.string().optional(),
  cacheControl: z.string().optional(),
  expires: z.string().optional(),
  metadata: z.record(z.string(), z.string()),
  checksum: z.object({ name: z.enum(['crc32', 'sha1', 'sha256']), value: z.string() }).optional(),
  partsCount: z.number().int().positive().optional(),
});
export type ObjectRecord = z.infer<typeof ObjectRecord>;

/** The headers an object is stored with (PutObject, CreateMultipartUpload). */
export type ObjectHeaders = Pick<ObjectRecord, 'contentType' | 'contentEncoding' | 'contentDisposition' | 'contentLanguage' | 'cacheControl' | 'expires' | 'metadata'>;

const UploadRecord = z.object({ bucket: z.string(), key: z.string(), initiated: z.string(), headers: ObjectRecord.pick({ contentType: true, contentEncoding: true, contentDisposition: true, contentLanguage: true, cacheControl: true, expires: true, metadata: true }) });
const PartRecord = z.object({ blob: z.string().regex(/^part-\d{1,5}-[0-9a-f]{32}$/), etag: z.string(), size: z.number().int().nonnegative() });

/** Conditions a write must meet when it commits (checked under the key's lock, so they are atomic). */
export interface WriteConditions {
  /** `If-None-Match: *`: only when the key does not exist. */
  ifNoneMatchAny?: boolean;
  /** `If-Match: <etag>`: only when the key exists with this ETag. */
  ifMatch?: string;
}

/** A file being written in the staging folder; commit it to an object or part, or discard it. */
export interface StagedFile {
  path: string;
  handle: fs.FileHandle;
}

/** S3's minimum size of every part but the last. */
export const MIN_PART_BYTES = 5 * 2 ** 20;
export const MAX_PART_NUMBER = 10_000;
const UPLOAD_ID = /^[0-9a-f]{32}$/;

const keyFile = (key: string) => `${createHash('sha256').update(key, 'utf8').digest('hex')}.json`;
const newId = () => randomBytes(16).toString('hex');
/** S3 timestamps have whole seconds. */
const nowSeconds = () => new Date(Math.floor(Date.now() / 1000) * 1000);

/** Compares keys as S3 lists them: by UTF-8 bytes. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

async function readJson<T extends z.ZodType>(file: string, schema: T): Promise<z.output<T>> {
  const text = await fs.readFile(file, 'utf8');
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${file} is not a valid record of the S3 store: ${parsed.error.message}`);
  return parsed.data;
}

async function entries(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

interface Bucket {
  created: Date;
  objects: Map<string, ObjectRecord>;
}

/** The on-disk store; one process owns a directory (the hub). */
export class ObjectStore {
  private readonly buckets = new Map<string, Bucket>();
  /** Tail of the queue of writes per bucket/key or upload, so each commit sees the one before it. */
  private readonly locks = new Map<string, Promise<void>>();

  private constructor(private readonly dir: string) {}

  /** Opens (or creates) the store in `dir`, loads its index and removes what crashed writes left behind. */
  static async open(dir: string): Promise<ObjectStore> {
    const store = new ObjectStore(dir);
    await fs.rm(path.join(dir, 'tmp'), { recursive: true, force: true });
    await fs.mkdir(path.join(dir, 'tmp'), { recursive: true });
    await fs.mkdir(path.join(dir, 'buckets'), { recursive: true });
    await fs.mkdir(path.join(dir, 'uploads'), { recursive: true });
    for (const e of await entries(path.join(dir, 'buckets'))) {
      if (!e.isDirectory()) continue;
      const bdir = path.join(dir, 'buckets', e.name);
      const meta = await readJson(path.join(bdir, 'bucket.json'), z.object({ created: z.string() })).catch(() => undefined);
      if (!meta) continue; // a CreateBucket that crashed before its record: not a bucket
      const bucket: Bucket = { created: new Date(meta.created), objects: new Map() };
      const referenced = new Set<string>();
      for (const f of await entries(path.join(bdir, 'objects'))) {
        if (!f.isFile() || !f.name.endsWith('.json')) continue;
        const record = await readJson(path.join(bdir, 'objects', f.name), ObjectRecord);
        bucket.objects.set(record.key, record);
        referenced.add(record.blob);
      }
      // Blobs of writes that crashed before their commit, or of objects replaced just before a crash.
      for (const b of await entries(path.join(bdir, 'blobs'))) if (!referenced.has(b.name)) await fs.rm(path.join(bdir, 'blobs', b.name), { force: true });
      store.buckets.set(e.name, bucket);
    }
    return store;
  }

  private bucketDir(bucket: string): string {
    return path.join(this.dir, 'buckets', bucket);
  }

  private bucket(name: string): Bucket {
    const b = this.buckets.get(name);
    if (!b) throw S3Errors.noSuchBucket(name);
    return b;
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    this.locks.set(id, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  /** Creates a bucket; false when it already exists. */
  async createBucket(name: string): Promise<boolean> {
    assertBucketName(name);
    return this.locked(`bucket:${name}`, async () => {
      if (this.buckets.has(name)) return false;
      const bdir = this.bucketDir(name);
      await fs.mkdir(path.join(bdir, 'objects'), { recursive: true });
      await fs.mkdir(path.join(bdir, 'blobs'), { recursive: true });
      const created = nowSeconds();
      await writeFileAtomic(path.join(bdir, 'bucket.json'), `${JSON.stringify({ created: created.toISOString() })}\n`);
      this.buckets.set(name, { created, objects: new Map() });
      return true;
    });
  }

  /** Deletes an empty bucket. */
  async deleteBucket(name: string): Promise<void> {
    await this.locked(`bucket:${name}`, async () => {
      const b = this.bucket(name);
      if (b.objects.size > 0) throw new S3Error(409, 'BucketNotEmpty', 'The bucket you tried to delete is not empty', { BucketName: name });
      this.buckets.delete(name);
      await fs.rm(this.bucketDir(name), { recursive: true, force: true });
    });
  }

  hasBucket(name: string): boolean {
    return this.buckets.has(name);
  }

  listBuckets(): Array<{ name: string; created: Date }> {
    return [...this.buckets].map(([name, b]) => ({ name, created: b.created })).sort((a, b) => compareKeys(a.name, b.name));
  }

  /** The object's record, or undefined. */
  head(bucket: string, key: string): ObjectRecord | undefined {
    return this.bucket(bucket).objects.get(key);
  }

  /** Opens the object's bytes; the open handle stays valid even if the object is replaced meanwhile. */
  async open(bucket: string, key: string): Promise<{ record: ObjectRecord; handle: fs.FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      const record = this.head(bucket, key);
      if (!record) throw S3Errors.noSuchKey(key);
      try {
        return { record, handle: await fs.open(path.join(this.bucketDir(bucket), 'blobs', record.blob), 'r') };
      } catch (err) {
        // Replaced between the lookup and the open: look again.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
      }
    }
  }

  /** Keys of `bucket` in S3's listing order (UTF-8 bytes). */
  sortedKeys(bucket: string): ObjectRecord[] {
    return [...this.bucket(bucket).objects.values()].sort((a, b) => compareKeys(a.key, b.key));
  }

  /** A new empty file in the staging folder. */
  async stage(): Promise<StagedFile> {
    const file = path.join(this.dir, 'tmp', newId());
    return { path: file, handle: await fs.open(file, 'wx', 0o644) };
  }

  /** Closes and removes a staged file (after a refused or broken upload). */
  async discard(staged: StagedFile): Promise<void> {
    await staged.handle.close().catch(() => undefined);
    await fs.rm(staged.path, { force: true });
  }

  private async seal(staged: StagedFile): Promise<void> {
    try {
      await staged.handle.sync();
    } finally {
      await staged.handle.close();
    }
  }

  private checkConditions(key: string, existing: ObjectRecord | undefined, cond: WriteConditions): void {
    if (cond.ifNoneMatchAny && existing) throw S3Errors.preconditionFailed('If-None-Match');
    if (cond.ifMatch !== undefined) {
      if (!existing) throw S3Errors.noSuchKey(key);
      if (!etagMatches(cond.ifMatch, existing.etag)) throw S3Errors.preconditionFailed('If-Match');
    }
  }

  /** Throws now if a write to `key` under `cond` would be refused (a cheap check before the body is read). */
  precheck(bucket: string, key: string, cond: WriteConditions): void {
    this.checkConditions(key, this.head(bucket, key), cond);
  }

  /** Makes the staged file the object `key` (atomically, conditions checked at the commit); returns its record. */
  async commitObject(
    bucket: string,
    key: string,
    staged: StagedFile,
    fields: ObjectHeaders & { size: number; etag: string; checksum?: ObjectChecksum; partsCount?: number },
    cond: WriteConditions = {},
  ): Promise<ObjectRecord> {
    try {
      await this.seal(staged);
      return await this.locked(`object:${bucket}/${key}`, async () => {
        const b = this.bucket(bucket);
        const existing = b.objects.get(key);
        this.checkConditions(key, existing, cond);
        const bdir = this.bucketDir(bucket);
        const blob = newId();
        await fs.rename(staged.path, path.join(bdir, 'blobs', blob));
        const record: ObjectRecord = ObjectRecord.parse({ ...fields, key, blob, lastModified: nowSeconds().toISOString() });
        try {
          await writeFileAtomic(path.join(bdir, 'objects', keyFile(key)), `${JSON.stringify(record)}\n`);
        } catch (err) {
          await fs.rm(path.join(bdir, 'blobs', blob), { force: true });
          throw err;
        }
        b.objects.set(key, record);
        if (existing) await fs.rm(path.join(bdir, 'blobs', existing.blob), { force: true });
        return record;
      });
    } finally {
      await fs.rm(staged.path, { force: true });
    }
  }

  /** Deletes `key` (nothing happens when it does not exist, as on S3). */
  async deleteObject(bucket: string, key: string): Promise<void> {
    this.bucket(bucket);
    await this.locked(`object:${bucket}/${key}`, async () => {
      const b = this.bucket(bucket);
      const existing = b.objects.get(key);
      if (!existing) return;
      const bdir = this.bucketDir(bucket);
      await fs.rm(path.join(bdir, 'objects', keyFile(key)), { force: true });
      await fsyncDir(path.join(bdir, 'objects'));
      b.objects.delete(key);
      await fs.rm(path.join(bdir, 'blobs', existing.blob), { force: true });
    });
  }

  // Multipart uploads. https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html

  private uploadDir(uploadId: string): string {
    if (!UPLOAD_ID.test(uploadId)) throw S3Errors.noSuchUpload(uploadId);
    return path.join(this.dir, 'uploads', uploadId);
  }

  private async upload(bucket: string, key: string, uploadId: string): Promise<z.output<typeof UploadRecord>> {
    const record = await readJson(path.join(this.uploadDir(uploadId), 'upload.json'), UploadRecord).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw S3Errors.noSuchUpload(uploadId);
      throw err;
    });
    if (record.bucket !== bucket || record.key !== key) throw S3Errors.noSuchUpload(uploadId);
    return record;
  }

  /** Starts a multipart upload; returns its id. */
  async createUpload(bucket: string, key: string, headers: ObjectHeaders): Promise<string> {
    this.bucket(bucket);
    const uploadId = newId();
    await fs.mkdir(this.uploadDir(uploadId), { recursive: true });
    await writeFileAtomic(path.join(this.uploadDir(uploadId), 'upload.json'), `${JSON.stringify({ bucket, key, initiated: new Date().toISOString(), headers })}\n`);
    return uploadId;
  }

  /** Stores the staged file as part `partNumber` of the upload (replacing an earlier one); returns its ETag. */
  async commitPart(bucket: string, key: string, uploadId: string, partNumber: number, staged: StagedFile, part: { size: number; etag: string }): Promise<void> {
    try {
      await this.seal(staged);
      await this.locked(`upload:${uploadId}`, async () => {
        await this.upload(bucket, key, uploadId);
        const udir = this.uploadDir(uploadId);
        const blob = `part-${partNumber}-${newId()}`;
        await fs.rename(staged.path, path.join(udir, blob));
        const recordFile = path.join(udir, `part-${partNumber}.json`);
        const previous = await readJson(recordFile, PartRecord).catch(() => undefined);
        await writeFileAtomic(recordFile, `${JSON.stringify({ blob, ...part })}\n`);
        if (previous) await fs.rm(path.join(udir, previous.blob), { force: true });
      });
    } finally {
      await fs.rm(staged.path, { force: true });
    }
  }

  /**
   * Joins the listed parts into the object (checked as S3 does: ascending part numbers, known parts with matching
   * ETags, every part but the last at least 5 MiB), commits it under `cond` and removes the upload.
   */
  async completeUpload(bucket: string, key: string, uploadId: string, parts: ReadonlyArray<{ partNumber: number; etag: string }>, cond: WriteConditions): Promise<ObjectRecord> {
    return this.locked(`upload:${uploadId}`, async () => {
      const upload = await this.upload(bucket, key, uploadId);
      if (parts.length === 0) throw S3Errors.malformedXml();
      const udir = this.uploadDir(uploadId);
      const stored: Array<z.output<typeof PartRecord>> = [];
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        if (i > 0 && p.partNumber <= parts[i - 1]!.partNumber) throw new S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.');
        const record = await readJson(path.join(udir, `part-${p.partNumber}.json`), PartRecord).catch(() => undefined);
        if (!record || !etagMatches(p.etag, record.etag)) {
          throw new S3Error(400, 'InvalidPart', 'One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part\'s entity tag.', { PartNumber: String(p.partNumber), ETag: p.etag });
        }
        stored.push(record);
      }
      stored.forEach((r, i) => {
        if (i < stored.length - 1 && r.size < MIN_PART_BYTES) throw new S3Error(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.', { ProposedSize: String(r.size), MinSizeAllowed: String(MIN_PART_BYTES), PartNumber: String(parts[i]!.partNumber) });
      });
      this.precheck(bucket, key, cond);
      const staged = await this.stage();
      const md5s: Buffer[] = [];
      let size = 0;
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        for (const r of stored) {
          const src = await fs.open(path.join(udir, r.blob), 'r');
          try {
            for (;;) {
              const { bytesRead } = await src.read(buf, 0, buf.length, null);
              if (bytesRead === 0) break;
              let off = 0;
              while (off < bytesRead) off += (await staged.handle.write(buf, off, bytesRead - off)).bytesWritten;
              size += bytesRead;
            }
          } finally {
            await src.close();
          }
          md5s.push(Buffer.from(r.etag.replace(/"/g, ''), 'hex'));
        }
      } catch (err) {
        await this.discard(staged);
        throw err;
      }
      // The multipart ETag: MD5 of the parts' binary MD5s, then "-" and the part count.
      const etag = `"${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${stored.length}"`;
      const record = await this.commitObject(bucket, key, staged, { ...upload.headers, size, etag, partsCount: stored.length }, cond);
      await fs.rm(udir, { recursive: true, force: true });
      return record;
    });
  }

  /** Drops an upload and its parts. */
  async abortUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.locked(`upload:${uploadId}`, async () => {
      await this.upload(bucket, key, uploadId);
      await fs.rm(this.uploadDir(uploadId), { recursive: true, force: true });
    });
  }

  /** Checks that an upload exists for bucket/key (before a part's body is read). */
  async assertUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.upload(bucket, key, uploadId);
  }
}

/** Compares an ETag from a request (quoted or not, or `*`) with a stored one. */
export function etagMatches(given: string, stored: string): boolean {
  const bare = (e: string) => e.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return given
    .split(',')
    .map((g) => g.trim())
    .some((g) => g === '*' || bare(g) === bare(stored));
}
