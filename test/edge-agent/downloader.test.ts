// Resumable downloads against a real HTTP server that honours Range requests and can cut a response short.
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { UrlPolicy } from '../../edge-agent/url-policy.ts';
import { RetryBudget, checkFreeSpace, confinedPath, downloadFile, fetchSmall, type DownloadOptions } from '../../edge-agent/downloader.ts';
import { silentLogger } from '../../edge-agent/log.ts';
import { canMountTmpfs } from '../helpers/tmpfs.ts';

const body = randomBytes(256 * 1024);
const sha = createHash('sha256').update(body).digest('hex');
let server: http.Server;
let base = '';
let cutAfter = 0; // >0: the next full/partial response dies after this many bytes
let ignoreRange = false;
let failNext = 0; // >0: answer the next requests with 503
let requests = 0;
const ranges: string[] = [];
let dir = '';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests++;
    if (failNext > 0) {
      failNext--;
      res.writeHead(503);
      res.end();
      return;
    }
    const range = req.headers.range;
    if (range) ranges.push(range);
    let start = 0;
    const m = range && !ignoreRange ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) start = Number(m[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    const slice = body.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': slice.length,
      ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (cutAfter > 0) {
      const n = cutAfter;
      cutAfter = 0;
      res.write(slice.subarray(0, n), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(slice);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-dl-'));
  ranges.length = 0;
  cutAfter = 0;
  ignoreRange = false;
  failNext = 0;
  requests = 0;
});

const opts = (over: Partial<DownloadOptions> = {}): DownloadOptions => ({
  maxBytes: 10 * 1024 * 1024,
  retry: { maxAttempts: 4, initialDelayMs: 10, maxDelayMs: 40, deadlineMs: 60_000 },
  idleTimeoutMs: 2000,
  throttleBytesPerSec: 0,
  log: silentLogger,
  urlPolicy: new UrlPolicy(['127.0.0.1']),
  ...over,
});

describe('downloadFile', () => {
  it('downloads, checks sha256 and renames into place', async () => {
    const dest = path.join(dir, 'model.onnx');
    const r = await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts());
    expect(r).toEqual({ resumedFrom: 0, bytesFetched: body.length, rangeRequests: 0 });
    expect((await fs.readFile(dest)).equals(body)).toBe(true);
    await expect(fs.stat(`${dest}.part`)).rejects.toThrow();
  });

  it('resumes with a Range request after the connection drops mid-body', async () => {
    cutAfter = 100_000;
    const dest = path.join(dir, 'model.onnx');
    const r = await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts());
    expect(ranges.length).toBe(1);
    expect(ranges[0]).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(ranges[0]!)![0])).toBeGreaterThan(0);
    expect(r.bytesFetched).toBe(body.length);
    expect((await fs.readFile(dest)).equals(body)).toBe(true);
  });

  it('resumes a .part file left by an earlier process', async () => {
    const dest = path.join(dir, 'model.onnx');
    await fs.writeFile(`${dest}.part`, body.subarray(0, 50_000));
    const r = await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts());
    expect(ranges).toEqual(['bytes=50000-']);
    expect(r.resumedFrom).toBe(50_000);
    expect(r.bytesFetched).toBe(body.length - 50_000);
    expect((await fs.readFile(dest)).equals(body)).toBe(true);
  });

  it('starts over when the server ignores the range', async () => {
    ignoreRange = true;
    const dest = path.join(dir, 'model.onnx');
    await fs.writeFile(`${dest}.part`, body.subarray(0, 50_000));
    const r = await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts());
    expect(r.bytesFetched).toBe(body.length);
    expect((await fs.readFile(dest)).equals(body)).toBe(true);
  });

  it('rejects a wrong sha256 and leaves no file behind', async () => {
    const dest = path.join(dir, 'model.onnx');
    const bad = 'a'.repeat(64);
    await expect(downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: bad }, opts())).rejects.toThrow(/sha256/);
    await expect(fs.stat(dest)).rejects.toThrow();
    await expect(fs.stat(`${dest}.part`)).rejects.toThrow();
  });

  it('re-downloads from zero once when resumed bytes were stale', async () => {
    const dest = path.join(dir, 'model.onnx');
    await fs.writeFile(`${dest}.part`, randomBytes(50_000)); // garbage, e.g. after a power cut
    const r = await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts());
    expect((await fs.readFile(dest)).equals(body)).toBe(true);
    expect(r.bytesFetched).toBe(body.length * 2 - 50_000);
  });

  it('refuses an artifact above maxBytes before any request', async () => {
    const dest = path.join(dir, 'model.onnx');
    await expect(
      downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts({ maxBytes: 1000 })),
    ).rejects.toThrow(/limit is 1000/);
    expect(ranges.length).toBe(0);
  });

  it('throttles to the configured rate', async () => {
    const dest = path.join(dir, 'model.onnx');
    const t0 = Date.now();
    await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts({ throttleBytesPerSec: 512 * 1024 }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400); // 256 KiB at 512 KiB/s
  });
});

describe('retry policy', () => {
  it('rides out failures up to maxAttempts in a row, then gives up with TRANSPORT naming the policy', async () => {
    const dest = path.join(dir, 'model.onnx');
    failNext = 3;
    await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts());
    expect(requests).toBe(4);
    failNext = 100;
    requests = 0;
    const err = await downloadFile({ url: `${base}/f`, destPath: path.join(dir, 'b'), expectedSize: body.length, expectedSha256: sha }, opts()).catch((e) => e);
    expect(err.code).toBe('TRANSPORT');
    expect(err.message).toMatch(/4 attempts in a row .*maxAttempts 4/);
    expect(requests).toBe(4);
  });

  it('stops at the deadline even with attempts left', async () => {
    failNext = 1000;
    const retry = { maxAttempts: 1000, initialDelayMs: 20, maxDelayMs: 20, deadlineMs: 300 };
    const err = await downloadFile({ url: `${base}/f`, destPath: path.join(dir, 'c'), expectedSize: body.length, expectedSha256: sha }, opts({ retry })).catch((e) => e);
    expect(err.message).toMatch(/without progress/);
    expect(requests).toBeGreaterThan(3);
    expect(requests).toBeLessThan(1000);
  });

  it('caps the backoff at maxDelayMs and resets after progress', () => {
    const b = new RetryBudget({ maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 150, deadlineMs: 1e9 });
    expect(b.nextDelay()).toBeLessThanOrEqual(100);
    expect(b.nextDelay()).toBeLessThanOrEqual(150);
    expect(b.nextDelay()).toBeNull(); // third failure in a row
    b.progressed();
    expect(b.nextDelay()).not.toBeNull();
  });

  it('retries the small signature download too', async () => {
    failNext = 2;
    const text = await fetchSmall(`${base}/f`, 1024 * 1024, { retry: opts().retry, log: silentLogger, idleTimeoutMs: 2000, urlPolicy: opts().urlPolicy });
    expect(text.length).toBeGreaterThan(0);
    expect(requests).toBe(3);
  });
});

// A real full filesystem: a 128 KiB tmpfs cannot hold the 256 KiB body. Needs root (mount); skipped otherwise.

describe.skipIf(!canMountTmpfs)('disk full (real tmpfs)', () => {
  it('fails at once with VALIDATION_DISK_FULL and leaves no partial file', async () => {
    const mnt = path.join(dir, 'small');
    await fs.mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mnt]);
    try {
      const dest = path.join(mnt, 'model.onnx');
      const err = await downloadFile({ url: `${base}/f`, destPath: dest, expectedSize: body.length, expectedSha256: sha }, opts()).catch((e) => e);
      expect(err.code).toBe('VALIDATION_DISK_FULL');
      expect(requests).toBe(1); // not retried
      expect(await fs.readdir(mnt)).toEqual([]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});

describe('confinedPath and checkFreeSpace', () => {
  it('keeps names inside the directory', () => {
    expect(confinedPath('/m', 'a/b.onnx')).toBe('/m/a/b.onnx');
    expect(() => confinedPath('/m', '../etc/passwd')).toThrow(/escapes/);
    expect(() => confinedPath('/m', '/etc/passwd')).toThrow(/escapes/);
    expect(() => confinedPath('/m', 'a/../../x')).toThrow(/escapes/);
  });

  it('fails when the volume lacks room', async () => {
    await expect(checkFreeSpace(dir, Number.MAX_SAFE_INTEGER, 0)).rejects.toThrow(/not enough disk space/);
    expect(await checkFreeSpace(dir, 1, 0)).toBeGreaterThan(1);
  });
});
