// The trainer's initialisation: the builder's seeded GPT-2 scheme, except that projections which
// change width (project_in, block_proj.*, project_out) are drawn at std 1/sqrt(fan_in) (Glorot &
// Bengio 2010) so they carry the residual stream at its scale instead of shrinking it ~5x.
import type { ArchSpec } from '../arch/spec.ts';
import { initWeights, type DecoderWeights } from '../arch/weights.ts';

const GPT2_STD = 0.02;

/** True for the bias-free or between-block projections that sit on the residual path. */
export function isWidthProjection(name: string): boolean {
  return name === 'project_in.weight' || name === 'project_out.weight' || /^block_proj\.\d+\.weight$/.test(name);
}

/** Seeded initial weights for training (same spec and seed give the same bytes). */
export function trainingInitWeights(spec: ArchSpec, seed = 0): DecoderWeights {
  const weights = initWeights(spec, seed);
  for (const [name, t] of weights) {
    if (!isWidthProjection(name)) continue;
    const scale = 1 / Math.sqrt(t.shape[0]!) / GPT2_STD;
    for (let i = 0; i < t.data.length; i++) t.data[i]! *= scale;
  }
  return weights;
}
