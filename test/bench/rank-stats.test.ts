// The study statistics (bench/rank-stats.ts) against scipy 1.17 / numpy 2.4. Reference values came from
// `python3 test/bench/rank-stats-reference.py` (the Python 3.11 with scipy; prints every constant below).
import { describe, expect, it } from 'vitest';
import { averageRanks, bootstrapPaired, kendallTauB, quantile, spearman } from '../../bench/rank-stats.ts';

// Ties on both sides, so tau-b's correction and average ranks matter.
const X = [3.1, 2.0, 5.5, 5.5, 1.2, 4.4, 7.0, 2.0, 6.1, 0.5, 3.3, 4.4];
const Y = [2.9, 1.0, 4.0, 6.2, 1.5, 4.4, 5.0, 3.0, 6.1, 1.0, 2.2, 3.9];

describe('rank statistics match scipy', () => {
  it('average ranks (scipy.stats.rankdata)', () => {
    expect(averageRanks(X)).toEqual([5.0, 3.5, 9.5, 9.5, 2.0, 7.5, 12.0, 3.5, 11.0, 1.0, 6.0, 7.5]);
  });
  it("Kendall's tau-b (scipy.stats.kendalltau)", () => {
    expect(kendallTauB(X, Y)).toBeCloseTo(0.7188377541056931, 12);
    expect(kendallTauB(X, Y.map((v) => -v))).toBeCloseTo(-0.7188377541056931, 12);
  });
  it("Spearman's rho (scipy.stats.spearmanr)", () => {
    expect(spearman(X, Y)).toBeCloseTo(0.8926111672655105, 12);
  });
  it('quantiles interpolate like numpy.quantile', () => {
    expect(quantile(X, 0.025)).toBeCloseTo(0.6925, 12);
    expect(quantile(X, 0.975)).toBeCloseTo(6.7524999999999995, 12);
    expect(quantile(X, 0.5)).toBeCloseTo(3.85, 12);
  });
  it('a constant side has no correlation (NaN), not a number that looks like one', () => {
    expect(kendallTauB([1, 1, 1], [1, 2, 3])).toBeNaN();
    expect(spearman([1, 2, 3], [4, 4, 4])).toBeNaN();
  });
});

describe('paired percentile bootstrap', () => {
  // scipy.stats.bootstrap(paired=True, method='percentile', n_resamples=20000, rng 0) gives these
  // intervals; with its own generator ours differs only by Monte-Carlo error (well under 0.02 here).
  it('Kendall interval agrees with scipy.stats.bootstrap', () => {
    const b = bootstrapPaired(X, Y, kendallTauB, { resamples: 20000, seed: 7 });
    expect(b.estimate).toBeCloseTo(0.7188377541056931, 12);
    expect(Math.abs(b.low - 0.4537975356806496)).toBeLessThan(0.02);
    expect(Math.abs(b.high - 0.9076014836482114)).toBeLessThan(0.02);
  });
  it('Spearman interval agrees with scipy.stats.bootstrap', () => {
    const b = bootstrapPaired(X, Y, spearman, { resamples: 20000, seed: 7 });
    expect(Math.abs(b.low - 0.6402842183421935)).toBeLessThan(0.02);
    expect(Math.abs(b.high - 0.9674484568191102)).toBeLessThan(0.02);
  });
  it('is reproducible from its seed and pairs items (a shuffled y loses the signal)', () => {
    const a = bootstrapPaired(X, Y, spearman, { resamples: 500, seed: 3 });
    expect(bootstrapPaired(X, Y, spearman, { resamples: 500, seed: 3 })).toEqual(a);
    const shuffled = [Y[5]!, Y[9]!, Y[0]!, Y[11]!, Y[2]!, Y[7]!, Y[1]!, Y[10]!, Y[4]!, Y[8]!, Y[3]!, Y[6]!];
    expect(bootstrapPaired(X, shuffled, spearman, { resamples: 500, seed: 3 }).low).toBeLessThan(0);
  });
});
