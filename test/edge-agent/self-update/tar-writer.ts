// A tiny ustar writer for tests: builds archives real tools would refuse to make (paths with `..`,
// escaping links, hard links, devices) to check that the reader and the unpacker refuse them.
import { gzipSync } from 'node:zlib';

export interface TestTarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'hardlink' | 'fifo';
  body?: string | Buffer;
  linkTarget?: string;
  mode?: number;
}

const TYPEFLAG = { file: '0', directory: '5', symlink: '2', hardlink: '1', fifo: '6' } as const;

function header(e: TestTarEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  if (Buffer.byteLength(e.name) > 100) throw new Error(`test tar writer: name over 100 bytes: ${e.name}`);
  h.write(e.name, 0, 'utf8');
  h.write(`${(e.mode ?? (e.type === 'directory' ? 0o755 : 0o644)).toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write(`${Math.floor(Date.now() / 1000).toString(8).padStart(11, '0')}\0`, 136);
  h.write('        ', 148);
  h.write(TYPEFLAG[e.type ?? 'file'], 156);
  if (e.linkTarget) h.write(e.linkTarget, 157);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** A gzip'd tar of `entries`, in order. */
export function tarGz(entries: readonly TestTarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = e.type === undefined || e.type === 'file' ? Buffer.from(e.body ?? '') : Buffer.alloc(0);
    parts.push(header(e, body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts));
}
