// Predicts the time of one decode step (one new token at a context of S tokens, batch 1) on a
// device. Default: a roofline (Williams, Waterman & Patterson, CACM 52(4), 2009), each operator
// taking max(FLOPs / attained compute, bytes / attained bandwidth) plus a fixed dispatch cost.
import { embeddingWidthOf, ffnWidthOf, type ArchSpec } from '../arch/spec.ts';
import { DEFAULT_SEQ_LEN } from '../arch/accounting.ts';
import type { ComputeUnit } from './device-profiles.ts';

/**
 * Operators of one decode step, in milliseconds. The roofline is non-decreasing in every size,
 * which is what lets the search name the smallest feasible latency; a measured table need not be.
 */
export interface LatencyModel {
  /** 'roofline' or 'measured' (a telemetry table with roofline fallback). */
  readonly kind: 'roofline' | 'measured';
  /** Context length the cache is read at. */
  readonly seqLen: number;
  /** One transformer layer: LN, QKV, attention over the cache, output, LN, FFN. */
  layerMs(width: number, ffnWidth: number, heads: number, headDim: number): number;
  /** A linear between widths (project_in/out, between blocks). */
  projectionMs(inWidth: number, outWidth: number): number;
  /** Final LayerNorm and the LM head (width x vocab), plus the embedding lookup. */
  headMs(width: number, vocabSize: number): number;
}

/** Options of the roofline model. */
export interface RooflineOptions {
  seqLen?: number;
  bytesPerWeight?: number;
  kvBytesPerValue?: number;
}

/** Roofline model of one compute unit. */
export class RooflineLatencyModel implements LatencyModel {
  readonly kind = 'roofline' as const;
  readonly seqLen: number;
  private readonly flopsPerS: number;
  private readonly bytesPerS: number;
  private readonly overheadS: number;
  private readonly wBytes: number;
  private readonly kvBytes: number;

  constructor(unit: ComputeUnit, options: RooflineOptions = {}) {
    this.seqLen = options.seqLen ?? DEFAULT_SEQ_LEN;
    this.flopsPerS = unit.peakFlops * unit.computeEfficiency;
    this.bytesPerS = unit.memoryBandwidth * unit.memoryEfficiency;
    this.overheadS = unit.opOverheadS;
    this.wBytes = options.bytesPerWeight ?? 4;
    this.kvBytes = options.kvBytesPerValue ?? this.wBytes;
  }

  /** One operator: max of compute time and memory time, plus dispatch. */
  private op(flops: number, bytes: number): number {
    return Math.max(flops / this.flopsPerS, bytes / this.bytesPerS) + this.overheadS;
  }

  layerMs(width: number, ffnWidth: number, heads: number, headDim: number): number {
    const e = width;
    const a = heads * headDim;
    const f = ffnWidth;
    const s = this.seqLen;
    const w = this.wBytes;
    const act = 4 * e; // one float32 activation row, read by LayerNorm and the residual add
    let t = 0;
    t += this.op(5 * e, 2 * act); // LN1
    t += this.op(2 * e * 3 * a, w * (3 * e * a + 3 * a)); // Q, K, V
    t += this.op(4 * s * a, this.kvBytes * 2 * s * a); // scores and weighted sum over the cache
    t += this.op(2 * a * e, w * (a * e + e)); // output projection
    t += this.op(e, 3 * act); // residual add
    t += this.op(5 * e, 2 * act); // LN2
    t += this.op(2 * e * f, w * (e * f + f)); // FFN up (+ GELU)
    t += this.op(2 * f * e, w * (f * e + e)); // FFN down
    t += this.op(e, 3 * act); // residual add
    return t * 1000;
  }

  projectionMs(inWidth: number, outWidth: number): number {
    return this.op(2 * inWidth * outWidth, this.wBytes * (inWidth * outWidth + outWidth)) * 1000;
  }

  headMs(width: number, vocabSize: number): number {
    const embed = this.op(0, this.wBytes * 2 * width); // token + position rows
    const ln = this.op(5 * width, 8 * width);
    const head = this.op(2 * width * vocabSize, this.wBytes * width * vocabSize + 4 * vocabSize);
    return (embed + ln + head) * 1000;
  }
}

/** Per-token decode latency of a spec at the model's context length, in milliseconds. */
export function predictLatencyMs(spec: ArchSpec, model: LatencyModel): number {
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  let ms = 0;
  if (eEmb !== first.width) ms += model.projectionMs(eEmb, first.width);
  spec.blocks.forEach((b, i) => {
    if (i > 0 && spec.blocks[i - 1]!.width !== b.width) ms += model.projectionMs(spec.blocks[i - 1]!.width, b.width);
    ms += b.layers * model.layerMs(b.width, ffnWidthOf(b), b.heads, b.headDim);
  });
  if (spec.tiedHead && last.width !== eEmb) ms += model.projectionMs(last.width, eEmb);
  ms += model.headMs(spec.tiedHead ? eEmb : last.width, spec.vocabSize);
  return ms;
}
