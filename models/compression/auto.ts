// One entry point for embedding compression: runs a named method, or with 'auto' every method at the
// requested ratio, and keeps the one with the lowest error (or lowest score from a caller's evaluator).
import { ValidationError, FleetError } from '../../common/errors.ts';
import type { CompressedEmbedding, CompressionMethod } from './embedding.ts';
import { measureCompression, type CompressionReport } from './report.ts';
import { balancedShape, selectTtRowPlan, type TtRowPlan } from './shape-selection.ts';
import { compressSvd } from './svd-embedding.ts';
import { compressTtMatrix, planTtMatrix } from './tt-matrix.ts';
import { compressTtRow } from './tt-row.ts';
import { assertShape, maxTtRanks } from './tt-svd.ts';

export type MethodChoice = CompressionMethod | 'auto';

/** Options for `compressEmbedding`. Give `ratio`, or `maxRank` and/or `eps`. */
export interface CompressOptions {
  method: MethodChoice;
  ratio?: number;
  maxRank?: number;
  eps?: number;
  /** Per-row TT shape (tt-row) or width shape (tt-matrix); must multiply to d (or its padded width). */
  shape?: number[];
  workers?: number;
  seed?: number;
  /** Methods 'auto' tries (default all three). */
  autoMethods?: CompressionMethod[];
  /** Lower is better (e.g. perplexity of the rewritten model); replaces relative error in 'auto'. */
  evaluate?: (e: CompressedEmbedding) => Promise<number>;
  evaluateName?: string;
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** A finished compression with its report and, for 'auto', every candidate tried. */
export interface CompressOutcome {
  embedding: CompressedEmbedding;
  report: CompressionReport;
  why: string;
  candidates: Array<CompressionReport & { score?: number; skipped?: string }>;
}

function checkOptions(o: CompressOptions, V: number, d: number): void {
  if (!Number.isInteger(V) || !Number.isInteger(d) || V < 1 || d < 1) {
    throw new ValidationError(`embedding table must be at least 1 x 1, got ${V} x ${d}`);
  }
  const hasRatio = o.ratio !== undefined;
  if (!hasRatio && o.maxRank === undefined && o.eps === undefined) {
    throw new ValidationError('give a target: --ratio R, or --max-rank R and/or --eps E');
  }
  if (hasRatio && (o.maxRank !== undefined || o.eps !== undefined)) {
    throw new ValidationError('--ratio picks shape and ranks itself; combine it with neither --max-rank nor --eps');
  }
  if (hasRatio && !(o.ratio! >= 1 && Number.isFinite(o.ratio))) {
    throw new ValidationError(`compression ratio must be a finite number >= 1, got ${o.ratio}`, { code: 'VALIDATION_RATIO' });
  }
  if (o.maxRank !== undefined && !(Number.isInteger(o.maxRank) && o.maxRank >= 1)) {
    throw new ValidationError(`max rank must be an integer >= 1, got ${o.maxRank}`);
  }
  if (o.eps !== undefined && !(o.eps > 0 && o.eps < 1)) {
    throw new ValidationError(`eps must be in (0, 1), got ${o.eps}`);
  }
  if (o.method === 'auto' && !hasRatio) {
    throw new ValidationError('--method auto compares methods at the same size, so it needs --ratio');
  }
}

async function runMethod(
  matrix: Float32Array,
  V: number,
  d: number,
  method: CompressionMethod,
  o: CompressOptions,
): Promise<{ embedding: CompressedEmbedding; why: string }> {
  const progress = (done: number, total: number): void => o.onProgress?.(method, done, total);
  if (method === 'svd') {
    const e = compressSvd(matrix, V, d, { ratio: o.ratio, rank: o.maxRank, eps: o.eps, onProgress: progress });
    return { embedding: e, why: `truncated SVD at rank ${e.rank}` };
  }
  if (method === 'tt-matrix') {
    if (o.shape) assertShape(o.shape, d);
    const plan = planTtMatrix(V, d, { ratio: o.ratio, maxRank: o.maxRank, dimShape: o.shape });
    const e = compressTtMatrix(matrix, plan, { eps: o.eps, onProgress: progress });
    return {
      embedding: e,
      why: `TT-matrix vocab ${e.vocabShape.join('x')} (padded ${V} -> ${e.paddedVocab}) by width ${e.dimShape.join('x')}, ranks ${e.ranks.slice(1, -1).join(',')}`,
    };
  }
  let plan: TtRowPlan;
  let why: string;
  if (o.ratio !== undefined && !o.shape) {
    const sel = selectTtRowPlan(matrix, V, d, { ratio: o.ratio, seed: o.seed });
    plan = sel.plan;
    why = sel.why;
  } else {
    const shape = o.shape ?? balancedShape(d, 3);
    // A given shape must multiply to d exactly: a typo silently padding the rows would waste storage.
    assertShape(shape, d);
    const width = d;
    const caps = maxTtRanks(shape);
    const ranks = [1, ...caps.map((c) => Math.min(c, o.maxRank ?? c)), 1];
    plan = { dim: d, paddedDim: width, shape, ranks };
    if (o.ratio !== undefined) {
      const budget = Math.floor(d / o.ratio);
      // Fixed shape with --ratio: lower the largest rank until the budget holds.
      const store = (): number => ranks.reduce((s, _r, k) => (k < shape.length ? s + ranks[k]! * shape[k]! * ranks[k + 1]! : s), 0);
      while (store() > budget) {
        let k = 1;
        for (let j = 2; j < shape.length; j++) if (ranks[j]! > ranks[k]!) k = j;
        if (ranks[k]! <= 1) {
          throw new ValidationError(`compression ratio ${o.ratio} is impossible with shape ${shape.join('x')}: rank 1 stores ${store()} elements per row, more than ${budget}`, {
            code: 'VALIDATION_RATIO',
          });
        }
        ranks[k]!--;
      }
    }
    why = `shape ${shape.join('x')}${o.shape ? ' (given)' : ' (balanced default)'}, rank caps ${ranks.slice(1, -1).join(',')}${o.eps !== undefined ? `, eps ${o.eps}` : ''}`;
  }
  const e = await compressTtRow(matrix, V, d, plan, { workers: o.workers, eps: o.eps, onProgress: progress });
  return { embedding: e, why: `${why}; stored ranks ${e.ranks.slice(1, -1).join(',')}` };
}

/** Compresses a row-major [V, d] embedding table with the chosen method (or the best one for 'auto'). */
export async function compressEmbedding(matrix: Float32Array, V: number, d: number, o: CompressOptions): Promise<CompressOutcome> {
  checkOptions(o, V, d);
  if (matrix.length !== V * d) throw new ValidationError(`embedding table has ${matrix.length} values, expected V*d = ${V * d}`);
  const methods: CompressionMethod[] = o.method === 'auto' ? (o.autoMethods ?? ['tt-row', 'svd', 'tt-matrix']) : [o.method];
  const candidates: CompressOutcome['candidates'] = [];
  let best: { e: CompressedEmbedding; report: CompressionReport; why: string; score: number } | undefined;
  const skipped: string[] = [];
  for (const method of methods) {
    const t0 = performance.now();
    let run: { embedding: CompressedEmbedding; why: string };
    try {
      run = await runMethod(matrix, V, d, method, o);
    } catch (err) {
      // In auto mode a method that cannot reach the ratio is skipped, not fatal.
      if (o.method === 'auto' && err instanceof FleetError && err.code === 'VALIDATION_RATIO') {
        skipped.push(`${method}: ${err.message}`);
        continue;
      }
      throw err;
    }
    const report = measureCompression(matrix, run.embedding, (performance.now() - t0) / 1000);
    if (report.ratio < 1) run.why += `; note: ratio ${report.ratio.toFixed(2)}x < 1, this stores more than the dense table`;
    const score = o.evaluate ? await o.evaluate(run.embedding) : report.relativeError;
    candidates.push(o.evaluate ? { ...report, score } : report);
    if (!best || score < best.score) best = { e: run.embedding, report, why: run.why, score };
  }
  if (!best) {
    throw new ValidationError(`compression ratio ${o.ratio} is impossible for every method: ${skipped.join('; ')}`, { code: 'VALIDATION_RATIO' });
  }
  const metric = o.evaluate ? (o.evaluateName ?? 'evaluation score') : 'relative Frobenius error';
  let why = best.why;
  if (o.method === 'auto') {
    const table = candidates.map((c) => `${c.method} ${(c.score ?? c.relativeError).toFixed(4)} at ${c.ratio.toFixed(2)}x`).join(', ');
    why = `auto picked ${best.report.method} for the lowest ${metric} at ratio >= ${o.ratio} (${table})${skipped.length ? `; skipped ${skipped.join('; ')}` : ''}; ${best.why}`;
  }
  return { embedding: best.e, report: best.report, why, candidates };
}
