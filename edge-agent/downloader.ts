// Resumable artifact download: streams to `<dest>.part`, resumes with an HTTP Range request after an
// interruption or a restart, checks size and sha256, and only then renames the file into place.
// https://www.rfc-editor.org/rfc/rfc9110#name-range-requests
import { sha256File } from '../common/hash.ts';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { TransportError, ValidationError, describeError } from '../common/errors.ts';
import type { Logger } from './log.ts';

export interface DownloadRequest {
  url: string;
  destPath: string;
  expectedSize: number;
  expectedSha256: string;
}

export interface DownloadOptions {
  maxBytes: number;
  retries: number;
  retryBaseMs: number;
  idleTimeoutMs: number;
  /** 0 = unlimited. */
  throttleBytesPerSec: number;
  log: Logger;
  onProgress?: (bytesOnDisk: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DownloadResult {
  /** Bytes already on disk when this call began (a resumed download starts above zero). */
  resumedFrom: number;
  /** Bytes fetched over the network by this call. */
  bytesFetched: number;
  /** Number of HTTP requests that asked for a byte range. */
  rangeRequests: number;
}

/** Resolves `name` under `root`, refusing anything that would land outside it. */
export function confinedPath(root: string, name: string): string {
  const base = path.resolve(root);
  const full = path.resolve(base, name);
  const rel = path.relative(base, full);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel) || name.includes('\\') || name.includes('\0')) {
    throw new ValidationError(`file name ${JSON.stringify(name)} escapes the directory ${base}; names must be relative paths inside it`, {
      code: 'VALIDATION_PATH',
    });
  }
  return full;
}

/** Throws unless `dir`'s volume has `needed + reserve` bytes free for an unprivileged writer (statfs bavail). */
export async function checkFreeSpace(dir: string, needed: number, reserve: number): Promise<number> {
  await fs.mkdir(dir, { recursive: true });
  const st = await fs.statfs(dir);
  const free = Number(st.bavail) * Number(st.bsize);
  if (free < needed + reserve) {
    throw new ValidationError(
      `not enough disk space in ${dir}: need ${needed} bytes plus ${reserve} reserve, ${free} free`,
      { code: 'VALIDATION_DISK_FULL' },
    );
  }
  return free;
}

async function hashFile(file: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return undefined;
  }
}


const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason as Error);
    }, { once: true });
  });

class ChecksumError extends ValidationError {}

/** Throws ValidationError unless `file` exists with exactly `size` bytes hashing to `sha256`. */
export async function verifyFileOnDisk(file: string, size: number, sha256: string): Promise<void> {
  const actual = await fileSize(file);
  if (actual !== size) {
    throw new ValidationError(`${path.basename(file)} is ${actual ?? 'missing'} bytes on disk; expected ${size}`, { code: 'VALIDATION_SIZE' });
  }
  const got = await sha256File(file);
  if (got !== sha256) {
    throw new ValidationError(`${path.basename(file)} sha256 on disk is ${got}; expected ${sha256}`, { code: 'VALIDATION_CHECKSUM' });
  }
}

/**
 * Downloads one artifact, resuming a `.part` file left by an earlier attempt or process.
 * Checksum and size failures throw ValidationError (not retried, except one fresh start after a resume);
 * network failures are retried with backoff and then throw TransportError.
 */
export async function downloadFile(req: DownloadRequest, opts: DownloadOptions): Promise<DownloadResult> {
  if (req.expectedSize > opts.maxBytes) {
    throw new ValidationError(`artifact ${path.basename(req.destPath)} is ${req.expectedSize} bytes; the limit is ${opts.maxBytes}`, {
      code: 'VALIDATION_TOO_LARGE',
    });
  }
  await fs.mkdir(path.dirname(req.destPath), { recursive: true });
  if ((await fileSize(req.destPath)) === req.expectedSize && (await sha256File(req.destPath)) === req.expectedSha256) {
    return { resumedFrom: req.expectedSize, bytesFetched: 0, rangeRequests: 0 };
  }
  const part = `${req.destPath}.part`;
  const result: DownloadResult = { resumedFrom: (await fileSize(part)) ?? 0, bytesFetched: 0, rangeRequests: 0 };
  let freshRestartUsed = false;
  let failures = 0;
  for (;;) {
    try {
      await attempt(req, part, opts, result);
      await fs.rename(part, req.destPath);
      return result;
    } catch (err) {
      if (err instanceof ChecksumError) {
        await fs.rm(part, { force: true });
        // Bytes kept from a previous process may be stale after a power cut: start once from zero.
        if (result.resumedFrom > 0 && !freshRestartUsed) {
          freshRestartUsed = true;
          opts.log.warn('checksum failed after resume; downloading again from byte 0', { file: req.destPath });
          continue;
        }
        throw err;
      }
      if (err instanceof ValidationError || opts.signal?.aborted) throw err;
      failures++;
      if (failures > opts.retries) {
        throw new TransportError(`download of ${path.basename(req.destPath)} failed after ${failures} attempts: ${describeError(err)}`, {
          cause: err,
        });
      }
      const delay = opts.retryBaseMs * 2 ** (failures - 1) * (0.5 + Math.random() / 2);
      opts.log.warn('download interrupted; will resume', { file: path.basename(req.destPath), error: describeError(err), delayMs: Math.round(delay) });
      await sleep(delay, opts.signal);
    }
  }
}

async function attempt(req: DownloadRequest, part: string, opts: DownloadOptions, result: DownloadResult): Promise<void> {
  let have = (await fileSize(part)) ?? 0;
  if (have > req.expectedSize) {
    await fs.rm(part, { force: true });
    have = 0;
  }
  let hash = createHash('sha256');
  if (have > 0) await hashFile(part, hash);
  const verify = async (size: number) => {
    if (size !== req.expectedSize) {
      throw new ChecksumError(`artifact ${path.basename(req.destPath)} is ${size} bytes; the job says ${req.expectedSize}`, { code: 'VALIDATION_SIZE' });
    }
    const got = hash.digest('hex');
    if (got !== req.expectedSha256) {
      throw new ChecksumError(`artifact ${path.basename(req.destPath)} sha256 is ${got}; the job says ${req.expectedSha256}`, {
        code: 'VALIDATION_CHECKSUM',
      });
    }
  };
  if (have === req.expectedSize) return verify(have);

  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let idle: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(new TransportError(`no data for ${opts.idleTimeoutMs} ms`)), opts.idleTimeoutMs);
  };
  let handle = await fs.open(part, have > 0 ? 'a' : 'w');
  try {
    armIdle();
    const headers: Record<string, string> = {};
    if (have > 0) {
      headers.range = `bytes=${have}-`;
      result.rangeRequests++;
    }
    let res: Response;
    try {
      res = await fetch(req.url, { headers, signal: abort.signal });
    } catch (err) {
      throw new TransportError(`GET ${redact(req.url)} failed: ${describeError(err)}`, { cause: err });
    }
    if (have > 0 && res.status === 200) {
      // The server ignored the range: start again from zero.
      await handle.truncate(0);
      await handle.close();
      handle = await fs.open(part, 'w');
      have = 0;
      hash = createHash('sha256');
    }
    if (have > 0 && res.status === 416) {
      await res.body?.cancel();
      return await verify(have);
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      const err = new TransportError(`GET ${redact(req.url)} returned HTTP ${res.status}`);
      // 4xx other than 408/429 will not heal by retrying (expired presigned URL, missing object).
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        throw new ValidationError(`GET ${redact(req.url)} returned HTTP ${res.status}`, { code: 'VALIDATION_HTTP', cause: err });
      }
      throw err;
    }
    if (res.status === 206) {
      const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== have) {
        await res.body?.cancel();
        throw new TransportError(`range response starts at ${m?.[1] ?? '?'}, expected ${have}`);
      }
    }
    have = await pump(res, have, req, handle, hash, opts, result, armIdle);
    await handle.sync();
    await verify(have);
  } finally {
    clearTimeout(idle);
    opts.signal?.removeEventListener('abort', onOuterAbort);
    await handle.close();
  }
}

async function pump(
  res: Response,
  start: number,
  req: DownloadRequest,
  handle: fs.FileHandle,
  hash: Hash,
  opts: DownloadOptions,
  result: DownloadResult,
  armIdle: () => void,
): Promise<number> {
  if (!res.body) throw new TransportError('response has no body');
  let have = start;
  const t0 = Date.now();
  let sent = 0;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      armIdle();
      if (have + chunk.length > req.expectedSize) {
        throw new ChecksumError(`artifact ${path.basename(req.destPath)} is longer than the ${req.expectedSize} bytes the job says`, {
          code: 'VALIDATION_SIZE',
        });
      }
      await handle.write(chunk);
      hash.update(chunk);
      have += chunk.length;
      sent += chunk.length;
      result.bytesFetched += chunk.length;
      opts.onProgress?.(have, req.expectedSize);
      if (opts.throttleBytesPerSec > 0) {
        const ahead = (sent / opts.throttleBytesPerSec) * 1000 - (Date.now() - t0);
        if (ahead > 0) await sleep(ahead, opts.signal);
      }
    }
  } catch (err) {
    if (err instanceof ValidationError) throw err;
    throw new TransportError(`download stream broke at byte ${have}: ${describeError(err)}`, { cause: err });
  }
  return have;
}

/** Drops the query string (presigned URLs carry credentials in it) before a URL reaches a log. */
export function redact(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}
