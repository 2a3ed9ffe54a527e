// The latency-model interface the search costs designs with: the time of one decode step (one new
// token at a context of S tokens, batch 1) on a device. Two implementations sit beside it:
// roofline-latency.ts (from the device profile's peaks) and measured-latency.ts (a measured layer table).
import { embeddingWidthOf, ffnWidthOf, type ArchSpec } from '../arch/spec.ts';
import { layerShapeOf, type LayerShape } from '../arch/accounting.ts';

/** A layer's kind beyond its widths (default: GPT-2's), and whether Q and K are rotated. */
export type LatencyLayerShape = LayerShape & { rotary?: boolean };

/** What the head step reads besides its widths (default: learned positions, untied head). */
export interface HeadShape {
  /** The head is the token embedding (so it is stored as the embedding is). */
  tied?: boolean;
  /** Rotary positions: no position row to read. */
  rotary?: boolean;
}

/**
 * Operators of one decode step, in milliseconds. The roofline is non-decreasing in every size,
 * which is what lets the search name the smallest feasible latency; a measured table need not be.
 */
export interface LatencyModel {
  /** 'roofline' or 'measured' (a telemetry table with roofline fallback). */
  readonly kind: 'roofline' | 'measured';
  /** Context length the cache is read at. */
  readonly seqLen: number;
  /** One transformer layer: norm, QKV (K/V at kvWidth), rotary, attention over the cache, output, norm, FFN. */
  layerMs(width: number, ffnWidth: number, heads: number, headDim: number, shape?: LatencyLayerShape): number;
  /** A linear between widths (project_in/out, between blocks), with a bias unless `bias` is false. */
  projectionMs(inWidth: number, outWidth: number, bias?: boolean): number;
  /** Final norm and the LM head (width x vocab), plus the embedding lookup. */
  headMs(width: number, vocabSize: number, shape?: HeadShape): number;
}

/** Per-token decode latency of a spec at the model's context length, in milliseconds. */
export function predictLatencyMs(spec: ArchSpec, model: LatencyModel): number {
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  let ms = 0;
  const rotary = spec.positions === 'rotary';
  // project_in/out have no bias; GPT-family figures have always counted one (a few bytes), so they keep it.
  if (eEmb !== first.width) ms += model.projectionMs(eEmb, first.width, first.outputBias);
  spec.blocks.forEach((b, i) => {
    if (i > 0 && spec.blocks[i - 1]!.width !== b.width) ms += model.projectionMs(spec.blocks[i - 1]!.width, b.width, b.outputBias);
    ms += b.layers * model.layerMs(b.width, ffnWidthOf(b), b.heads, b.headDim, { ...layerShapeOf(b), rotary });
  });
  if (spec.tiedHead && last.width !== eEmb) ms += model.projectionMs(last.width, eEmb, last.outputBias);
  ms += model.headMs(spec.tiedHead ? eEmb : last.width, spec.vocabSize, { tied: spec.tiedHead, rotary });
  return ms;
}
