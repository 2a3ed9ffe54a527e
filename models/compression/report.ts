// Quality and size report for a compressed embedding: the ratio actually stored, relative Frobenius
// error, mean and worst row cosine similarity, and the time taken.
import { compressionRatio, describeEmbedding, reconstructRows, storedElements, type CompressedEmbedding } from './embedding.ts';

/** One compressed matrix's figures (JSON-safe). */
export interface CompressionReport {
  method: CompressedEmbedding['method'];
  settings: Record<string, unknown>;
  vocab: number;
  dim: number;
  denseElements: number;
  storedElements: number;
  /** V*d / stored elements (padding counted). */
  ratio: number;
  relativeError: number;
  meanCosine: number;
  worstCosine: number;
  /** Row index with the worst cosine. */
  worstRow: number;
  seconds: number;
}

/** Row-wise comparison of `e` against the dense table, reconstructed in chunks to bound memory. */
export function measureCompression(matrix: Float32Array, e: CompressedEmbedding, seconds: number): CompressionReport {
  const { vocab: V, dim: d } = e;
  let err = 0;
  let norm = 0;
  let cosSum = 0;
  let worst = Infinity;
  let worstRow = -1;
  const chunk = 4096;
  for (let r0 = 0; r0 < V; r0 += chunk) {
    const r1 = Math.min(V, r0 + chunk);
    const y = reconstructRows(e, r0, r1);
    for (let i = 0; i < r1 - r0; i++) {
      let dot = 0;
      let nx = 0;
      let ny = 0;
      const ox = (r0 + i) * d;
      const oy = i * d;
      for (let j = 0; j < d; j++) {
        const a = matrix[ox + j]!;
        const b = y[oy + j]!;
        dot += a * b;
        nx += a * a;
        ny += b * b;
        err += (a - b) * (a - b);
      }
      norm += nx;
      // A zero row reconstructed as zero is perfect; one side zero alone is orthogonal.
      const cos = nx === 0 && ny === 0 ? 1 : nx === 0 || ny === 0 ? 0 : dot / Math.sqrt(nx * ny);
      cosSum += cos;
      if (cos < worst) {
        worst = cos;
        worstRow = r0 + i;
      }
    }
  }
  const stored = storedElements(e);
  return {
    method: e.method,
    settings: describeEmbedding(e),
    vocab: V,
    dim: d,
    denseElements: V * d,
    storedElements: stored,
    ratio: compressionRatio(e),
    relativeError: norm > 0 ? Math.sqrt(err / norm) : 0,
    meanCosine: cosSum / V,
    worstCosine: worst,
    worstRow,
    seconds,
  };
}

/** One human line for a report. */
export function formatReport(r: CompressionReport): string {
  return `${r.method.padEnd(9)} ratio ${r.ratio.toFixed(2)}x  rel.err ${r.relativeError.toFixed(4)}  cos mean ${r.meanCosine.toFixed(4)} worst ${r.worstCosine.toFixed(4)}  ${r.seconds.toFixed(2)} s  ${JSON.stringify(r.settings)}`;
}
