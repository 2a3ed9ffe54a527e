// How a model's weights are stored when it ships (fp32, fp16, or int8/int4 with block-wise scales) and
// the exact bytes each tensor takes in that form; accounting, search and the quantize step share it.
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';

/** Storage types of the shipped weights. */
export const STORAGE_TYPES = ['fp32', 'fp16', 'int8', 'int4'] as const;
export type StorageType = (typeof STORAGE_TYPES)[number];

/** Block sizes of the int8/int4 layouts (onnxruntime MatMulNBits accepts powers of two >= 16; these are the ones used). */
export const BLOCK_SIZES = [32, 64, 128] as const;
export type BlockSize = (typeof BLOCK_SIZES)[number];

/**
 * How the weights ship.
 *
 * - `fp32` / `fp16`: every tensor at 4 / 2 bytes per value.
 * - `int8` / `int4`: every linear weight matrix (attention Q/K/V/output, FFN up/gate/down, the
 *   projections between blocks and project_in/out, an untied LM head) in onnxruntime's
 *   `com.microsoft.MatMulNBits` layout (bits 8 or 4): for a weight of K inputs and N outputs,
 *   quantised along K in blocks of `blockSize`, k_blocks = ceil(K / blockSize) and
 *     B            uint8 [N, k_blocks, blockSize * bits / 8]   (padding of the last block is stored)
 *     scales       float32 [N * k_blocks]                     (same dtype as the float32 activations)
 *     zero_points  uint8 [N * ceil(k_blocks * bits / 8)]       (only when `asymmetric`; packed per column)
 *   Norm weights, biases and the learned position table stay float32. The token embedding stays
 *   float32 unless `quantizeEmbedding` (then it takes the same block layout along its width, rows =
 *   vocabulary, as GatherBlockQuantized stores it); a tied head is the embedding and follows it.
 */
export const WeightStorageSchema = z
  .object({
    type: z.enum(STORAGE_TYPES),
    /** Block size along the input dimension (int8/int4 only; default 32). */
    blockSize: z.union([z.literal(32), z.literal(64), z.literal(128)]).default(32),
    /** Store a zero point per block (asymmetric quantisation); default false (symmetric). */
    asymmetric: z.boolean().default(false),
    /** Quantise the token embedding (and with it a tied head) too; default false. */
    quantizeEmbedding: z.boolean().default(false),
  })
  .strict();

export type WeightStorage = z.output<typeof WeightStorageSchema>;
export type WeightStorageInput = z.input<typeof WeightStorageSchema>;

/** Validates a storage description from outside (a flag, a config file). */
export function parseWeightStorage(value: unknown): WeightStorage {
  return parseWith(WeightStorageSchema, value, 'weight storage');
}

/** The storage that ships weights at `bits` (32, 16, 8, 4) per value; 8 and 4 are block-quantised. */
export function weightStorageOfBits(bits: 32 | 16 | 8 | 4, options: Omit<WeightStorageInput, 'type'> = {}): WeightStorage {
  const type: StorageType = bits === 32 ? 'fp32' : bits === 16 ? 'fp16' : bits === 8 ? 'int8' : 'int4';
  return parseWeightStorage({ ...options, type });
}

/** Bits per quantised value, or null for a float storage. */
export function quantizedBitsOf(storage: WeightStorage): 8 | 4 | null {
  return storage.type === 'int8' ? 8 : storage.type === 'int4' ? 4 : null;
}

/** Bytes of one value of a tensor that stays float (norms, biases, positions; scales too). */
export function floatBytesOf(storage: WeightStorage): number {
  return storage.type === 'fp16' ? 2 : 4;
}

/**
 * Bytes of a K x N linear weight in the given storage (the MatMulNBits layout above for int8/int4).
 * Biases are not included: count them with floatBytesOf.
 */
export function linearWeightBytes(inFeatures: number, outFeatures: number, storage: WeightStorage): number {
  const bits = quantizedBitsOf(storage);
  if (bits === null) return inFeatures * outFeatures * floatBytesOf(storage);
  const bs = storage.blockSize;
  const kBlocks = Math.ceil(inFeatures / bs);
  const data = outFeatures * kBlocks * ((bs * bits) / 8);
  const scales = outFeatures * kBlocks * 4;
  const zeroPoints = storage.asymmetric ? outFeatures * Math.ceil((kBlocks * bits) / 8) : 0;
  return data + scales + zeroPoints;
}

/**
 * Counts bytes tensor by tensor. Built from a WeightStorage, or from a plain bytes-per-value number
 * (the search's old `bytesPerWeight`: every tensor at that width, nothing quantised).
 */
export interface WeightByteModel {
  /** A K x N linear weight (no bias). */
  linear(inFeatures: number, outFeatures: number): number;
  /** `count` values of a tensor kept float (norm weights, biases, position rows). */
  float(count: number): number;
  /** The token embedding table, vocab x width. */
  embedding(vocabSize: number, width: number): number;
}

/** A byte model for a storage, or for a uniform `bytesPerValue`. */
export function weightByteModel(storage: WeightStorage | number): WeightByteModel {
  if (typeof storage === 'number') {
    const b = storage;
    return { linear: (k, n) => k * n * b, float: (c) => c * b, embedding: (v, e) => v * e * b };
  }
  const fb = floatBytesOf(storage);
  return {
    linear: (k, n) => linearWeightBytes(k, n, storage),
    float: (c) => c * fb,
    // Rows are tokens, quantised along the width (the gather reads one row per token).
    embedding: (v, e) => (storage.quantizeEmbedding ? linearWeightBytes(e, v, storage) : v * e * fb),
  };
}

/** Short human label: "fp32", "int4 (block 32, symmetric)". */
export function describeWeightStorage(storage: WeightStorage): string {
  if (quantizedBitsOf(storage) === null) return storage.type;
  const parts = [`block ${storage.blockSize}`, storage.asymmetric ? 'asymmetric' : 'symmetric'];
  if (storage.quantizeEmbedding) parts.push('embedding quantised');
  return `${storage.type} (${parts.join(', ')})`;
}
