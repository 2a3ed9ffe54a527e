// Chooses the TT shape (factorisation of the row width, padded when it factors badly) and the bond
// ranks for per-row TT at a target compression ratio, by error on a seeded sample of rows.
import { mulberry32 } from '../random.ts';
import { ValidationError } from '../../common/errors.ts';
import { EigenWorkspace, symmetricEigen } from './linalg.ts';
import { TtSvdWorkspace, assertShape, maxTtRanks, ttSvdInto, ttStorage } from './tt-svd.ts';

/** A per-row TT layout: rows padded with zeros to `paddedDim` = prod(shape), bond ranks r_0..r_N. */
export interface TtRowPlan {
  dim: number;
  paddedDim: number;
  shape: number[];
  ranks: number[];
}

/** Outcome of shape selection, with the evidence for the choice. */
export interface TtRowSelection {
  plan: TtRowPlan;
  /** Relative Frobenius error of the chosen plan on the sample rows. */
  sampleError: number;
  /** Stored elements per row / dim, i.e. 1 / ratio. */
  ratio: number;
  shapesConsidered: number;
  candidatesEvaluated: Array<{ shape: number[]; ranks: number[]; ratio: number; boundError: number; sampleError?: number }>;
  why: string;
}

/** Ordered factorisations of n into exactly `parts` integers in [minFactor, maxFactor]. */
export function factorizations(n: number, parts: number, minFactor = 2, maxFactor = n): number[][] {
  const out: number[][] = [];
  const cur: number[] = [];
  const rec = (rest: number, left: number): void => {
    if (left === 1) {
      if (rest >= minFactor && rest <= maxFactor) out.push([...cur, rest]);
      return;
    }
    for (let f = minFactor; f <= Math.min(maxFactor, rest); f++) {
      if (rest % f !== 0) continue;
      cur.push(f);
      rec(rest / f, left - 1);
      cur.pop();
    }
  };
  if (parts >= 1) rec(n, parts);
  return out;
}

function largestPrimeFactor(n: number): number {
  let m = n;
  let p = 2;
  let largest = 1;
  while (p * p <= m) {
    while (m % p === 0) {
      largest = p;
      m /= p;
    }
    p++;
  }
  return m > 1 ? Math.max(largest, m) : largest;
}

/** Widths to try: d itself, plus the next 7-smooth widths within 12% when d factors badly. */
export function candidateWidths(d: number, orders: readonly number[]): number[] {
  const widths = [d];
  const shapes = orders.reduce((s, N) => s + factorizations(d, N, 2, 64).length, 0);
  if (shapes >= 6) return widths;
  const limit = d + Math.max(8, Math.ceil(d * 0.12));
  for (let w = d + 1; w <= limit && widths.length < 3; w++) if (largestPrimeFactor(w) <= 7) widths.push(w);
  return widths;
}


/** Distinct row indices, seeded; all rows when there are fewer than `count`. */
export function sampleRows(rows: number, count: number, seed: number): Int32Array {
  if (rows <= count) return Int32Array.from({ length: rows }, (_, i) => i);
  const rnd = mulberry32(seed);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(Math.floor(rnd() * rows));
  return Int32Array.from([...picked].sort((a, b) => a - b));
}

/** Copies the sample rows into a dense block, zero-padded to `width`. */
function gatherRows(matrix: Float32Array, d: number, rows: Int32Array, width: number): Float64Array {
  const out = new Float64Array(rows.length * width);
  for (let i = 0; i < rows.length; i++) {
    const src = rows[i]! * d;
    for (let j = 0; j < d; j++) out[i * width + j] = matrix[src + j]!;
  }
  return out;
}

/**
 * Discarded energy per bond and rank: tails[k][r] = sum over sample rows of the squared singular values
 * of unfolding k beyond the r-th. By Oseledets 2011, Thm 2.2, TT-SVD error^2 <= sum_k tails[k][r_k].
 */
function unfoldingTails(block: Float64Array, rows: number, shape: readonly number[], ws: EigenWorkspace): Float64Array[] {
  const width = shape.reduce((p, x) => p * x, 1);
  const caps = maxTtRanks(shape);
  const tails = caps.map((c) => new Float64Array(c + 1));
  let left = 1;
  for (let k = 0; k < shape.length - 1; k++) {
    left *= shape[k]!;
    const right = width / left;
    const p = Math.min(left, right);
    const g = new Float64Array(p * p);
    const tail = tails[k]!;
    for (let s = 0; s < rows; s++) {
      const o = s * width;
      g.fill(0);
      if (left <= right) {
        for (let i = 0; i < left; i++)
          for (let j = 0; j <= i; j++) {
            let acc = 0;
            for (let q = 0; q < right; q++) acc += block[o + i * right + q]! * block[o + j * right + q]!;
            g[i * p + j] = acc;
            g[j * p + i] = acc;
          }
      } else {
        for (let i = 0; i < left; i++)
          for (let a = 0; a < right; a++) {
            const xa = block[o + i * right + a]!;
            for (let b = a; b < right; b++) g[a * p + b] = g[a * p + b]! + xa * block[o + i * right + b]!;
          }
        for (let a = 0; a < p; a++) for (let b = a + 1; b < p; b++) g[b * p + a] = g[a * p + b]!;
      }
      symmetricEigen(g, p, ws);
      let acc = 0;
      for (let r = p - 1; r >= 0; r--) {
        acc += Math.max(ws.values[r]!, 0);
        tail[r] = tail[r]! + acc;
      }
    }
  }
  return tails;
}

/**
 * Rank tuples (r_1..r_{N-1}) that fit `budget` stored elements per row and cannot grow any single rank
 * without breaking the budget; ranks never exceed what the neighbouring cores can use.
 */
export function maximalRankTuples(shape: readonly number[], budget: number, limit = 200_000): number[][] {
  const N = shape.length;
  const caps = maxTtRanks(shape);
  const out: number[][] = [];
  const ranks = new Array<number>(N + 1).fill(1);
  const fits = (): boolean => ttStorage(shape, ranks) <= budget;
  const rec = (k: number): void => {
    if (out.length >= limit) return;
    if (k === N) {
      if (!fits()) return;
      for (let j = 1; j < N; j++) {
        if (ranks[j]! >= caps[j - 1]!) continue;
        if (ranks[j]! + 1 > ranks[j - 1]! * shape[j - 1]!) continue;
        if (ranks[j]! + 1 > shape[j]! * ranks[j + 1]!) continue;
        ranks[j]!++;
        const grows = fits();
        ranks[j]!--;
        if (grows) return;
      }
      out.push(ranks.slice(1, N));
      return;
    }
    const cap = Math.min(caps[k - 1]!, ranks[k - 1]! * shape[k - 1]!);
    for (let r = 1; r <= cap; r++) {
      ranks[k] = r;
      // Partial storage of cores 0..k-1 is already fixed; stop once it alone breaks the budget.
      let partial = 0;
      for (let j = 0; j < k; j++) partial += ranks[j]! * shape[j]! * ranks[j + 1]!;
      if (partial > budget) break;
      rec(k + 1);
    }
    ranks[k] = 1;
  };
  rec(1);
  // Drop tuples where a rank exceeds what the core to its right can carry.
  return out.filter((t) => {
    const r = [1, ...t, 1];
    for (let j = 1; j < N; j++) if (r[j]! > shape[j]! * r[j + 1]!) return false;
    return true;
  });
}

/** Options for `selectTtRowPlan`. */
export interface SelectOptions {
  ratio: number;
  orders?: readonly number[];
  sampleRows?: number;
  seed?: number;
  /** Shapes kept per order after ranking by balance (the rest are not scored). */
  shapesPerOrder?: number;
  /** Plans scored by real TT-SVD on the sample after ranking by the error bound. */
  finalists?: number;
}

/** Relative error of per-row TT-SVD at `plan` over the given zero-padded block of rows. */
export function sampleTtError(block: Float64Array, rows: number, plan: TtRowPlan): number {
  const ws = new TtSvdWorkspace(plan.shape);
  const width = plan.paddedDim;
  let err = 0;
  let norm = 0;
  const recon = new Float64Array(width);
  for (let s = 0; s < rows; s++) {
    ttSvdInto(block, s * width, ws, { maxRanks: plan.ranks.slice(1, -1) });
    reconstructInto(ws, recon);
    for (let j = 0; j < plan.dim; j++) {
      const x = block[s * width + j]!;
      err += (x - recon[j]!) ** 2;
      norm += x * x;
    }
  }
  return norm > 0 ? Math.sqrt(err / norm) : 0;
}

/** Contracts the cores held in a workspace into `out` (length prod(shape)). */
export function reconstructInto(ws: TtSvdWorkspace, out: Float64Array): void {
  const shape = ws.shape;
  const ranks = ws.ranks;
  // Ping-pong between out and a scratch the size of the result.
  let acc: Float64Array = new Float64Array(out.length);
  let rows = shape[0]!;
  const r1 = ranks[1]!;
  acc.set(ws.cores[0]!.subarray(0, rows * r1));
  let tmp: Float64Array = out;
  for (let k = 1; k < shape.length; k++) {
    const rk = ranks[k]!;
    const cols = shape[k]! * ranks[k + 1]!;
    const core = ws.cores[k]!;
    tmp.fill(0, 0, rows * cols);
    for (let i = 0; i < rows; i++)
      for (let a = 0; a < rk; a++) {
        const v = acc[i * rk + a]!;
        if (v === 0) continue;
        for (let c = 0; c < cols; c++) tmp[i * cols + c] = tmp[i * cols + c]! + v * core[a * cols + c]!;
      }
    const t = acc;
    acc = tmp;
    tmp = t;
    rows *= shape[k]!;
  }
  if (acc !== out) out.set(acc.subarray(0, out.length));
}

/** Balanced default shape for --max-rank / --eps runs: N factors of d as close to d^(1/N) as possible. */
export function balancedShape(d: number, order = 3): number[] {
  const shapes = factorizations(d, order, 2);
  if (shapes.length === 0) {
    throw new ValidationError(
      `width ${d} has no factorisation into ${order} factors >= 2; pass --shape with a padded width (e.g. ${d + 1}) or use --ratio, which pads automatically`,
      { code: 'VALIDATION_TT_SHAPE' },
    );
  }
  const score = (s: number[]): number => Math.max(...s) / Math.min(...s);
  return shapes.sort((a, b) => score(a) - score(b))[0]!;
}

/**
 * Picks shape and ranks for per-row TT at `ratio` (= d / stored elements per row, padding included):
 * every factorisation of d (or of a padded width) into N factors is scored by the TT-SVD error bound on
 * a sample of rows for its best rank tuple under the budget, and the best few are scored by real TT-SVD.
 */
export function selectTtRowPlan(matrix: Float32Array, V: number, d: number, options: SelectOptions): TtRowSelection {
  const ratio = options.ratio;
  if (!(ratio >= 1)) {
    throw new ValidationError(`compression ratio must be a number >= 1, got ${ratio}`, { code: 'VALIDATION_RATIO' });
  }
  const orders = options.orders ?? [3, 4, 5];
  const budget = Math.floor(d / ratio);
  const rows = sampleRows(V, options.sampleRows ?? 48, options.seed ?? 1);
  const ws = new EigenWorkspace(32);
  const perOrder = options.shapesPerOrder ?? 16;
  type Cand = { shape: number[]; ranks: number[]; paddedDim: number; bound: number; ratio: number; sampleError?: number };
  const cands: Cand[] = [];
  let shapesConsidered = 0;
  let bestPossibleRatio = 0;
  for (const width of candidateWidths(d, orders)) {
    const block = gatherRows(matrix, d, rows, width);
    let energy = 0;
    for (let i = 0; i < block.length; i++) energy += block[i]! * block[i]!;
    for (const N of orders) {
      const balance = (s: number[]): number => Math.max(...s) / Math.min(...s);
      const shapes = factorizations(width, N, 2, 64).sort((a, b) => balance(a) - balance(b)).slice(0, perOrder);
      for (const shape of shapes) {
        const minStore = shape.reduce((s, x) => s + x, 0);
        bestPossibleRatio = Math.max(bestPossibleRatio, d / minStore);
        if (minStore > budget) continue;
        shapesConsidered++;
        const tails = unfoldingTails(block, rows.length, shape, ws);
        let best: Cand | undefined;
        for (const t of maximalRankTuples(shape, budget)) {
          let b = 0;
          for (let k = 0; k < t.length; k++) b += tails[k]![t[k]!]!;
          const bound = energy > 0 ? Math.sqrt(b / energy) : 0;
          if (!best || bound < best.bound) {
            const ranks = [1, ...t, 1];
            best = { shape, ranks, paddedDim: width, bound, ratio: d / ttStorage(shape, ranks) };
          }
        }
        if (best) cands.push(best);
      }
    }
  }
  if (cands.length === 0) {
    throw new ValidationError(
      `compression ratio ${ratio} is impossible for per-row TT of width ${d}: even rank 1 stores at least ${Math.ceil(d / Math.max(bestPossibleRatio, 1e-9))} elements per row, so the largest ratio is ${bestPossibleRatio.toFixed(2)}x with orders ${orders.join(',')}`,
      { code: 'VALIDATION_RATIO' },
    );
  }
  cands.sort((a, b) => a.bound - b.bound);
  const finalists = cands.slice(0, options.finalists ?? 6);
  for (const c of finalists) {
    const block = gatherRows(matrix, d, rows, c.paddedDim);
    c.sampleError = sampleTtError(block, rows.length, { dim: d, paddedDim: c.paddedDim, shape: c.shape, ranks: c.ranks });
  }
  finalists.sort((a, b) => a.sampleError! - b.sampleError!);
  const win = finalists[0]!;
  const pad = win.paddedDim > d ? ` (width padded ${d} -> ${win.paddedDim} with zeros, counted in the ratio)` : '';
  return {
    plan: { dim: d, paddedDim: win.paddedDim, shape: win.shape, ranks: win.ranks },
    sampleError: win.sampleError!,
    ratio: win.ratio,
    shapesConsidered,
    candidatesEvaluated: finalists.map((c) => ({
      shape: c.shape,
      ranks: c.ranks,
      ratio: c.ratio,
      boundError: c.bound,
      sampleError: c.sampleError,
    })),
    why: `shape ${win.shape.join('x')} ranks ${win.ranks.slice(1, -1).join(',')}${pad}: lowest sample error ${win.sampleError!.toFixed(4)} of ${finalists.length} finalists (from ${shapesConsidered} shapes ranked by the TT-SVD error bound) within ${budget} stored elements per row`,
  };
}

export { assertShape };
