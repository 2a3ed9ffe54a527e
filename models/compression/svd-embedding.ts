// Truncated-SVD baseline for embedding compression: E ~ (E V_k) V_k^T, with V_k the top right singular
// vectors from the eigen-decomposition of the d x d Gram matrix E^T E (Eckart-Young optimal at rank k).
import { ValidationError } from '../../common/errors.ts';
import type { SvdEmbedding } from './embedding.ts';
import { EigenWorkspace, gramCols, mirrorUpper, symmetricEigen } from './linalg.ts';

/** Largest rank k whose storage k(V+d) meets `ratio` = V*d / stored. */
export function svdRankForRatio(V: number, d: number, ratio: number): number {
  if (!(ratio >= 1)) throw new ValidationError(`compression ratio must be a number >= 1, got ${ratio}`, { code: 'VALIDATION_RATIO' });
  const k = Math.floor((V * d) / (ratio * (V + d)));
  if (k < 1) {
    throw new ValidationError(
      `compression ratio ${ratio} is impossible for a rank-k SVD of a ${V} x ${d} table: rank 1 already stores ${V + d} elements, so the largest ratio is ${((V * d) / (V + d)).toFixed(2)}x`,
      { code: 'VALIDATION_RATIO' },
    );
  }
  return Math.min(k, d, V);
}

/** Options for `compressSvd`: exactly one of ratio, rank, eps decides k. */
export interface SvdOptions {
  ratio?: number;
  rank?: number;
  eps?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Truncated SVD of a row-major [V, d] table. */
export function compressSvd(matrix: Float32Array, V: number, d: number, options: SvdOptions): SvdEmbedding {
  if (matrix.length !== V * d) {
    throw new ValidationError(`embedding table has ${matrix.length} values, expected V*d = ${V}*${d} = ${V * d}`);
  }
  const g = new Float64Array(d * d);
  const step = 4096;
  for (let r0 = 0; r0 < V; r0 += step) {
    gramCols(matrix, V, d, g, { rowStart: r0, rowEnd: Math.min(V, r0 + step), accumulate: r0 > 0 });
    options.onProgress?.(Math.min(V, r0 + step), 2 * V);
  }
  mirrorUpper(g, d);
  const ws = new EigenWorkspace(d);
  symmetricEigen(g, d, ws);
  let k: number;
  if (options.ratio !== undefined) k = svdRankForRatio(V, d, options.ratio);
  else if (options.rank !== undefined) k = Math.max(1, Math.min(options.rank, d, V));
  else if (options.eps !== undefined) {
    let total = 0;
    for (let j = 0; j < d; j++) total += Math.max(ws.values[j]!, 0);
    let tail = 0;
    k = d;
    while (k > 1 && tail + Math.max(ws.values[k - 1]!, 0) <= options.eps * options.eps * total) {
      tail += Math.max(ws.values[k - 1]!, 0);
      k--;
    }
  } else throw new ValidationError('svd compression needs one of ratio, rank or eps');
  const right = new Float32Array(k * d);
  for (let j = 0; j < k; j++) for (let q = 0; q < d; q++) right[j * d + q] = ws.vectors[j * d + q]!;
  const left = new Float32Array(V * k);
  // V_k laid out [d, k] so the inner loop below runs over contiguous memory.
  const vk = new Float64Array(d * k);
  for (let j = 0; j < k; j++) for (let q = 0; q < d; q++) vk[q * k + j] = ws.vectors[j * d + q]!;
  const acc = new Float64Array(k);
  for (let i = 0; i < V; i++) {
    acc.fill(0);
    const o = i * d;
    for (let q = 0; q < d; q++) {
      const x = matrix[o + q]!;
      if (x === 0) continue;
      const oq = q * k;
      for (let j = 0; j < k; j++) acc[j] = acc[j]! + x * vk[oq + j]!;
    }
    for (let j = 0; j < k; j++) left[i * k + j] = acc[j]!;
    if ((i & 4095) === 4095) options.onProgress?.(V + i + 1, 2 * V);
  }
  options.onProgress?.(2 * V, 2 * V);
  return { method: 'svd', vocab: V, dim: d, rank: k, left, right };
}
