// TT-SVD of one vector reshaped to an N-way tensor (Oseledets, "Tensor-Train Decomposition",
// SIAM J. Sci. Comput. 2011, Alg. 1), on typed arrays with a reusable workspace.
import { EigenWorkspace, symmetricEigen } from './linalg.ts';
import { ValidationError } from '../../common/errors.ts';

/** Truncation rule: per-unfolding rank caps and/or relative accuracy eps (both optional). */
export interface TtTruncation {
  /** Cap on r_1..r_{N-1}; a single number caps all of them. */
  maxRanks?: number | readonly number[];
  /** Relative accuracy: each unfolding is cut at eps / sqrt(N-1) * ||x|| (TT-Toolbox's tt_tensor rule). */
  eps?: number;
}

/** One TT decomposition: core k is [ranks[k], shape[k], ranks[k+1]] row-major, ranks[0] = ranks[N] = 1. */
export interface TtVector {
  shape: number[];
  ranks: number[];
  cores: Float64Array[];
}

/** Largest useful rank for each bond of `shape`: min(prod of modes left of it, prod right of it). */
export function maxTtRanks(shape: readonly number[]): number[] {
  const ranks: number[] = [];
  let left = 1;
  const total = shape.reduce((p, x) => p * x, 1);
  for (let k = 0; k < shape.length - 1; k++) {
    left *= shape[k]!;
    ranks.push(Math.min(left, total / left));
  }
  return ranks;
}

/** Checks that `shape` is a list of positive integers whose product is `size`; throws a clear error otherwise. */
export function assertShape(shape: readonly number[], size: number): void {
  if (shape.length < 2 || shape.some((x) => !Number.isInteger(x) || x < 1)) {
    throw new ValidationError(
      `TT shape must be at least 2 positive integers, got [${shape.join(', ')}]`,
      { code: 'VALIDATION_TT_SHAPE' },
    );
  }
  const prod = shape.reduce((p, x) => p * x, 1);
  if (prod !== size) {
    throw new ValidationError(
      `TT shape ${shape.join('x')} multiplies to ${prod}, but the vector has ${size} elements; the factors must multiply to exactly ${size}`,
      { code: 'VALIDATION_TT_SHAPE' },
    );
  }
}

/** Buffers for `ttSvdInto`, sized for one shape and reused across rows. */
export class TtSvdWorkspace {
  readonly shape: number[];
  readonly capRanks: number[];
  /** Core k buffer of capacity capRanks[k-1]*shape[k]*capRanks[k]. */
  readonly cores: Float64Array[];
  /** Actual ranks of the last decomposition (length N+1). */
  readonly ranks: number[];
  readonly eig = new EigenWorkspace(8);
  carry: Float64Array;
  next: Float64Array;
  gram: Float64Array;
  constructor(shape: readonly number[]) {
    this.shape = [...shape];
    this.capRanks = [1, ...maxTtRanks(shape), 1];
    const n = shape.reduce((p, x) => p * x, 1);
    this.cores = shape.map((len, k) => new Float64Array(this.capRanks[k]! * len * this.capRanks[k + 1]!));
    this.ranks = new Array<number>(shape.length + 1).fill(1);
    this.carry = new Float64Array(n);
    this.next = new Float64Array(n);
    let g = 1;
    for (let k = 0; k < shape.length - 1; k++) {
      const m = this.capRanks[k]! * shape[k]!;
      const side = Math.min(m, n / shape.slice(0, k + 1).reduce((p, x) => p * x, 1));
      g = Math.max(g, side * side);
    }
    this.gram = new Float64Array(g);
  }
}

/**
 * TT-SVD of `x[offset .. offset+prod(shape))` into `ws.cores` / `ws.ranks`. Each step takes the SVD of the
 * current (r_{k-1} I_k) x rest unfolding from the eigen-decomposition of its smaller Gram matrix, keeps
 * r_k left singular vectors as core k and carries S V^T on. Allocation-free after the workspace exists.
 */
export function ttSvdInto(x: ArrayLike<number>, offset: number, ws: TtSvdWorkspace, trunc: TtTruncation): void {
  const shape = ws.shape;
  const N = shape.length;
  const total = ws.carry.length;
  let carry = ws.carry;
  let next = ws.next;
  let norm2 = 0;
  for (let i = 0; i < total; i++) {
    const v = x[offset + i]!;
    carry[i] = v;
    norm2 += v * v;
  }
  const eps = trunc.eps ?? 0;
  const delta2 = eps > 0 && N > 1 ? (eps * eps * norm2) / (N - 1) : 0;
  const caps = trunc.maxRanks;
  let rPrev = 1;
  let rest = total;
  ws.ranks[0] = 1;
  for (let k = 0; k < N - 1; k++) {
    const m = rPrev * shape[k]!;
    rest /= shape[k]!;
    const n = rest;
    const p = Math.min(m, n);
    const g = ws.gram;
    const eig = ws.eig;
    let cap = typeof caps === 'number' ? caps : caps !== undefined ? (caps[k] ?? Infinity) : Infinity;
    cap = Math.min(cap, p, ws.capRanks[k + 1]!);
    const core = ws.cores[k]!;
    let r: number;
    if (m <= n) {
      // G = C C^T; eigenvectors are the left singular vectors.
      for (let i = 0; i < m; i++) {
        const oi = i * n;
        for (let j = 0; j <= i; j++) {
          const oj = j * n;
          let acc = 0;
          for (let q = 0; q < n; q++) acc += carry[oi + q]! * carry[oj + q]!;
          g[i * m + j] = acc;
          g[j * m + i] = acc;
        }
      }
      symmetricEigen(g, m, eig);
      r = chooseRank(eig.values, p, cap, delta2);
      const vec = eig.vectors;
      for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) core[i * r + j] = vec[j * m + i]!;
      // next = U_r^T C  (r x n)
      for (let j = 0; j < r; j++) {
        const on = j * n;
        for (let q = 0; q < n; q++) next[on + q] = 0;
        for (let i = 0; i < m; i++) {
          const u = vec[j * m + i]!;
          if (u === 0) continue;
          const oi = i * n;
          for (let q = 0; q < n; q++) next[on + q] = next[on + q]! + u * carry[oi + q]!;
        }
      }
    } else {
      // G = C^T C; eigenvectors are the right singular vectors; U = C V / s.
      for (let a = 0; a < n * n; a++) g[a] = 0;
      for (let i = 0; i < m; i++) {
        const oi = i * n;
        for (let a = 0; a < n; a++) {
          const xa = carry[oi + a]!;
          if (xa === 0) continue;
          const ga = a * n;
          for (let b = a; b < n; b++) g[ga + b] = g[ga + b]! + xa * carry[oi + b]!;
        }
      }
      for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) g[b * n + a] = g[a * n + b]!;
      symmetricEigen(g, n, eig);
      r = chooseRank(eig.values, p, cap, delta2);
      const vec = eig.vectors;
      const tiny = Math.max(eig.values[0]!, 0) * 1e-28;
      for (let j = 0; j < r; j++) {
        const lambda = eig.values[j]!;
        const s = lambda > tiny ? Math.sqrt(lambda) : 0;
        const on = j * n;
        for (let i = 0; i < m; i++) {
          let acc = 0;
          if (s > 0) {
            const oi = i * n;
            for (let q = 0; q < n; q++) acc += carry[oi + q]! * vec[on + q]!;
            acc /= s;
          }
          core[i * r + j] = acc;
        }
        for (let q = 0; q < n; q++) next[on + q] = s * vec[on + q]!;
      }
    }
    ws.ranks[k + 1] = r;
    const t = carry;
    carry = next;
    next = t;
    rPrev = r;
  }
  const last = ws.cores[N - 1]!;
  const lastSize = rPrev * shape[N - 1]!;
  for (let i = 0; i < lastSize; i++) last[i] = carry[i]!;
  ws.ranks[N] = 1;
}

/** Smallest rank whose discarded energy fits delta2, capped; at least 1. */
function chooseRank(values: Float64Array, p: number, cap: number, delta2: number): number {
  let r = p;
  if (delta2 > 0) {
    let tail = 0;
    r = p;
    while (r > 1) {
      const lam = Math.max(values[r - 1]!, 0);
      if (tail + lam > delta2) break;
      tail += lam;
      r--;
    }
  }
  return Math.max(1, Math.min(r, cap));
}

/** TT-SVD of one vector; returns copies of the cores at their actual ranks. */
export function ttSvd(x: ArrayLike<number>, shape: readonly number[], trunc: TtTruncation = {}): TtVector {
  assertShape(shape, x.length);
  const ws = new TtSvdWorkspace(shape);
  ttSvdInto(x, 0, ws, trunc);
  const ranks = [...ws.ranks];
  const cores = shape.map((len, k) => ws.cores[k]!.slice(0, ranks[k]! * len * ranks[k + 1]!));
  return { shape: [...shape], ranks, cores };
}

/** Contracts TT cores back to the full vector (length prod(shape)). */
export function ttReconstruct(tt: TtVector): Float64Array {
  const { shape, ranks, cores } = tt;
  let acc = Float64Array.from(cores[0]!); // [I_1, r_1]
  let rows = shape[0]!;
  for (let k = 1; k < shape.length; k++) {
    const rk = ranks[k]!;
    const cols = shape[k]! * ranks[k + 1]!;
    const out = new Float64Array(rows * cols);
    const core = cores[k]!;
    for (let i = 0; i < rows; i++) {
      for (let a = 0; a < rk; a++) {
        const v = acc[i * rk + a]!;
        if (v === 0) continue;
        for (let c = 0; c < cols; c++) out[i * cols + c] = out[i * cols + c]! + v * core[a * cols + c]!;
      }
    }
    acc = out;
    rows *= shape[k]!;
  }
  return acc;
}

/** Number of stored elements of a TT with these modes and ranks (ranks has length N+1). */
export function ttStorage(shape: readonly number[], ranks: readonly number[]): number {
  let s = 0;
  for (let k = 0; k < shape.length; k++) s += ranks[k]! * shape[k]! * ranks[k + 1]!;
  return s;
}
