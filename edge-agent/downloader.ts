// Resumable artifact download: streams to `<dest>.part`, resumes with an HTTP Range request after an
// interruption or a restart, checks size and sha256, and only then renames the file into place.
// https://www.rfc-editor.org/rfc/rfc9110#name-range-requests
import { sha256File } from '../common/hash.ts';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { FleetError, TransportError, ValidationError, describeError } from '../common/errors.ts';
import type { Logger } from './log.ts';
import { URL_POLICY_CODES, type UrlPolicy } from './url-policy.ts';

export interface DownloadRequest {
  url: string;
  destPath: string;
  expectedSize: number;
  expectedSha256: string;
}

/**
 * How long a download keeps trying over a flaky link. Attempts and the deadline count only failures in a
 * row: an attempt that received bytes resets both, so a slow cellular link that keeps moving never gives up.
 */
export interface RetryPolicy {
  /** Failed attempts in a row (without a byte received) before giving up. */
  maxAttempts: number;
  /** Wait before the first retry; doubles each failure (with jitter), up to maxDelayMs. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** Longest time spent failing in a row (from the last byte received) before giving up. */
  deadlineMs: number;
}

export interface DownloadOptions {
  maxBytes: number;
  retry: RetryPolicy;
  idleTimeoutMs: number;
  /** 0 = unlimited. */
  throttleBytesPerSec: number;
  log: Logger;
  /** Hosts the URL (and any redirect) may point at; checked before anything is sent. */
  urlPolicy: UrlPolicy;
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


/** Waits `ms`, or rejects when `signal` aborts; the abort listener is removed either way (retries add many). */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
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
  opts.urlPolicy.check(req.url, `artifact ${path.basename(req.destPath)}`);
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
  const budget = new RetryBudget(opts.retry);
  for (;;) {
    const fetchedBefore = result.bytesFetched;
    try {
      await attempt(req, part, opts, result);
      await fs.rename(part, req.destPath);
      return result;
    } catch (err) {
      if (isDiskFull(err)) {
        // Retrying cannot help and the partial file is what fills the volume: free it and stop at once.
        await fs.rm(part, { force: true });
        throw diskFullError(path.dirname(req.destPath), err);
      }
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
      if (result.bytesFetched > fetchedBefore) budget.progressed();
      const delay = budget.nextDelay();
      if (delay === null) {
        throw new TransportError(`download of ${path.basename(req.destPath)} failed: ${budget.describe()}; last error: ${describeError(err)}`, {
          cause: err,
        });
      }
      // Where the resume starts: bytes on disk of the expected total (all of them when the link broke after
      // the last byte arrived but before the response ended; the next attempt then only verifies).
      const bytesOnDisk = (await fileSize(part)) ?? 0;
      opts.log.warn('download interrupted; will resume', {
        file: path.basename(req.destPath),
        error: describeError(err),
        delayMs: Math.round(delay),
        bytesOnDisk,
        expectedBytes: req.expectedSize,
      });
      await sleep(delay, opts.signal);
    }
  }
}

/** Failures in a row under a RetryPolicy: when to retry next, or null once attempts or deadline run out. */
export class RetryBudget {
  private failures = 0;
  private since = Date.now();

  constructor(private readonly policy: RetryPolicy) {}

  /** Bytes arrived: the link works, so the count of failures in a row starts again. */
  progressed(): void {
    this.failures = 0;
    this.since = Date.now();
  }

  /** Records one failure; returns the wait before the next attempt, or null to give up. */
  nextDelay(): number | null {
    this.failures++;
    if (this.failures >= this.policy.maxAttempts) return null;
    const backoff = Math.min(this.policy.maxDelayMs, this.policy.initialDelayMs * 2 ** Math.min(this.failures - 1, 30));
    const delay = backoff * (0.5 + Math.random() / 2);
    if (Date.now() - this.since + delay > this.policy.deadlineMs) return null;
    return delay;
  }

  describe(): string {
    return `${this.failures} attempts in a row over ${Math.round((Date.now() - this.since) / 1000)} s without progress (retry policy: maxAttempts ${this.policy.maxAttempts}, deadlineMs ${this.policy.deadlineMs})`;
  }
}

/** The error (or cause) saying the volume ran out of space or quota, if any. */
function diskFullCause(err: unknown): NodeJS.ErrnoException | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return e as NodeJS.ErrnoException;
  }
  return undefined;
}

/** True when `err` (or a cause) is the volume running out of space or quota. */
export function isDiskFull(err: unknown): boolean {
  return diskFullCause(err) !== undefined;
}

/** The VALIDATION_DISK_FULL error for a write that ran out of space under `dir`. */
export function diskFullError(dir: string, cause: unknown): ValidationError {
  const errno = diskFullCause(cause);
  return new ValidationError(`the disk holding ${dir} filled up while writing (${errno?.code ?? 'ENOSPC'}: ${errno?.syscall ?? 'write'}); free space and deploy again`, {
    code: 'VALIDATION_DISK_FULL',
    cause,
  });
}

/** GETs a small document (the manifest signature) with the download retry policy, refusing anything above `maxBytes`. */
export async function fetchSmall(url: string, maxBytes: number, opts: Pick<DownloadOptions, 'retry' | 'log' | 'signal' | 'idleTimeoutMs' | 'urlPolicy'>): Promise<string> {
  opts.urlPolicy.check(url, 'signature');
  const budget = new RetryBudget(opts.retry);
  for (;;) {
    try {
      return await fetchSmallOnce(url, maxBytes, opts);
    } catch (err) {
      if (err instanceof ValidationError || opts.signal?.aborted) throw err;
      const delay = budget.nextDelay();
      if (delay === null) throw new TransportError(`GET ${redact(url)} failed: ${budget.describe()}; last error: ${describeError(err)}`, { cause: err });
      opts.log.warn('small download failed; will retry', { url: redact(url), error: describeError(err), delayMs: Math.round(delay) });
      await sleep(delay, opts.signal);
    }
  }
}

async function fetchSmallOnce(url: string, maxBytes: number, opts: Pick<DownloadOptions, 'signal' | 'idleTimeoutMs' | 'urlPolicy'>): Promise<string> {
  let res: Response;
  let buf: Buffer;
  const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.idleTimeoutMs)]) : AbortSignal.timeout(opts.idleTimeoutMs);
  try {
    res = await fetchAllowed(url, { signal }, opts.urlPolicy);
    if (!res.ok) {
      await res.body?.cancel();
      const msg = `GET ${redact(url)} returned HTTP ${res.status}`;
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new ValidationError(msg, { code: 'VALIDATION_HTTP' });
      throw new TransportError(msg);
    }
    buf = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    if (err instanceof FleetError) throw err;
    throw new TransportError(`GET ${redact(url)} failed: ${describeError(err)}`, { cause: err });
  }
  if (buf.length > maxBytes) throw new ValidationError(`${redact(url)} is ${buf.length} bytes; at most ${maxBytes} allowed`);
  return buf.toString('utf8');
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
      res = await fetchAllowed(req.url, { headers, signal: abort.signal }, opts.urlPolicy);
    } catch (err) {
      if (err instanceof FleetError) throw err;
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

/** Redirects followed at most, all on the original origin. */
const MAX_REDIRECTS = 5;

/**
 * fetch() that follows redirects itself, and only within the origin of the first URL: a redirect to another
 * host, port or scheme is refused before anything is sent there (and the refusal names no target).
 */
async function fetchAllowed(url: string, init: RequestInit, policy: UrlPolicy): Promise<Response> {
  let current = policy.check(url, 'download');
  const origin = current.origin;
  for (let hop = 0; ; hop++) {
    const res = await fetch(current, { ...init, redirect: 'manual' });
    if (res.status < 300 || res.status > 399 || res.status === 304) return res;
    await res.body?.cancel();
    const location = res.headers.get('location');
    let next: URL | undefined;
    try {
      next = location ? new URL(location, current) : undefined;
    } catch {
      next = undefined;
    }
    if (!next || next.origin !== origin) {
      throw new ValidationError(`${redact(url)} redirected to another host; cross-host redirects are refused and nothing was fetched there`, {
        code: URL_POLICY_CODES.redirect,
      });
    }
    if (hop + 1 >= MAX_REDIRECTS) throw new ValidationError(`${redact(url)} redirected more than ${MAX_REDIRECTS} times`, { code: URL_POLICY_CODES.redirect });
    current = policy.check(next.href, 'redirect');
  }
}

/** Drops the query string (presigned URLs carry credentials in it) before a URL reaches a log. */
export function redact(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}
