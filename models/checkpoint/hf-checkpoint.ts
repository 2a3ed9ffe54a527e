// The weights of a Hugging Face checkpoint folder: model.safetensors, or shards listed by
// model.safetensors.index.json (weight_map), opened header-first and read one tensor at a time.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ModelError, ValidationError } from '../../common/errors.ts';
import { formatIssues } from '../../common/validate.ts';
import type { WeightTensor } from '../arch/weights.ts';
import { SafetensorsReader } from './safetensors-reader.ts';
import type { SafetensorsDtype, SafetensorsTensor } from './safetensors.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

const IndexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string().regex(/^[A-Za-z0-9._-]+\.safetensors$/, 'must be a .safetensors file name in the same folder')),
});

/** One checkpoint tensor: where it is and what it holds. */
export interface CheckpointTensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** File name inside the folder. */
  file: string;
}

function checkpointError(message: string): never {
  throw new ModelError(message, { code: 'MODEL_CHECKPOINT' });
}

/** A checkpoint folder's safetensors files, open for positional reads. Call close() when done. */
export class HfCheckpoint {
  readonly dir: string;
  /** The safetensors files, in name order, with their sizes. */
  readonly files: ReadonlyArray<{ name: string; bytes: number }>;
  readonly tensors: ReadonlyMap<string, CheckpointTensorInfo>;
  private readonly readers: Map<string, SafetensorsReader>;

  private constructor(dir: string, readers: Map<string, SafetensorsReader>, tensors: Map<string, CheckpointTensorInfo>) {
    this.dir = dir;
    this.readers = readers;
    this.tensors = tensors;
    this.files = [...readers.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, r]) => ({ name, bytes: r.fileBytes }));
  }

  /**
   * Opens `dir`: model.safetensors when present (transformers' own order), else the shards named by
   * model.safetensors.index.json, each of which must hold exactly the tensors the index maps to it.
   */
  static open(dir: string): HfCheckpoint {
    const single = path.join(dir, SINGLE_FILE);
    const index = path.join(dir, INDEX_FILE);
    const readers = new Map<string, SafetensorsReader>();
    const tensors = new Map<string, CheckpointTensorInfo>();
    const closeAll = (): void => readers.forEach((r) => r.close());
    try {
      if (existsSync(single)) {
        const r = SafetensorsReader.open(single);
        readers.set(SINGLE_FILE, r);
        for (const [name, e] of r.entries) tensors.set(name, { dtype: e.dtype, shape: e.shape, file: SINGLE_FILE });
      } else if (existsSync(index)) {
        const weightMap = readIndex(index);
        const shardNames = [...new Set(Object.values(weightMap))].sort();
        for (const shard of shardNames) {
          const file = path.join(dir, shard);
          if (!existsSync(file)) checkpointError(`${INDEX_FILE} maps tensors to ${shard}, which is not in ${dir}`);
          readers.set(shard, SafetensorsReader.open(file));
        }
        for (const [name, shard] of Object.entries(weightMap)) {
          const e = readers.get(shard)!.entries.get(name);
          if (!e) checkpointError(`${INDEX_FILE} maps tensor "${name}" to ${shard}, which does not hold it`);
          tensors.set(name, { dtype: e.dtype, shape: e.shape, file: shard });
        }
        for (const [shard, r] of readers) {
          for (const name of r.entries.keys()) {
            if (weightMap[name] !== shard) {
              checkpointError(`shard ${shard} holds tensor "${name}" that ${INDEX_FILE} ${weightMap[name] ? `maps to ${weightMap[name]}` : 'does not list'}`);
            }
          }
        }
      } else {
        const bin = ['pytorch_model.bin', 'pytorch_model.bin.index.json'].find((f) => existsSync(path.join(dir, f)));
        throw new ValidationError(
          `${dir} has neither ${SINGLE_FILE} nor ${INDEX_FILE}${bin ? ` (it has ${bin}: only safetensors checkpoints are read; convert it with transformers' save_pretrained(safe_serialization=True))` : ''}`,
          { code: 'VALIDATION_HF_CHECKPOINT' },
        );
      }
    } catch (err) {
      closeAll();
      throw err;
    }
    return new HfCheckpoint(dir, readers, tensors);
  }

  private readerFor(name: string): SafetensorsReader {
    const info = this.tensors.get(name);
    if (!info) checkpointError(`checkpoint ${this.dir} has no tensor "${name}"`);
    return this.readers.get(info.file)!;
  }

  read(name: string): WeightTensor {
    return this.readerFor(name).read(name);
  }

  readRaw(name: string): SafetensorsTensor {
    return this.readerFor(name).readRaw(name);
  }

  /** `count` elements of a tensor from element `start` on, as stored. */
  readRawRange(name: string, start: number, count: number): SafetensorsTensor {
    return this.readerFor(name).readRawRange(name, start, count);
  }

  /** Stored dtypes and how many tensors use each, e.g. { BF16: 272, F32: 2 }. */
  dtypeCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const t of this.tensors.values()) counts[t.dtype] = (counts[t.dtype] ?? 0) + 1;
    return counts;
  }

  close(): void {
    this.readers.forEach((r) => r.close());
  }
}

function readIndex(file: string): Record<string, string> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    checkpointError(`${file} is not readable JSON (${(err as Error).message})`);
  }
  const parsed = IndexSchema.safeParse(value);
  if (!parsed.success) checkpointError(`${file} is not a safetensors index: ${formatIssues(parsed.error.issues)}`);
  if (Object.keys(parsed.data.weight_map).length === 0) checkpointError(`${file} has an empty weight_map`);
  return parsed.data.weight_map;
}
