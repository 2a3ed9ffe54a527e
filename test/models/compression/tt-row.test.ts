// Whole-table per-row TT, shape selection, SVD and TT-matrix baselines, and the auto chooser.
import { mulberry32 } from '../../../models/random.ts';
import { describe, expect, it } from 'vitest';
import { compressTtRow } from '../../../models/compression/tt-row.ts';
import { reconstructRows, compressionRatio, storedElements } from '../../../models/compression/embedding.ts';
import { factorizations, maximalRankTuples, selectTtRowPlan } from '../../../models/compression/shape-selection.ts';
import { ttReconstruct, ttSvd, ttStorage } from '../../../models/compression/tt-svd.ts';
import { compressSvd, svdRankForRatio } from '../../../models/compression/svd-embedding.ts';
import { compressTtMatrix, planTtMatrix, vocabShape } from '../../../models/compression/tt-matrix.ts';
import { compressEmbedding } from '../../../models/compression/auto.ts';
import { measureCompression } from '../../../models/compression/report.ts';
import { ValidationError } from '../../../common/errors.ts';

/** A low-rank table plus noise, like trained embeddings (seeded). */
function table(V: number, d: number, seed: number, rank = 6, noise = 0.05): Float32Array {
  const rnd = mulberry32(seed);
  const a = Float64Array.from({ length: V * rank }, () => rnd() - 0.5);
  const b = Float64Array.from({ length: rank * d }, () => rnd() - 0.5);
  const out = new Float32Array(V * d);
  for (let i = 0; i < V; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += a[i * rank + k]! * b[k * d + j]!;
      out[i * d + j] = s + noise * (rnd() - 0.5);
    }
  return out;
}

function relError(x: Float32Array, y: Float32Array): number {
  let e = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    e += (x[i]! - y[i]!) ** 2;
    n += x[i]! ** 2;
  }
  return Math.sqrt(e / n);
}

describe('compressTtRow', () => {
  const V = 400;
  const d = 48;
  const m = table(V, d, 1);
  const plan = { dim: d, paddedDim: d, shape: [4, 3, 4], ranks: [1, 2, 2, 1] };

  it('stores cores [V, r, I, r] whose rows equal per-row TT-SVD', async () => {
    const e = await compressTtRow(m, V, d, plan, { workers: 1 });
    expect(e.cores.map((c) => c.length)).toEqual([V * 8, V * 12, V * 8]);
    expect(compressionRatio(e)).toBeCloseTo(48 / 28, 10);
    const recon = reconstructRows(e, 17, 18);
    const single = ttReconstruct(ttSvd(m.subarray(17 * d, 18 * d), [4, 3, 4], { maxRanks: [2, 2] }));
    for (let j = 0; j < d; j++) expect(recon[j]).toBeCloseTo(single[j]!, 5);
  });

  it('gives identical cores with worker threads as on the main thread', async () => {
    const a = await compressTtRow(m, V, d, plan, { workers: 1 });
    const b = await compressTtRow(m, V, d, plan, { workers: 2 });
    for (let k = 0; k < 3; k++) expect(Buffer.from(b.cores[k]!.buffer).equals(Buffer.from(a.cores[k]!.buffer))).toBe(true);
  });

  it('pads rows to the TT width and slices the padding off', async () => {
    const e = await compressTtRow(m, V, d, { dim: d, paddedDim: 50, shape: [2, 5, 5], ranks: [1, 2, 2, 1] }, { workers: 1 });
    const full = await compressTtRow(m, V, d, { dim: d, paddedDim: 50, shape: [2, 5, 5], ranks: [1, 2, 10, 1] }, { workers: 1 });
    // Rank 10 exceeds what a 2x5x5 tensor can use; it is capped at min(10, 5) = 5.
    expect(full.ranks).toEqual([1, 2, 5, 1]);
    expect(relError(m, reconstructRows(full))).toBeLessThan(1e-5);
    expect(relError(m, reconstructRows(e))).toBeGreaterThan(1e-3);
    // The ratio counts padded storage against the real width.
    expect(compressionRatio(e)).toBeCloseTo((V * d) / storedElements(e), 12);
  });

  it('with eps, stores at the largest rank any row needed and zero-pads the rest', async () => {
    const m2 = new Float32Array(m);
    m2.fill(0, 5 * d, 6 * d); // a zero row needs rank 1
    const e = await compressTtRow(m2, V, d, { dim: d, paddedDim: d, shape: [4, 3, 4], ranks: [1, 4, 4, 1] }, { workers: 1, eps: 0.2 });
    expect(relError(m2, reconstructRows(e))).toBeLessThan(0.2);
    expect(Array.from(reconstructRows(e, 5, 6)).every((x) => x === 0)).toBe(true);
  });

  it('rejects a shape that does not multiply to the padded width', async () => {
    await expect(compressTtRow(m, V, d, { dim: d, paddedDim: d, shape: [4, 3, 5], ranks: [1, 2, 2, 1] })).rejects.toThrow(
      /4x3x5 multiplies to 60, but the vector has 48 elements/,
    );
  });
});

describe('shape selection', () => {
  it('lists ordered factorisations', () => {
    expect(factorizations(12, 2)).toEqual([
      [2, 6],
      [3, 4],
      [4, 3],
      [6, 2],
    ]);
    expect(factorizations(7, 3)).toEqual([]);
  });

  it('rank tuples fit the budget and are maximal', () => {
    const shape = [4, 8, 4, 6];
    for (const t of maximalRankTuples(shape, 384)) {
      const r = [1, ...t, 1];
      expect(ttStorage(shape, r)).toBeLessThanOrEqual(384);
    }
    expect(maximalRankTuples(shape, 384).length).toBeGreaterThan(3);
  });

  it('meets the target ratio and beats the worst finalist', () => {
    const m = table(600, 96, 2);
    const sel = selectTtRowPlan(m, 600, 96, { ratio: 2 });
    expect(sel.ratio).toBeGreaterThanOrEqual(2);
    expect(sel.plan.shape.reduce((p, x) => p * x, 1)).toBe(sel.plan.paddedDim);
    const errs = sel.candidatesEvaluated.map((c) => c.sampleError!);
    expect(sel.sampleError).toBe(Math.min(...errs));
    expect(sel.why).toMatch(/lowest sample error/);
  });

  it('pads a prime width and counts the padding', () => {
    const m = table(300, 97, 3);
    const sel = selectTtRowPlan(m, 300, 97, { ratio: 2 });
    expect(sel.plan.paddedDim).toBeGreaterThan(97);
    expect(sel.why).toMatch(/padded 97 ->/);
    expect(97 / ttStorage(sel.plan.shape, sel.plan.ranks)).toBeGreaterThanOrEqual(2);
  });

  it('rejects an impossible ratio with the largest possible one', () => {
    const m = table(50, 48, 4);
    expect(() => selectTtRowPlan(m, 50, 48, { ratio: 40 })).toThrow(ValidationError);
    expect(() => selectTtRowPlan(m, 50, 48, { ratio: 40 })).toThrow(/ratio 40 is impossible.*largest ratio is \d/);
    expect(() => selectTtRowPlan(m, 50, 48, { ratio: 0.5 })).toThrow(/ratio must be a number >= 1/);
  });
});

describe('baselines', () => {
  const V = 500;
  const d = 40;
  const m = table(V, d, 5);

  it('SVD at full rank is exact and its rank matches the ratio', () => {
    expect(relError(m, reconstructRows(compressSvd(m, V, d, { rank: d })))).toBeLessThan(1e-5);
    const e = compressSvd(m, V, d, { ratio: 2 });
    expect(e.rank).toBe(svdRankForRatio(V, d, 2));
    expect(compressionRatio(e)).toBeGreaterThanOrEqual(2);
    // The table has rank 6 plus noise: rank >= 6 leaves only the noise.
    expect(relError(m, reconstructRows(e))).toBeLessThan(0.05);
    expect(() => svdRankForRatio(V, d, 100)).toThrow(/impossible.*largest ratio is 37\.04x/);
  });

  it('TT-matrix at full rank is exact; at a ratio it meets it', () => {
    expect(vocabShape(500, 3).reduce((p, x) => p * x, 1)).toBeGreaterThanOrEqual(500);
    const full = compressTtMatrix(m, planTtMatrix(V, d, {}));
    expect(relError(m, reconstructRows(full))).toBeLessThan(1e-5);
    const e = compressTtMatrix(m, planTtMatrix(V, d, { ratio: 3 }));
    expect(compressionRatio(e)).toBeGreaterThanOrEqual(3);
    const err = relError(m, reconstructRows(e));
    expect(err).toBeGreaterThan(1e-3);
    expect(err).toBeLessThan(1);
  });

  it('report figures agree with a direct computation', () => {
    const e = compressSvd(m, V, d, { rank: 3 });
    const r = measureCompression(m, e, 0.5);
    expect(r.relativeError).toBeCloseTo(relError(m, reconstructRows(e)), 6);
    expect(r.ratio).toBeCloseTo((V * d) / (3 * (V + d)), 10);
    expect(r.worstCosine).toBeLessThanOrEqual(r.meanCosine);
    expect(r.meanCosine).toBeLessThanOrEqual(1);
  });
});

describe('compressEmbedding (auto)', () => {
  const m = table(500, 48, 6);

  it('picks the method with the lowest error and explains it', async () => {
    const out = await compressEmbedding(m, 500, 48, { method: 'auto', ratio: 2, workers: 1 });
    const errs = out.candidates.map((c) => c.relativeError);
    expect(out.candidates.map((c) => c.method).sort()).toEqual(['svd', 'tt-matrix', 'tt-row']);
    expect(out.report.relativeError).toBe(Math.min(...errs));
    // A rank-6 table: whole-matrix SVD wins clearly over per-row TT.
    expect(out.report.method).toBe('svd');
    expect(out.why).toMatch(/^auto picked svd for the lowest relative Frobenius error at ratio >= 2/);
  });

  it('uses a caller evaluator instead of the error when given', async () => {
    const out = await compressEmbedding(m, 500, 48, {
      method: 'auto',
      ratio: 2,
      workers: 1,
      evaluate: async (e) => (e.method === 'tt-row' ? 0 : 1),
      evaluateName: 'test score',
    });
    expect(out.report.method).toBe('tt-row');
    expect(out.why).toMatch(/lowest test score/);
  });

  it('rejects bad targets with clear errors', async () => {
    await expect(compressEmbedding(m, 500, 48, { method: 'tt-row' })).rejects.toThrow(/give a target/);
    await expect(compressEmbedding(m, 500, 48, { method: 'auto', maxRank: 2 })).rejects.toThrow(/auto .* needs --ratio/);
    await expect(compressEmbedding(m, 500, 48, { method: 'tt-row', ratio: 2, eps: 0.1 })).rejects.toThrow(/combine it with neither/);
    await expect(compressEmbedding(m, 500, 48, { method: 'tt-row', maxRank: 2, shape: [4, 4, 4] })).rejects.toThrow(
      /4x4x4 multiplies to 64, but the vector has 48 elements/,
    );
    await expect(compressEmbedding(m, 500, 48, { method: 'auto', ratio: 1000 })).rejects.toThrow(/impossible for every method/);
  });
});
