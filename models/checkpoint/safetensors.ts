// Reading and writing safetensors checkpoints (https://huggingface.co/docs/safetensors, format:
// u64 little-endian header length, JSON header, then one byte buffer) with strict validation:
// a header that lies about offsets, dtypes or sizes is rejected with the tensor named.
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { ModelError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/atomic-file.ts';
import type { WeightTensor } from '../arch/weights.ts';

/** Element sizes of the dtypes safetensors defines (that FleetLM reads). */
export const DTYPE_BYTES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 } as const;
export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** Headers above this are refused (the reference implementation's limit is 100 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor as stored: dtype, shape and a view of its little-endian bytes. */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Map<string, SafetensorsTensor>;
}

const EntrySchema = z
  .object({
    dtype: z.string(),
    shape: z.array(z.number().int().nonnegative()),
    data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
  })
  .strict();

const MetadataSchema = z.record(z.string(), z.string());

/** Where one tensor's bytes lie in the data buffer (after the header). */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offsets into the data buffer, end exclusive. */
  begin: number;
  end: number;
}

/** A validated header: metadata and every tensor's dtype, shape and byte range. */
export interface SafetensorsHeader {
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
}

function checkpointError(what: string, message: string): never {
  throw new ModelError(`${what}: ${message}`, { code: 'MODEL_CHECKPOINT' });
}

/** Header length from the first 8 bytes, checked against the limit and the file size. */
export function headerLengthOf(prefix: Uint8Array, fileBytes: number, what = 'safetensors checkpoint'): number {
  if (fileBytes < 8 || prefix.length < 8) checkpointError(what, `file has ${fileBytes} bytes; a safetensors file needs at least 8 (the header length)`);
  const headerLen = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) checkpointError(what, `header length ${headerLen} is over the limit of ${MAX_HEADER_BYTES} bytes`);
  const n = Number(headerLen);
  if (8 + n > fileBytes) checkpointError(what, `header length ${n} runs past the end of the file (${fileBytes} bytes); the file is truncated`);
  return n;
}

/**
 * Validates a header (the JSON after the 8-byte length) against a data buffer of `dataBytes`:
 * known dtypes, sizes that match shapes, ranges that tile the buffer exactly.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, dataBytes: number, what = 'safetensors checkpoint'): SafetensorsHeader {
  const fail = (message: string): never => checkpointError(what, message);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header must be a JSON object');
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  const ranges: Array<{ name: string; begin: number; end: number }> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      const parsed = MetadataSchema.safeParse(raw);
      if (!parsed.success) fail('__metadata__ must map strings to strings');
      metadata = parsed.data!;
      continue;
    }
    const parsed = EntrySchema.safeParse(raw);
    if (!parsed.success) fail(`tensor "${name}" has a malformed entry; expected {dtype, shape: int[], data_offsets: [begin, end]}`);
    const entry = parsed.data!;
    if (!(entry.dtype in DTYPE_BYTES)) {
      fail(`tensor "${name}" has unsupported dtype "${entry.dtype}"; supported: ${Object.keys(DTYPE_BYTES).join(', ')}`);
    }
    const dtype = entry.dtype as SafetensorsDtype;
    const [begin, end] = entry.data_offsets;
    if (end < begin) fail(`tensor "${name}" has data_offsets [${begin}, ${end}] with end before begin`);
    if (end > dataBytes) fail(`tensor "${name}" has data_offsets [${begin}, ${end}] past the data buffer of ${dataBytes} bytes`);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(count * DTYPE_BYTES[dtype]) || count * DTYPE_BYTES[dtype] !== end - begin) {
      fail(`tensor "${name}" has shape [${entry.shape.join(', ')}] of ${dtype} (${count * DTYPE_BYTES[dtype]} bytes) but data_offsets [${begin}, ${end}] span ${end - begin} bytes`);
    }
    ranges.push({ name, begin, end });
    entries.set(name, { dtype, shape: entry.shape, begin, end });
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const r of ranges) {
    if (r.begin < cursor) fail(`tensor "${r.name}" (bytes ${r.begin}..${r.end}) overlaps the tensor before it, which ends at ${cursor}`);
    if (r.begin > cursor) fail(`bytes ${cursor}..${r.begin} before tensor "${r.name}" belong to no tensor; the header does not cover the buffer`);
    cursor = r.end;
  }
  if (cursor !== dataBytes) fail(`the header covers ${cursor} bytes but the data buffer has ${dataBytes}`);
  return { metadata, entries };
}

/** Parses safetensors bytes; every tensor is a view into `bytes` (no copy). */
export function parseSafetensors(bytes: Uint8Array, what = 'safetensors checkpoint'): SafetensorsFile {
  const n = headerLengthOf(bytes, bytes.length, what);
  const data = bytes.subarray(8 + n);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), data.length, what);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, e] of header.entries) tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: data.subarray(e.begin, e.end) });
  return { metadata: header.metadata, tensors };
}

/** Reads and validates a safetensors file. */
export async function readSafetensors(filePath: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(filePath);
  } catch (err) {
    throw new ModelError(`cannot read checkpoint ${filePath}: ${(err as Error).message}`, { cause: err, code: 'MODEL_CHECKPOINT' });
  }
  return parseSafetensors(bytes, `safetensors checkpoint ${filePath}`);
}

function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

let F16_TABLE: Float32Array | undefined;
/** float32 value of every half-precision bit pattern (256 KiB, built once): conversion by lookup. */
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16ToF32(h);
  }
  return F16_TABLE;
}

/** Converts a stored floating-point tensor to float32 (F32, F16, BF16, F64); other dtypes are refused. */
export function tensorToFloat32(name: string, t: SafetensorsTensor): WeightTensor {
  const count = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count);
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  switch (t.dtype) {
    case 'F32':
      new Uint8Array(out.buffer).set(t.bytes);
      break;
    case 'F64':
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      break;
    case 'F16': {
      const table = f16Table();
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)]!;
      break;
    }
    case 'BF16': {
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u32[i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    default:
      throw new ModelError(`tensor "${name}" has dtype ${t.dtype}; weights must be F32, F16, BF16 or F64`, { code: 'MODEL_CHECKPOINT' });
  }
  return { data: out, shape: [...t.shape] };
}

/** Serialises float32 tensors (names sorted) as safetensors bytes with an 8-byte aligned header. */
export function encodeSafetensors(tensors: Map<string, WeightTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new ModelError(`tensor "${name}" has ${t.data.length} values but shape [${t.shape.join(', ')}] needs ${count}`);
    }
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const t = tensors.get(name)!;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Atomically writes float32 tensors as a safetensors file. */
export async function writeSafetensors(filePath: string, tensors: Map<string, WeightTensor>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(filePath, encodeSafetensors(tensors, metadata));
}
