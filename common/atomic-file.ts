// Crash-safe file writes: write a temp file beside the target, fsync it, rename over the
// target, then fsync the directory so the rename itself survives a power cut.
import { promises as fs, openSync, writeSync, fsyncSync, closeSync, renameSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** fsyncs a directory so a rename or a new entry in it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** How an atomic write creates its file. */
export interface AtomicWriteOptions {
  /** File mode from the first byte (default 0o644, less the umask); 0o600 for secrets. */
  mode?: number;
}

/**
 * Writes `chunks` to a temp file beside `target`, fsyncs it and renames it over `target`; returns
 * the bytes written. Streaming chunks keeps large files (ONNX weights) out of one big buffer.
 * The caller fsyncs the directory (fsyncDir) once after a group of renames.
 */
export async function writeChunksAtomic(target: string, chunks: Iterable<Uint8Array>, options: AtomicWriteOptions = {}): Promise<number> {
  const tmp = tempPathFor(target);
  // The mode applies when the temp file is created, so a secret is never readable by others, not even briefly.
  const handle = await fs.open(tmp, 'w', options.mode ?? 0o644);
  let written = 0;
  try {
    for (const chunk of chunks) {
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.length - off, written);
        off += bytesWritten;
        written += bytesWritten;
      }
    }
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return written;
}

/** Atomically replaces `target` with `data` (temp file, fsync, rename, fsync dir). */
export async function writeFileAtomic(target: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  await writeChunksAtomic(target, [typeof data === 'string' ? Buffer.from(data) : data], options);
  await fsyncDir(path.dirname(target));
}

/** Synchronous twin of writeFileAtomic, for shutdown paths where awaiting is not possible. */
export function writeFileAtomicSync(target: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(target);
  const fd = openSync(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, target);
  const dirFd = openSync(path.dirname(target), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Atomically writes `value` as pretty JSON with a trailing newline. */
export async function writeJsonAtomic(target: string, value: unknown, options: AtomicWriteOptions = {}): Promise<void> {
  await writeFileAtomic(target, `${JSON.stringify(value, null, 2)}\n`, options);
}
