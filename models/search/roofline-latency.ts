// Roofline latency model (Williams, Waterman & Patterson, CACM 52(4), 2009): each operator of a
// decode step takes max(FLOPs / attained compute, bytes / attained bandwidth) plus a fixed dispatch cost.
import { DEFAULT_SEQ_LEN, kvBytesPerValueOf } from '../arch/accounting.ts';
import { weightByteModel, type WeightByteModel, type WeightStorage } from '../arch/weight-storage.ts';
import type { ComputeUnit } from './device-profiles.ts';
import type { HeadShape, LatencyLayerShape, LatencyModel } from './latency-model.ts';

/** Options of the roofline model. */
export interface RooflineOptions {
  seqLen?: number;
  /** Every weight at this many bytes (default 4); ignored when `weights` is given. */
  bytesPerWeight?: number;
  /** The weights as they ship: bytes read per token follow its layout (weight-storage.ts). */
  weights?: WeightStorage;
  /** Bytes per K/V cache value (default: bytesPerWeight, or kvBytesPerValueOf(weights)). */
  kvBytesPerValue?: number;
}

/** Roofline model of one compute unit. */
export class RooflineLatencyModel implements LatencyModel {
  readonly kind = 'roofline' as const;
  readonly seqLen: number;
  private readonly flopsPerS: number;
  private readonly bytesPerS: number;
  private readonly overheadS: number;
  private readonly by: WeightByteModel;
  private readonly kvBytes: number;

  constructor(unit: ComputeUnit, options: RooflineOptions = {}) {
    this.seqLen = options.seqLen ?? DEFAULT_SEQ_LEN;
    this.flopsPerS = unit.peakFlops * unit.computeEfficiency;
    this.bytesPerS = unit.memoryBandwidth * unit.memoryEfficiency;
    this.overheadS = unit.opOverheadS;
    const w = options.weights ?? options.bytesPerWeight ?? 4;
    this.by = weightByteModel(w);
    this.kvBytes = options.kvBytesPerValue ?? (typeof w === 'number' ? w : kvBytesPerValueOf(w));
  }

  /** One operator: max of compute time and memory time, plus dispatch. */
  private op(flops: number, bytes: number): number {
    return Math.max(flops / this.flopsPerS, bytes / this.bytesPerS) + this.overheadS;
  }

  layerMs(width: number, ffnWidth: number, heads: number, headDim: number, shape: LatencyLayerShape = {}): number {
    const e = width;
    const a = heads * headDim;
    const kv = shape.kvWidth ?? a;
    const f = ffnWidth;
    const s = this.seqLen;
    const by = this.by;
    const qkvBias = shape.qkvBias ?? true;
    const outBias = shape.outputBias ?? true;
    const act = 4 * e; // one float32 activation row, read by the norm and the residual add
    let t = 0;
    // Norm weights (E or 2E values) are not counted, as before: a rounding error next to the matrices.
    t += this.op(5 * e, 2 * act); // LN1 / RMSNorm 1
    t += this.op(2 * e * (a + 2 * kv), by.linear(e, a) + 2 * by.linear(e, kv) + (qkvBias ? by.float(a + 2 * kv) : 0)); // Q, K, V
    if (shape.rotary) t += this.op(3 * (a + kv), 2 * 4 * (a + kv)); // rotate Q and K in place
    t += this.op(4 * s * a, this.kvBytes * 2 * s * kv); // scores and weighted sum over the cache (K/V at kvHeads)
    t += this.op(2 * a * e, by.linear(a, e) + (outBias ? by.float(e) : 0)); // output projection
    t += this.op(e, 3 * act); // residual add
    t += this.op(5 * e, 2 * act); // LN2 / RMSNorm 2
    if (shape.mlp === 'swiglu') {
      t += this.op(2 * e * 2 * f, 2 * by.linear(e, f) + (outBias ? by.float(2 * f) : 0)); // gate and up
      t += this.op(2 * f, 3 * 4 * f); // silu(gate) x up
    } else {
      t += this.op(2 * e * f, by.linear(e, f) + (outBias ? by.float(f) : 0)); // FFN up (+ GELU)
    }
    t += this.op(2 * f * e, by.linear(f, e) + (outBias ? by.float(e) : 0)); // FFN down
    t += this.op(e, 3 * act); // residual add
    return t * 1000;
  }

  projectionMs(inWidth: number, outWidth: number, bias = true): number {
    return this.op(2 * inWidth * outWidth, this.by.linear(inWidth, outWidth) + (bias ? this.by.float(outWidth) : 0)) * 1000;
  }

  headMs(width: number, vocabSize: number, shape: HeadShape = {}): number {
    const by = this.by;
    const embed = this.op(0, by.embedding(1, width) + (shape.rotary ? 0 : by.float(width))); // token (+ position) row
    const ln = this.op(5 * width, 8 * width);
    const weights = shape.tied ? by.embedding(vocabSize, width) : by.linear(width, vocabSize);
    const head = this.op(2 * width * vocabSize, weights + 4 * vocabSize);
    return (embed + ln + head) * 1000;
  }
}
