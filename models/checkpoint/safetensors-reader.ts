// A safetensors file opened for reading one tensor at a time: only the header is read up front,
// each tensor is a positional read of its byte range, so memory stays near one tensor.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelError } from '../../common/errors.ts';
import type { WeightTensor } from '../arch/weights.ts';
import { DTYPE_BYTES, headerLengthOf, parseSafetensorsHeader, tensorToFloat32, type SafetensorsEntry, type SafetensorsTensor } from './safetensors.ts';

/** Elements converted per read when a tensor is not stored as F32 (bounds the raw-bytes buffer). */
const CONVERT_CHUNK_ELEMENTS = 1 << 20;

/** Reads `length` bytes at `position` of an open file (into `out` when given), failing on a short read. */
function readExactly(fd: number, length: number, position: number, what: string, out = new Uint8Array(length)): Uint8Array {
  let done = 0;
  while (done < length) {
    // readSync takes at most 2 GiB per call.
    const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw new ModelError(`${what}: file ended after ${position + done} bytes while reading ${length} bytes at ${position}`, { code: 'MODEL_CHECKPOINT' });
    done += n;
  }
  return out;
}

/** One safetensors file, header parsed, tensor data read on demand. Call close() when done. */
export class SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
  /** Size of the file in bytes. */
  readonly fileBytes: number;
  private fd: number | null;
  private readonly dataStart: number;

  private constructor(path: string, fd: number, fileBytes: number, dataStart: number, header: ReturnType<typeof parseSafetensorsHeader>) {
    this.path = path;
    this.fd = fd;
    this.fileBytes = fileBytes;
    this.dataStart = dataStart;
    this.metadata = header.metadata;
    this.entries = header.entries;
  }

  /** Opens a file and validates its header (no tensor data is read). */
  static open(filePath: string): SafetensorsReader {
    const what = `safetensors checkpoint ${filePath}`;
    let fd: number;
    try {
      fd = openSync(filePath, 'r');
    } catch (err) {
      throw new ModelError(`cannot read checkpoint ${filePath}: ${(err as Error).message}`, { cause: err, code: 'MODEL_CHECKPOINT' });
    }
    try {
      const size = fstatSync(fd).size;
      const prefix = size >= 8 ? readExactly(fd, 8, 0, what) : new Uint8Array(0);
      const n = headerLengthOf(prefix, size, what);
      const header = parseSafetensorsHeader(readExactly(fd, n, 8, what), size - 8 - n, what);
      return new SafetensorsReader(filePath, fd, size, 8 + n, header);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw new ModelError(`safetensors checkpoint ${this.path} has no tensor "${name}"`, { code: 'MODEL_CHECKPOINT' });
    return e;
  }

  /** The stored bytes of one tensor (a fresh buffer). */
  readRaw(name: string): SafetensorsTensor {
    if (this.fd === null) throw new ModelError(`safetensors checkpoint ${this.path} is closed`);
    const e = this.entry(name);
    const bytes = readExactly(this.fd, e.end - e.begin, this.dataStart + e.begin, `safetensors checkpoint ${this.path}`);
    return { dtype: e.dtype, shape: e.shape, bytes };
  }

  /** `count` elements of one tensor from element `start` on, as stored (for comparisons in chunks). */
  readRawRange(name: string, start: number, count: number): SafetensorsTensor {
    if (this.fd === null) throw new ModelError(`safetensors checkpoint ${this.path} is closed`);
    const e = this.entry(name);
    const size = DTYPE_BYTES[e.dtype];
    if (start < 0 || count < 0 || (start + count) * size > e.end - e.begin) {
      throw new RangeError(`elements ${start}..${start + count} are outside tensor "${name}" of ${(e.end - e.begin) / size} elements`);
    }
    const bytes = readExactly(this.fd, count * size, this.dataStart + e.begin + start * size, `safetensors checkpoint ${this.path}`);
    return { dtype: e.dtype, shape: [count], bytes };
  }

  /**
   * One tensor converted to float32 (F32, F16, BF16, F64). F32 is read straight into the result;
   * other dtypes are read and converted in chunks, so the peak is the result plus one chunk.
   */
  read(name: string): WeightTensor {
    if (this.fd === null) throw new ModelError(`safetensors checkpoint ${this.path} is closed`);
    const e = this.entry(name);
    const count = e.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(count);
    if (e.dtype === 'F32') {
      readExactly(this.fd, count * 4, this.dataStart + e.begin, `safetensors checkpoint ${this.path}`, new Uint8Array(out.buffer));
      return { data: out, shape: [...e.shape] };
    }
    for (let start = 0; start < count; start += CONVERT_CHUNK_ELEMENTS) {
      const part = this.readRawRange(name, start, Math.min(CONVERT_CHUNK_ELEMENTS, count - start));
      out.set(tensorToFloat32(name, part).data, start);
    }
    return { data: out, shape: [...e.shape] };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
