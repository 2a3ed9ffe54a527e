// A streaming reader for gzip'd tar archives (POSIX ustar with pax and GNU long-name extensions), written
// here so device code needs no archive dependency. It only reads: callers decide what an entry may be.
// https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { ValidationError } from './errors.ts';

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  name: string;
  type: TarEntryType;
  /** The raw typeflag, for error messages about `other` entries. */
  typeflag: string;
  size: number;
  mode: number;
  linkTarget: string;
}

/** What the caller does with each entry; `data` gets the file's bytes in order, `end` once it is complete. */
export interface TarVisitor {
  entry(entry: TarEntry): Promise<void>;
  data(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
}

export interface TarReadLimits {
  /** Most entries (of any type) the archive may hold. */
  maxEntries: number;
  /** Most uncompressed bytes read from the gzip stream, headers included (stops gzip bombs early). */
  maxArchiveBytes: number;
}

const BLOCK = 512;

function tarError(message: string): ValidationError {
  return new ValidationError(`invalid tar archive: ${message}`, { code: 'VALIDATION_ARCHIVE' });
}

function cString(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? slice.length : nul).toString('utf8');
}

function octal(buf: Buffer, start: number, len: number, field: string): number {
  const slice = buf.subarray(start, start + len);
  // GNU base-256 for sizes above 8 GiB: such files are far beyond any limit, so refuse rather than decode.
  if ((slice[0]! & 0x80) !== 0) throw tarError(`${field} uses base-256 encoding (too large)`);
  const text = cString(buf, start, len).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw tarError(`${field} is not octal: ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === octal(header, 148, 8, 'checksum');
}

/** Parses pax extended header records: "<len> <key>=<value>\n". */
function parsePax(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  while (off < body.length) {
    const space = body.indexOf(0x20, off);
    if (space < 0) break;
    const len = Number(body.subarray(off, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0 || off + len > body.length) throw tarError('malformed pax header record');
    const record = body.subarray(space + 1, off + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    off += len;
  }
  return out;
}

function typeOf(flag: string): TarEntryType {
  if (flag === '0' || flag === '\0' || flag === '' || flag === '7') return 'file';
  if (flag === '5') return 'directory';
  if (flag === '2') return 'symlink';
  if (flag === '1') return 'hardlink';
  return 'other';
}

/** Reads a tar stream (already decompressed), calling `visitor` for each entry; metadata entries are applied, not reported. */
export async function readTar(source: AsyncIterable<Uint8Array>, visitor: TarVisitor, limits: TarReadLimits): Promise<void> {
  let buf = Buffer.alloc(0);
  let total = 0;
  let entries = 0;
  /** Bytes of the current entry's body still to pass on, and padding to skip after it. */
  let remaining = 0;
  let padding = 0;
  let inFile = false;
  /** Metadata entries (pax 'x', GNU 'L'/'K') collect their body here instead of passing it on. */
  let meta: { kind: string; parts: Buffer[] } | null = null;
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  let ended = false;

  const finishBody = async () => {
    if (meta) {
      const body = Buffer.concat(meta.parts);
      if (meta.kind === 'x') pax = parsePax(body);
      else if (meta.kind === 'L') longName = cString(body, 0, body.length);
      else if (meta.kind === 'K') longLink = cString(body, 0, body.length);
      meta = null;
    } else if (inFile) {
      inFile = false;
      await visitor.end();
    }
  };

  for await (const chunk of source) {
    total += chunk.length;
    if (total > limits.maxArchiveBytes) throw tarError(`more than ${limits.maxArchiveBytes} bytes once decompressed`);
    buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk]);
    while (!ended) {
      if (remaining > 0) {
        if (buf.length === 0) break;
        const take = Math.min(remaining, buf.length);
        const part = buf.subarray(0, take);
        buf = buf.subarray(take);
        remaining -= take;
        if (meta) {
          if (meta.kind !== 'skip') meta.parts.push(Buffer.from(part));
        }
        else if (inFile) await visitor.data(Buffer.from(part));
        if (remaining === 0) await finishBody();
        continue;
      }
      if (padding > 0) {
        if (buf.length === 0) break;
        const skip = Math.min(padding, buf.length);
        buf = buf.subarray(skip);
        padding -= skip;
        continue;
      }
      if (buf.length < BLOCK) break;
      const header = buf.subarray(0, BLOCK);
      buf = buf.subarray(BLOCK);
      if (header.every((b) => b === 0)) {
        ended = true; // end-of-archive marker; whatever follows is padding
        break;
      }
      if (!checksumOk(header)) throw tarError('header checksum mismatch (corrupt or not a tar file)');
      const flag = String.fromCharCode(header[156]!);
      const size = pax.has('size') && flag !== 'x' && flag !== 'g' ? Number(pax.get('size')) : octal(header, 124, 12, 'size');
      if (!Number.isSafeInteger(size) || size < 0) throw tarError('bad entry size');
      padding = (BLOCK - (size % BLOCK)) % BLOCK;
      remaining = size;
      if (flag === 'x' || flag === 'L' || flag === 'K' || flag === 'g') {
        if (size > 1024 * 1024) throw tarError(`metadata entry of ${size} bytes`);
        meta = { kind: flag, parts: [] };
        if (size === 0) await finishBody();
        continue;
      }
      entries += 1;
      if (entries > limits.maxEntries) throw tarError(`more than ${limits.maxEntries} entries`);
      const prefix = cString(header, 345, 155);
      const ustarName = prefix ? `${prefix}/${cString(header, 0, 100)}` : cString(header, 0, 100);
      const entry: TarEntry = {
        name: pax.get('path') ?? longName ?? ustarName,
        type: typeOf(flag),
        typeflag: flag,
        size,
        mode: octal(header, 100, 8, 'mode') & 0o7777,
        linkTarget: pax.get('linkpath') ?? longLink ?? cString(header, 157, 100),
      };
      pax = new Map();
      longName = undefined;
      longLink = undefined;
      await visitor.entry(entry);
      if (entry.type === 'file') {
        inFile = true;
        if (size === 0) await finishBody();
      } else {
        // Bodies of non-file entries (rare) are skipped.
        meta = { kind: 'skip', parts: [] };
        if (size === 0) meta = null;
      }
    }
  }
  if (!ended) throw tarError('archive is truncated (no end-of-archive marker)');
}

/** Reads a .tar.gz file. */
export async function readTarGzFile(file: string, visitor: TarVisitor, limits: TarReadLimits): Promise<void> {
  const gunzip = createGunzip();
  const input = createReadStream(file);
  input.on('error', (err) => gunzip.destroy(err));
  input.pipe(gunzip);
  try {
    await readTar(gunzip, visitor, limits);
  } catch (err) {
    if (err instanceof ValidationError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code?.startsWith('Z_') || e.code === 'ERR_ZLIB') throw new ValidationError(`invalid tar.gz ${file}: ${e.message}`, { code: 'VALIDATION_ARCHIVE', cause: err });
    throw err;
  } finally {
    input.destroy();
    gunzip.destroy();
  }
}
