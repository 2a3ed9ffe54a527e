// TT-matrix embedding of the whole table (Hrinchuk et al., "Tensorized Embedding Layers", EMNLP 2020;
// t3nsor's TTEmbedding): vocabulary and width both factorised, fitted by TT-SVD of the reshaped table.
import { ValidationError } from '../../common/errors.ts';
import type { TtMatrixEmbedding } from './embedding.ts';
import { EigenWorkspace, truncatedSvdStep } from './linalg.ts';
import { balancedShape, candidateWidths, factorizations } from './shape-selection.ts';
import { maxTtRanks } from './tt-svd.ts';

/** Layout of a TT-matrix embedding before fitting. ranks has N+1 entries (r_0 = r_N = 1). */
export interface TtMatrixPlan {
  vocab: number;
  dim: number;
  vocabShape: number[];
  dimShape: number[];
  ranks: number[];
}

/** N factors whose product is the smallest number >= V, as balanced as the search finds (t3nsor's auto shape). */
export function vocabShape(V: number, order: number): number[] {
  const base = Math.max(2, Math.round(V ** (1 / order)));
  let best: number[] | undefined;
  let bestProd = Infinity;
  const cur: number[] = [];
  const rec = (k: number, prod: number): void => {
    if (k === order) {
      if (prod >= V && prod < bestProd) {
        bestProd = prod;
        best = [...cur];
      }
      return;
    }
    for (let f = Math.max(2, base - 6); f <= base + 6; f++) {
      if (prod * f * (base + 6) ** (order - k - 1) < V) continue;
      cur.push(f);
      rec(k + 1, prod * f);
      cur.pop();
    }
  };
  rec(0, 1);
  return (best ?? new Array<number>(order).fill(Math.ceil(V ** (1 / order)))).sort((a, b) => b - a);
}

/** Stored elements of a TT-matrix layout. */
export function ttMatrixStorage(vShape: readonly number[], dShape: readonly number[], ranks: readonly number[]): number {
  let s = 0;
  for (let k = 0; k < vShape.length; k++) s += vShape[k]! * ranks[k]! * dShape[k]! * ranks[k + 1]!;
  return s;
}

/** Options for `planTtMatrix`: ratio picks the largest uniform rank that fits; maxRank caps all bonds. */
export interface TtMatrixPlanOptions {
  ratio?: number;
  maxRank?: number;
  order?: number;
  dimShape?: number[];
}

/** Chooses vocab/width factorisations and bond ranks for a TT-matrix embedding. */
export function planTtMatrix(V: number, d: number, options: TtMatrixPlanOptions): TtMatrixPlan {
  const order = options.order ?? 3;
  const vShape = vocabShape(V, order);
  let dShape = options.dimShape;
  if (!dShape) {
    const width = candidateWidths(d, [order]).find((w) => factorizations(w, order, 2).length > 0) ?? d;
    dShape = balancedShape(width, order).sort((a, b) => a - b);
  }
  const modes = vShape.map((v, k) => v * dShape[k]!);
  const caps = [1, ...maxTtRanks(modes), 1];
  const rankAt = (r: number): number[] => caps.map((c, k) => (k === 0 || k === order ? 1 : Math.min(c, r)));
  if (options.ratio !== undefined) {
    if (!(options.ratio >= 1)) {
      throw new ValidationError(`compression ratio must be a number >= 1, got ${options.ratio}`, { code: 'VALIDATION_RATIO' });
    }
    const budget = (V * d) / options.ratio;
    if (ttMatrixStorage(vShape, dShape, rankAt(1)) > budget) {
      throw new ValidationError(
        `compression ratio ${options.ratio} is impossible for a TT-matrix of a ${V} x ${d} table: rank 1 already stores ${ttMatrixStorage(vShape, dShape, rankAt(1))} elements`,
        { code: 'VALIDATION_RATIO' },
      );
    }
    let r = 1;
    const top = Math.max(...caps);
    while (r < top && ttMatrixStorage(vShape, dShape, rankAt(r + 1)) <= budget) r++;
    return { vocab: V, dim: d, vocabShape: vShape, dimShape: dShape, ranks: rankAt(r) };
  }
  return { vocab: V, dim: d, vocabShape: vShape, dimShape: dShape, ranks: rankAt(options.maxRank ?? Math.max(...caps)) };
}

/**
 * Fits the TT-matrix by TT-SVD of the table reshaped to (v_1 d_1) x ... x (v_N d_N), padding rows past V
 * with zeros. With eps the ranks shrink further where the singular values allow.
 */
export function compressTtMatrix(
  matrix: Float32Array,
  plan: TtMatrixPlan,
  options: { eps?: number; onProgress?: (done: number, total: number) => void } = {},
): TtMatrixEmbedding {
  const { vocab: V, dim: d, vocabShape: vs, dimShape: ds } = plan;
  const N = vs.length;
  if (ds.length !== N) throw new ValidationError(`vocab shape and width shape must have the same length, got ${vs.length} and ${ds.length}`);
  const paddedVocab = vs.reduce((p, x) => p * x, 1);
  const width = ds.reduce((p, x) => p * x, 1);
  if (paddedVocab < V || width < d) {
    throw new ValidationError(
      `TT-matrix shape ${vs.join('x')} by ${ds.join('x')} covers ${paddedVocab} x ${width}, smaller than the table ${V} x ${d}`,
      { code: 'VALIDATION_TT_SHAPE' },
    );
  }
  if (matrix.length !== V * d) throw new ValidationError(`embedding table has ${matrix.length} values, expected ${V * d}`);
  const modes = vs.map((v, k) => v * ds[k]!);
  const strides = new Array<number>(N);
  let st = 1;
  for (let k = N - 1; k >= 0; k--) {
    strides[k] = st;
    st *= modes[k]!;
  }
  // Position of width index j: sum_k j_k * d-stride inside mode k.
  const jOff = new Int32Array(d);
  const digits = new Int32Array(N);
  for (let j = 0; j < d; j++) {
    let rest = j;
    for (let k = N - 1; k >= 0; k--) {
      digits[k] = rest % ds[k]!;
      rest = Math.floor(rest / ds[k]!);
    }
    let o = 0;
    for (let k = 0; k < N; k++) o += digits[k]! * strides[k]!;
    jOff[j] = o;
  }
  let carry: Float64Array = new Float64Array(paddedVocab * width);
  let norm2 = 0;
  for (let v = 0; v < V; v++) {
    let rest = v;
    let o = 0;
    for (let k = N - 1; k >= 0; k--) {
      o += (rest % vs[k]!) * ds[k]! * strides[k]!;
      rest = Math.floor(rest / vs[k]!);
    }
    const src = v * d;
    for (let j = 0; j < d; j++) {
      const x = matrix[src + j]!;
      carry[o + jOff[j]!] = x;
      norm2 += x * x;
    }
  }
  const delta2 = options.eps !== undefined && N > 1 ? (options.eps * options.eps * norm2) / (N - 1) : 0;
  const ws = new EigenWorkspace(64);
  const ranks = [1];
  const raw: Float64Array[] = [];
  let rest = paddedVocab * width;
  for (let k = 0; k < N - 1; k++) {
    const m = ranks[k]! * modes[k]!;
    rest /= modes[k]!;
    const step = truncatedSvdStep(carry, m, rest, plan.ranks[k + 1]!, delta2, ws);
    ranks.push(step.rank);
    raw.push(step.u);
    carry = step.svt;
    options.onProgress?.(k + 1, N);
  }
  raw.push(carry);
  ranks.push(1);
  // Raw core k is [r_{k-1}, v_k, d_k, r_k]; store it as [v_k, r_{k-1}, d_k, r_k] so a Gather on axis 0 works.
  const cores = raw.map((c, k) => {
    const r0 = ranks[k]!;
    const r1 = ranks[k + 1]!;
    const vk = vs[k]!;
    const dk = ds[k]!;
    const out = new Float32Array(vk * r0 * dk * r1);
    for (let a = 0; a < r0; a++)
      for (let v = 0; v < vk; v++)
        for (let j = 0; j < dk; j++)
          for (let b = 0; b < r1; b++) out[((v * r0 + a) * dk + j) * r1 + b] = c[((a * vk + v) * dk + j) * r1 + b]!;
    return out;
  });
  options.onProgress?.(N, N);
  return {
    method: 'tt-matrix',
    vocab: V,
    dim: d,
    paddedVocab,
    vocabShape: [...vs],
    dimShape: [...ds],
    ranks,
    cores,
  };
}
