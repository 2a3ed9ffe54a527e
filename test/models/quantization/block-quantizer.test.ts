// Block quantizer against a plain reference written from the MatMulNBits spec (docs/ContribOperators.md,
// microsoft/onnxruntime): packed bytes, scales and zero points agree, and round trips stay within scale/2.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../common/errors.ts';
import { mulberry32 } from '../../../models/random.ts';
import {
  dequantizeBlockwise,
  quantizeBlockwise,
  validateQuantConfig,
  viewKN,
  viewNK,
  zeroPointOf,
  type QuantBits,
} from '../../../models/quantization/block-quantizer.ts';

/** Reference: per column n, per block, an unpacked list of integer codes; then packs them as the spec says. */
function reference(w: number[][], bits: number, block: number, symmetric: boolean) {
  const K = w.length;
  const N = w[0]!.length;
  const kBlocks = Math.ceil(K / block);
  const levels = 2 ** bits - 1;
  const codes: number[][][] = [];
  const scales: number[] = [];
  const zps: number[][] = [];
  for (let n = 0; n < N; n++) {
    codes.push([]);
    zps.push([]);
    for (let b = 0; b < kBlocks; b++) {
      const xs: number[] = [];
      for (let k = b * block; k < Math.min(K, (b + 1) * block); k++) xs.push(w[k]![n]!);
      let scale: number;
      let zp: number;
      if (symmetric) {
        const amax = Math.max(...xs.map(Math.abs));
        scale = amax > 0 ? amax / (2 ** (bits - 1) - 1) : 1;
        zp = 2 ** (bits - 1);
      } else {
        const lo = Math.min(0, ...xs);
        const hi = Math.max(0, ...xs);
        scale = hi > lo ? (hi - lo) / levels : 1;
        zp = Math.min(levels, Math.max(0, Math.round(-lo / scale)));
      }
      scale = Math.fround(scale);
      const c = xs.map((x) => Math.min(levels, Math.max(0, Math.round(x * (1 / scale)) + zp)));
      while (c.length < block) c.push(zp);
      codes[n]!.push(c);
      scales.push(scale);
      zps[n]!.push(zp);
    }
  }
  // Pack: 8 bits one code per byte; 4 bits two codes per byte, the first in the low nibble.
  const pack = (vals: number[]): number[] => {
    if (bits === 8) return vals;
    const out: number[] = [];
    for (let i = 0; i < vals.length; i += 2) out.push((vals[i] ?? 0) | ((vals[i + 1] ?? 0) << 4));
    return out;
  };
  const data = codes.flatMap((col) => col.flatMap((c) => pack(c)));
  const zeroPoints = zps.flatMap((z) => pack(z));
  return { data, scales, zeroPoints, kBlocks };
}

function randomMatrix(K: number, N: number, seed: number): { flat: Float32Array; rows: number[][] } {
  const rand = mulberry32(seed);
  const flat = new Float32Array(K * N);
  // Mixed magnitudes and a few outliers, as trained weights have; some columns all positive.
  for (let i = 0; i < flat.length; i++) flat[i] = (rand() - (i % N === 3 ? 0 : 0.5)) * (i % 17 === 0 ? 3 : 0.2);
  const rows = Array.from({ length: K }, (_, k) => Array.from(flat.subarray(k * N, (k + 1) * N)));
  return { flat, rows };
}

const CASES: Array<[QuantBits, number, boolean, number, number]> = [
  [4, 32, false, 64, 8],
  [4, 32, true, 96, 5],
  [4, 16, false, 40, 6], // K not a multiple of the block: the tail block is padded
  [4, 128, true, 128, 4],
  [8, 32, false, 64, 8],
  [8, 64, true, 100, 3],
  [4, 64, false, 64, 9], // odd k_blocks... with 1 block per column the zero point fills half a byte
  [4, 16, false, 80, 7], // 5 blocks: packed zero points of odd length
];

describe('quantizeBlockwise', () => {
  for (const [bits, block, symmetric, K, N] of CASES) {
    for (const seed of [1, 2, 3]) {
      it(`int${bits} block ${block} ${symmetric ? 'sym' : 'asym'} K=${K} N=${N} seed ${seed}: equals the reference and round-trips within scale/2`, () => {
        const { flat, rows } = randomMatrix(K, N, seed);
        const q = quantizeBlockwise(viewKN(flat, K, N), { bits, blockSize: block, symmetric });
        const ref = reference(rows, bits, block, symmetric);
        expect(q.kBlocks).toBe(ref.kBlocks);
        expect(q.data.length).toBe(N * ref.kBlocks * ((block * bits) / 8));
        expect(Array.from(q.data)).toEqual(ref.data);
        expect(Array.from(q.scales)).toEqual(ref.scales);
        if (symmetric) expect(q.zeroPoints).toBeNull();
        else expect(Array.from(q.zeroPoints!)).toEqual(ref.zeroPoints);
        const back = dequantizeBlockwise(q);
        for (let k = 0; k < K; k++) {
          for (let n = 0; n < N; n++) {
            const scale = q.scales[n * q.kBlocks + Math.floor(k / block)]!;
            // Rounding to the nearest code is at most half a step off; 1e-6 relative slack for float32.
            expect(Math.abs(back[k * N + n]! - rows[k]![n]!)).toBeLessThanOrEqual(scale * 0.5 * (1 + 1e-6) + 1e-7);
          }
        }
      });
    }
  }

  it('keeps zero exact in every block, asymmetric or not', () => {
    const K = 64;
    const N = 4;
    const { flat } = randomMatrix(K, N, 9);
    for (let k = 0; k < K; k += 5) flat[k * N + 1] = 0;
    for (const symmetric of [true, false]) {
      const back = dequantizeBlockwise(quantizeBlockwise(viewKN(flat, K, N), { bits: 4, blockSize: 32, symmetric }));
      for (let k = 0; k < K; k += 5) expect(back[k * N + 1]).toBe(0);
    }
  });

  it('reads an [N, K] matrix (Gemm transB) the same as its transpose in [K, N]', () => {
    const K = 64;
    const N = 6;
    const { flat } = randomMatrix(K, N, 4);
    const nk = new Float32Array(K * N);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) nk[n * K + k] = flat[k * N + n]!;
    const a = quantizeBlockwise(viewKN(flat, K, N), { bits: 4, blockSize: 32, symmetric: false });
    const b = quantizeBlockwise(viewNK(nk, N, K), { bits: 4, blockSize: 32, symmetric: false });
    expect(b.data).toEqual(a.data);
    expect(b.scales).toEqual(a.scales);
    expect(b.zeroPoints).toEqual(a.zeroPoints);
  });

  it('an all-zero block dequantizes to zeros', () => {
    const q = quantizeBlockwise(viewKN(new Float32Array(32 * 2), 32, 2), { bits: 4, blockSize: 32, symmetric: false });
    expect(Array.from(dequantizeBlockwise(q)).every((x) => x === 0)).toBe(true);
    expect(zeroPointOf(q, 0, 0)).toBe(0);
  });

  it('int8 error is far below int4 error on the same weights', () => {
    const { flat } = randomMatrix(128, 16, 5);
    const err = (bits: QuantBits) => {
      const back = dequantizeBlockwise(quantizeBlockwise(viewKN(flat, 128, 16), { bits, blockSize: 32, symmetric: false }));
      let e = 0;
      for (let i = 0; i < flat.length; i++) e += (back[i]! - flat[i]!) ** 2;
      return Math.sqrt(e);
    };
    expect(err(8)).toBeLessThan(err(4) / 10);
  });
});

describe('validateQuantConfig', () => {
  it.each([
    [{ bits: 3, blockSize: 32 }, /bits must be 4 or 8; got 3/],
    [{ bits: 16, blockSize: 32 }, /bits must be 4 or 8; got 16/],
    [{ bits: 4, blockSize: 48 }, /power of two >= 16.*got 48/],
    [{ bits: 4, blockSize: 8 }, /power of two >= 16.*got 8/],
    [{ bits: 8, blockSize: 0 }, /power of two >= 16.*got 0/],
  ])('refuses %j', (c, message) => {
    expect(() => validateQuantConfig({ symmetric: false, ...(c as { bits: QuantBits; blockSize: number }) })).toThrow(ValidationError);
    expect(() => validateQuantConfig({ symmetric: false, ...(c as { bits: QuantBits; blockSize: number }) })).toThrow(message);
  });
});
