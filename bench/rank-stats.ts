// Rank statistics for the benchmark studies: Kendall's tau-b, Spearman's rho (average ranks for
// ties) and a paired percentile bootstrap over items. Checked against scipy in test/bench/rank-stats.test.ts.
import { SeededRandom } from '../models/random.ts';

/** 1-based ranks with ties given their average rank (scipy.stats.rankdata 'average'). */
export function averageRanks(xs: readonly number[]): number[] {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a]! - xs[b]!);
  const ranks = new Array<number>(xs.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && xs[order[j + 1]!] === xs[order[i]!]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]!] = rank;
    i = j + 1;
  }
  return ranks;
}

function pearson(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy);
}

function checkPaired(x: readonly number[], y: readonly number[]): void {
  if (x.length !== y.length) throw new Error(`paired statistics need equal lengths, got ${x.length} and ${y.length}`);
}

/** Spearman's rho: Pearson correlation of average ranks (NaN when either side is constant). */
export function spearman(x: readonly number[], y: readonly number[]): number {
  checkPaired(x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

/**
 * Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties in x) (n0 - ties in y)), the
 * tie-corrected form scipy.stats.kendalltau computes by default (NaN when either side is constant).
 */
export function kendallTauB(x: readonly number[], y: readonly number[]): number {
  checkPaired(x, y);
  let s = 0;
  let pairs = 0;
  let tiesX = 0;
  let tiesY = 0;
  for (let i = 0; i < x.length; i++) {
    for (let j = i + 1; j < x.length; j++) {
      const dx = Math.sign(x[i]! - x[j]!);
      const dy = Math.sign(y[i]! - y[j]!);
      pairs++;
      if (dx === 0) tiesX++;
      if (dy === 0) tiesY++;
      s += dx * dy;
    }
  }
  const denom = Math.sqrt((pairs - tiesX) * (pairs - tiesY));
  return denom === 0 ? NaN : s / denom;
}

/** The q-quantile (0..1) of values by linear interpolation between order statistics (numpy's default). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/** A statistic with its bootstrap percentile interval. */
export interface BootstrapEstimate {
  estimate: number;
  low: number;
  high: number;
  level: number;
  resamples: number;
  /** Resamples whose statistic was undefined (a constant side) and were left out of the interval. */
  undefinedResamples: number;
}

/**
 * Paired percentile bootstrap: resamples the n (x, y) items with replacement `resamples` times
 * (seeded, so the interval is reproducible) and takes the (1-level)/2 and (1+level)/2 quantiles of
 * the statistic over the resamples.
 */
export function bootstrapPaired(
  x: readonly number[],
  y: readonly number[],
  statistic: (x: readonly number[], y: readonly number[]) => number,
  options: { resamples?: number; level?: number; seed?: number } = {},
): BootstrapEstimate {
  checkPaired(x, y);
  const resamples = options.resamples ?? 10000;
  const level = options.level ?? 0.95;
  const rng = new SeededRandom(options.seed ?? 1);
  const n = x.length;
  const bx = new Array<number>(n);
  const by = new Array<number>(n);
  const stats: number[] = [];
  let undefinedResamples = 0;
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) {
      const k = rng.int(n);
      bx[i] = x[k]!;
      by[i] = y[k]!;
    }
    const v = statistic(bx, by);
    if (Number.isNaN(v)) undefinedResamples++;
    else stats.push(v);
  }
  return {
    estimate: statistic(x, y),
    low: quantile(stats, (1 - level) / 2),
    high: quantile(stats, (1 + level) / 2),
    level,
    resamples,
    undefinedResamples,
  };
}
