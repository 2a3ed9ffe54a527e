// Dense kernels of the trainer on typed arrays: one register-blocked GEMM (C = A · B^T, both
// operands read along contiguous rows) plus transposes and row reductions. No allocation inside.
// Float32 GEMMs with K divisible by 4 go to the WebAssembly SIMD kernel; the rest run here.
import { wasmGemm } from './wasm-gemm.ts';

/** The trainer runs in float32; gradient checks run the same code in float64. */
export type FloatArray = Float32Array | Float64Array;

/** Allocates a zeroed array of the same kind as `like`. */
export function allocLike(like: FloatArray, n: number): FloatArray {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/** Columns of B handled per pass, so a panel of B (JB x K) stays in L2 while A streams past. */
const JB = 64;

/**
 * C[M,N] = A[M,K] · B[N,K]^T (or C += ... with `accumulate`). 4x4 register blocks with the k
 * loop innermost: 16 multiply-adds per 8 loads, both operands walked contiguously.
 */
export function gemmNT(A: FloatArray, B: FloatArray, C: FloatArray, M: number, N: number, K: number, accumulate = false): void {
  if (K % 4 === 0 && M * N * K >= 4096 && A instanceof Float32Array && B instanceof Float32Array && C instanceof Float32Array) {
    const wasm = wasmGemm();
    if (wasm) {
      const [M2, N4] = wasm.run(A, B, C, M, N, K, accumulate);
      if (M2 > 0) {
        for (let i = 0; i < M2; i++) for (let j = N4; j < N; j++) dotInto(A, i * K, B, j * K, K, C, i * N + j, accumulate);
        for (let i = M2; i < M; i++) for (let j = 0; j < N; j++) dotInto(A, i * K, B, j * K, K, C, i * N + j, accumulate);
        return;
      }
    }
  }
  gemmNTScalar(A, B, C, M, N, K, accumulate);
}

/** The portable kernel (float64 gradient checks, odd K, no WebAssembly SIMD). */
export function gemmNTScalar(A: FloatArray, B: FloatArray, C: FloatArray, M: number, N: number, K: number, accumulate = false): void {
  for (let jj = 0; jj < N; jj += JB) {
    const jEnd = Math.min(N, jj + JB);
    let i = 0;
    for (; i + 4 <= M; i += 4) {
      const a0 = i * K;
      const a1 = a0 + K;
      const a2 = a1 + K;
      const a3 = a2 + K;
      let j = jj;
      for (; j + 4 <= jEnd; j += 4) {
        const b0 = j * K;
        const b1 = b0 + K;
        const b2 = b1 + K;
        const b3 = b2 + K;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
        let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
        let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (let k = 0; k < K; k++) {
          const y0 = B[b0 + k]!;
          const y1 = B[b1 + k]!;
          const y2 = B[b2 + k]!;
          const y3 = B[b3 + k]!;
          const x0 = A[a0 + k]!;
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          const x1 = A[a1 + k]!;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          const x2 = A[a2 + k]!;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          const x3 = A[a3 + k]!;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        const r0 = i * N + j;
        const r1 = r0 + N;
        const r2 = r1 + N;
        const r3 = r2 + N;
        if (accumulate) {
          C[r0]! += c00; C[r0 + 1]! += c01; C[r0 + 2]! += c02; C[r0 + 3]! += c03;
          C[r1]! += c10; C[r1 + 1]! += c11; C[r1 + 2]! += c12; C[r1 + 3]! += c13;
          C[r2]! += c20; C[r2 + 1]! += c21; C[r2 + 2]! += c22; C[r2 + 3]! += c23;
          C[r3]! += c30; C[r3 + 1]! += c31; C[r3 + 2]! += c32; C[r3 + 3]! += c33;
        } else {
          C[r0] = c00; C[r0 + 1] = c01; C[r0 + 2] = c02; C[r0 + 3] = c03;
          C[r1] = c10; C[r1 + 1] = c11; C[r1 + 2] = c12; C[r1 + 3] = c13;
          C[r2] = c20; C[r2 + 1] = c21; C[r2 + 2] = c22; C[r2 + 3] = c23;
          C[r3] = c30; C[r3 + 1] = c31; C[r3 + 2] = c32; C[r3 + 3] = c33;
        }
      }
      for (; j < jEnd; j++) {
        for (let r = 0; r < 4; r++) dotInto(A, (i + r) * K, B, j * K, K, C, (i + r) * N + j, accumulate);
      }
    }
    for (; i < M; i++) {
      for (let j = jj; j < jEnd; j++) dotInto(A, i * K, B, j * K, K, C, i * N + j, accumulate);
    }
  }
}

function dotInto(A: FloatArray, a: number, B: FloatArray, b: number, K: number, C: FloatArray, c: number, accumulate: boolean): void {
  let s = 0;
  for (let k = 0; k < K; k++) s += A[a + k]! * B[b + k]!;
  C[c] = accumulate ? C[c]! + s : s;
}

/** out[cols, rows] = in[rows, cols]^T, in 16x16 tiles for cache reuse. */
export function transpose(src: FloatArray, dst: FloatArray, rows: number, cols: number): void {
  const T = 16;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const rEnd = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const cEnd = Math.min(cols, c0 + T);
      for (let r = r0; r < rEnd; r++) {
        const ro = r * cols;
        for (let c = c0; c < cEnd; c++) dst[c * rows + r] = src[ro + c]!;
      }
    }
  }
}

/** y[r, :] += bias for every row. */
export function addBiasRows(y: FloatArray, bias: FloatArray, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) y[o + c]! += bias[c]!;
  }
}

/** out[c] += sum over rows of x[r, c] (bias gradients). */
export function sumRowsInto(x: FloatArray, out: FloatArray, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) out[c]! += x[o + c]!;
  }
}

/** a += b elementwise over the first n values. */
export function addInto(a: FloatArray, b: FloatArray, n = a.length): void {
  for (let i = 0; i < n; i++) a[i]! += b[i]!;
}
