// Block-wise weight quantization to 4 or 8 bits in onnxruntime's MatMulNBits layout (com.microsoft):
// each output column n is cut along K into blocks of `blockSize`, each block gets a scale (and a zero point).
import { ValidationError } from '../../common/errors.ts';

/** Bit widths the ONNX rewrite emits (MatMulNBits accepts 2..8; FleetLM ships 4 and 8). */
export const SUPPORTED_BITS = [4, 8] as const;
export type QuantBits = (typeof SUPPORTED_BITS)[number];

/** How a matrix is quantized. */
export interface BlockQuantConfig {
  bits: QuantBits;
  /** Elements of K per block: a power of two >= 16 (MatMulNBits' rule). */
  blockSize: number;
  /** Symmetric: zero point fixed at 2^(bits-1) and not stored; asymmetric: a zero point per block. */
  symmetric: boolean;
}

/**
 * A [K, N] weight quantized block-wise along K, laid out as MatMulNBits reads it:
 * data [N, kBlocks, blobSize] uint8 (the transposed weight, low nibble first for 4 bits),
 * scales [N * kBlocks] float32, zeroPoints [N, ceil(kBlocks * bits / 8)] uint8 packed like data (asymmetric only).
 */
export interface QuantizedMatrix {
  bits: QuantBits;
  blockSize: number;
  symmetric: boolean;
  k: number;
  n: number;
  kBlocks: number;
  /** Bytes per block: blockSize * bits / 8. */
  blobSize: number;
  data: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array | null;
}

/** Throws a ValidationError unless `config` is one MatMulNBits can run. */
export function validateQuantConfig(config: BlockQuantConfig): void {
  if (!(SUPPORTED_BITS as readonly number[]).includes(config.bits)) {
    throw new ValidationError(`quantization bits must be 4 or 8; got ${String(config.bits)}`, { code: 'VALIDATION_QUANT_BITS' });
  }
  const b = config.blockSize;
  if (!Number.isInteger(b) || b < 16 || (b & (b - 1)) !== 0) {
    throw new ValidationError(`quantization block size must be a power of two >= 16 (MatMulNBits), e.g. 32, 64 or 128; got ${String(b)}`, {
      code: 'VALIDATION_QUANT_BLOCK',
    });
  }
}

/** Bytes of packed zero points per column: ceil(kBlocks * bits / 8). */
export function zeroPointBytesPerColumn(kBlocks: number, bits: QuantBits): number {
  return Math.ceil((kBlocks * bits) / 8);
}

/** Where element (k, n) of the weight lives: w[k * kStride + n * nStride]. */
export interface MatrixView {
  data: Float32Array;
  k: number;
  n: number;
  kStride: number;
  nStride: number;
}

/** View of a row-major [K, N] matrix (a MatMul's B). */
export function viewKN(data: Float32Array, k: number, n: number): MatrixView {
  return { data, k, n, kStride: n, nStride: 1 };
}

/** View of a row-major [N, K] matrix (a Gemm's B with transB = 1, e.g. a tied head reading the embedding). */
export function viewNK(data: Float32Array, n: number, k: number): MatrixView {
  return { data, k, n, kStride: 1, nStride: k };
}

/**
 * Quantizes a weight block by block. Asymmetric blocks span [min(x, 0), max(x, 0)] over 2^bits - 1
 * steps so that zero stays exact (as MLAS's block quantizer does); symmetric blocks use
 * scale = max|x| / (2^(bits-1) - 1) around the fixed zero point 2^(bits-1). The tail block of a K
 * that is not a multiple of blockSize is padded with zeros. Every element is within scale/2 of its
 * dequantized value.
 */
export function quantizeBlockwise(w: MatrixView, config: BlockQuantConfig): QuantizedMatrix {
  validateQuantConfig(config);
  const { bits, blockSize, symmetric } = config;
  const { data, k: K, n: N, kStride, nStride } = w;
  if (!Number.isInteger(K) || !Number.isInteger(N) || K < 1 || N < 1) throw new RangeError(`weight dims must be positive integers; got K=${K}, N=${N}`);
  if (data.length < (K - 1) * kStride + (N - 1) * nStride + 1) throw new RangeError(`weight holds ${data.length} values; K=${K} x N=${N} need more`);
  const kBlocks = Math.ceil(K / blockSize);
  const blobSize = (blockSize * bits) / 8;
  const levels = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const qmaxSym = mid - 1;
  const out = new Uint8Array(N * kBlocks * blobSize);
  const scales = new Float32Array(N * kBlocks);
  const zpCol = zeroPointBytesPerColumn(kBlocks, bits);
  const zeroPoints = symmetric ? null : new Uint8Array(N * zpCol);
  for (let n = 0; n < N; n++) {
    const colBase = n * nStride;
    for (let b = 0; b < kBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      for (let k = k0; k < k1; k++) {
        const x = data[colBase + k * kStride]!;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      let scale: number;
      let zp: number;
      if (symmetric) {
        const amax = Math.max(-lo, hi);
        scale = amax > 0 ? amax / qmaxSym : 1;
        zp = mid;
      } else {
        scale = hi > lo ? (hi - lo) / levels : 1;
        zp = Math.min(levels, Math.max(0, Math.round(-lo / scale)));
      }
      // Store the float32 scale and quantize with exactly that value, so dequantization matches.
      const s32 = Math.fround(scale);
      const inv = 1 / s32;
      scales[n * kBlocks + b] = s32;
      if (zeroPoints) {
        if (bits === 8) zeroPoints[n * zpCol + b] = zp;
        else zeroPoints[n * zpCol + (b >> 1)]! |= (b & 1) === 0 ? zp : zp << 4;
      }
      const blob = (n * kBlocks + b) * blobSize;
      for (let j = 0; j < blockSize; j++) {
        const k = k0 + j;
        let q = zp;
        if (k < k1) {
          q = Math.round(data[colBase + k * kStride]! * inv) + zp;
          if (q < 0) q = 0;
          else if (q > levels) q = levels;
        }
        if (bits === 8) out[blob + j] = q;
        else out[blob + (j >> 1)]! |= (j & 1) === 0 ? q : q << 4;
      }
    }
  }
  return { bits, blockSize, symmetric, k: K, n: N, kBlocks, blobSize, data: out, scales, zeroPoints };
}

/** Zero point of block b of column n. */
export function zeroPointOf(q: QuantizedMatrix, n: number, b: number): number {
  if (!q.zeroPoints) return 1 << (q.bits - 1);
  const zpCol = zeroPointBytesPerColumn(q.kBlocks, q.bits);
  if (q.bits === 8) return q.zeroPoints[n * zpCol + b]!;
  const byte = q.zeroPoints[n * zpCol + (b >> 1)]!;
  return (b & 1) === 0 ? byte & 0x0f : byte >> 4;
}

/** The float [K, N] row-major matrix the quantized weight stands for: (q - zero point) * scale. */
export function dequantizeBlockwise(q: QuantizedMatrix, out = new Float32Array(q.k * q.n)): Float32Array {
  const { k: K, n: N, kBlocks, blobSize, blockSize, bits } = q;
  if (out.length !== K * N) throw new RangeError(`output holds ${out.length} values; K=${K} x N=${N} = ${K * N} needed`);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const scale = q.scales[n * kBlocks + b]!;
      const zp = zeroPointOf(q, n, b);
      const blob = (n * kBlocks + b) * blobSize;
      const k1 = Math.min(K, (b + 1) * blockSize);
      for (let k = b * blockSize, j = 0; k < k1; k++, j++) {
        const v = bits === 8 ? q.data[blob + j]! : (q.data[blob + (j >> 1)]! >> ((j & 1) * 4)) & 0x0f;
        out[k * N + n] = (v - zp) * scale;
      }
    }
  }
  return out;
}

/** Bytes the quantized weight occupies (data + scales + zero points). */
export function quantizedBytes(q: QuantizedMatrix): number {
  return q.data.byteLength + q.scales.byteLength + (q.zeroPoints?.byteLength ?? 0);
}
