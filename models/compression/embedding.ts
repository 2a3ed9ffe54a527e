// The compressed embedding forms (per-row TT, TT-matrix, truncated SVD) and what every method shares:
// stored size, row reconstruction and a JSON-safe summary.

/** Per-row TT (TensorSLM / TensorGPT): core k is [V, r_{k-1}, I_k, r_k]; rows padded to prod(shape). */
export interface TtRowEmbedding {
  method: 'tt-row';
  vocab: number;
  dim: number;
  paddedDim: number;
  shape: number[];
  ranks: number[];
  cores: Float32Array[];
}

/**
 * TT-matrix (Hrinchuk et al. 2020, "Tensorized Embedding Layers"): token v = (v_1..v_N) in mixed radix
 * over vocabShape (vocab padded to its product), width j = (j_1..j_N) over dimShape; core k is stored as
 * [v_k, r_{k-1}, d_k, r_k] so a Gather by digit v_k yields the same layout as a per-row TT core.
 */
export interface TtMatrixEmbedding {
  method: 'tt-matrix';
  vocab: number;
  dim: number;
  paddedVocab: number;
  vocabShape: number[];
  dimShape: number[];
  ranks: number[];
  cores: Float32Array[];
}

/** Truncated SVD of the whole table: E ~ left [V, k] x right [k, d]. */
export interface SvdEmbedding {
  method: 'svd';
  vocab: number;
  dim: number;
  rank: number;
  left: Float32Array;
  right: Float32Array;
}

export type CompressedEmbedding = TtRowEmbedding | TtMatrixEmbedding | SvdEmbedding;
export type CompressionMethod = CompressedEmbedding['method'];
export const COMPRESSION_METHODS: readonly CompressionMethod[] = ['tt-row', 'tt-matrix', 'svd'];

/** Number of stored floats (what the ratio is computed from). */
export function storedElements(e: CompressedEmbedding): number {
  if (e.method === 'svd') return e.left.length + e.right.length;
  return e.cores.reduce((s, c) => s + c.length, 0);
}

/** V*d / stored elements. */
export function compressionRatio(e: CompressedEmbedding): number {
  return (e.vocab * e.dim) / storedElements(e);
}

/** Mixed-radix digits of `v` over `radices` (first digit most significant). */
export function tokenDigits(v: number, radices: readonly number[], out: Int32Array): void {
  let rest = v;
  for (let k = radices.length - 1; k >= 0; k--) {
    out[k] = rest % radices[k]!;
    rest = Math.floor(rest / radices[k]!);
  }
}

/**
 * Contracts one token's core slices (slice k = [r_{k-1}, I_k, r_k] at `offsets[k]` in `cores[k]`) into
 * `out[outOffset .. outOffset+dim)`, dropping padding past `dim`. `a`/`b` are scratch of prod(shape).
 */
function contractRow(
  cores: Float32Array[],
  offsets: Int32Array,
  shape: readonly number[],
  ranks: readonly number[],
  dim: number,
  out: Float32Array,
  outOffset: number,
  a: Float64Array,
  b: Float64Array,
): void {
  let acc = a;
  let tmp = b;
  let rows = shape[0]!;
  const c0 = cores[0]!;
  const o0 = offsets[0]!;
  for (let i = 0; i < rows * ranks[1]!; i++) acc[i] = c0[o0 + i]!;
  for (let k = 1; k < shape.length; k++) {
    const rk = ranks[k]!;
    const cols = shape[k]! * ranks[k + 1]!;
    const core = cores[k]!;
    const ok = offsets[k]!;
    tmp.fill(0, 0, rows * cols);
    for (let i = 0; i < rows; i++)
      for (let r = 0; r < rk; r++) {
        const v = acc[i * rk + r]!;
        if (v === 0) continue;
        const oc = ok + r * cols;
        const ot = i * cols;
        for (let c = 0; c < cols; c++) tmp[ot + c] = tmp[ot + c]! + v * core[oc + c]!;
      }
    const t = acc;
    acc = tmp;
    tmp = t;
    rows *= shape[k]!;
  }
  for (let j = 0; j < dim; j++) out[outOffset + j] = acc[j]!;
}

/** Reconstructs rows [start, end) of the embedding as a dense [end-start, dim] Float32Array. */
export function reconstructRows(e: CompressedEmbedding, start = 0, end = e.vocab): Float32Array {
  const n = end - start;
  const out = new Float32Array(n * e.dim);
  if (e.method === 'svd') {
    const k = e.rank;
    const acc = new Float64Array(e.dim);
    for (let i = 0; i < n; i++) {
      acc.fill(0);
      const ol = (start + i) * k;
      for (let p = 0; p < k; p++) {
        const x = e.left[ol + p]!;
        const orr = p * e.dim;
        for (let j = 0; j < e.dim; j++) acc[j] = acc[j]! + x * e.right[orr + j]!;
      }
      out.set(acc, i * e.dim);
    }
    return out;
  }
  if (e.method === 'tt-matrix') return reconstructTtMatrixRows(e, start, end, out);
  const shape = e.shape;
  const width = e.paddedDim;
  const a = new Float64Array(width);
  const b = new Float64Array(width);
  const N = shape.length;
  const sizes = shape.map((len, k) => e.ranks[k]! * len * e.ranks[k + 1]!);
  const offsets = new Int32Array(N);
  for (let i = 0; i < n; i++) {
    const v = start + i;
    for (let k = 0; k < N; k++) offsets[k] = v * sizes[k]!;
    contractRow(e.cores, offsets, shape, e.ranks, e.dim, out, i * e.dim, a, b);
  }
  return out;
}

/**
 * TT-matrix rows: consecutive tokens share leading digits, so the partial contraction of cores 0..k is
 * kept per level and redone only when digit k (or an earlier one) changes. Without this every token
 * would redo the r^2-sized middle products, ~10^5-10^6 multiply-adds each.
 */
function reconstructTtMatrixRows(e: TtMatrixEmbedding, start: number, end: number, out: Float32Array): Float32Array {
  const ds = e.dimShape;
  const N = ds.length;
  const ranks = e.ranks;
  const levels: Float64Array[] = [];
  let lead = 1;
  for (let k = 0; k < N; k++) {
    lead *= ds[k]!;
    levels.push(new Float64Array(lead * ranks[k + 1]!));
  }
  const sizes = ds.map((len, k) => ranks[k]! * len * ranks[k + 1]!);
  const digits = new Int32Array(N);
  const held = new Int32Array(N).fill(-1);
  for (let v = start; v < end; v++) {
    tokenDigits(v, e.vocabShape, digits);
    let k0 = 0;
    while (k0 < N && held[k0] === digits[k0]) k0++;
    for (let k = k0; k < N; k++) {
      const core = e.cores[k]!;
      const oc = digits[k]! * sizes[k]!;
      const dst = levels[k]!;
      if (k === 0) {
        for (let i = 0; i < sizes[0]!; i++) dst[i] = core[oc + i]!;
      } else {
        const src = levels[k - 1]!;
        const rows = src.length / ranks[k]!;
        const rk = ranks[k]!;
        const cols = ds[k]! * ranks[k + 1]!;
        dst.fill(0);
        for (let i = 0; i < rows; i++)
          for (let r = 0; r < rk; r++) {
            const x = src[i * rk + r]!;
            if (x === 0) continue;
            const o = oc + r * cols;
            const od = i * cols;
            for (let c = 0; c < cols; c++) dst[od + c] = dst[od + c]! + x * core[o + c]!;
          }
      }
      held[k] = digits[k]!;
    }
    const last = levels[N - 1]!;
    const o = (v - start) * e.dim;
    for (let j = 0; j < e.dim; j++) out[o + j] = last[j]!;
  }
  return out;
}

/** Settings of a compressed embedding without its arrays (for reports and logs). */
export function describeEmbedding(e: CompressedEmbedding): Record<string, unknown> {
  if (e.method === 'svd') return { method: e.method, vocab: e.vocab, dim: e.dim, rank: e.rank };
  if (e.method === 'tt-row') {
    return { method: e.method, vocab: e.vocab, dim: e.dim, paddedDim: e.paddedDim, shape: e.shape, ranks: e.ranks };
  }
  return {
    method: e.method,
    vocab: e.vocab,
    dim: e.dim,
    paddedVocab: e.paddedVocab,
    vocabShape: e.vocabShape,
    dimShape: e.dimShape,
    ranks: e.ranks,
  };
}
