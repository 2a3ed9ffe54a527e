// Measured latency model: a device's measured layer table (latency-table.ts) where it has entries,
// elsewhere the roofline calibrated on the measured entries.
import { ValidationError } from '../../common/errors.ts';
import type { HeadShape, LatencyLayerShape, LatencyModel } from './latency-model.ts';
import type { LayerLatencyTable } from './latency-table.ts';

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/**
 * Uses measured entries where the table has them; elsewhere the roofline times the median ratio
 * measured / roofline over all measured entries, so a few measurements correct the whole model.
 */
export class MeasuredLatencyModel implements LatencyModel {
  readonly kind = 'measured' as const;
  readonly seqLen: number;
  /** Median measured / roofline ratio applied to entries not in the table. */
  readonly calibration: number;
  private readonly layers = new Map<string, number>();
  private readonly heads = new Map<string, number>();
  private readonly projections = new Map<string, number>();

  constructor(
    table: LayerLatencyTable,
    private readonly fallback: LatencyModel,
  ) {
    if (fallback.seqLen !== table.seqLen) {
      throw new ValidationError(`layer latency table was measured at seqLen ${table.seqLen} but the search uses seqLen ${fallback.seqLen}; they must match`);
    }
    this.seqLen = table.seqLen;
    const ratios: number[] = [];
    for (const l of table.layers) {
      this.layers.set(`${l.width}/${l.ffnWidth}/${l.heads}/${l.headDim}`, l.ms);
      ratios.push(l.ms / fallback.layerMs(l.width, l.ffnWidth, l.heads, l.headDim));
    }
    for (const h of table.heads) {
      this.heads.set(`${h.width}/${h.vocabSize}`, h.ms);
      ratios.push(h.ms / fallback.headMs(h.width, h.vocabSize));
    }
    for (const p of table.projections) {
      this.projections.set(`${p.inWidth}/${p.outWidth}`, p.ms);
      ratios.push(p.ms / fallback.projectionMs(p.inWidth, p.outWidth));
    }
    this.calibration = ratios.length > 0 ? median(ratios) : 1;
  }

  /** Table entries are GPT-2 layers; any other layer kind uses the calibrated roofline. */
  layerMs(width: number, ffnWidth: number, heads: number, headDim: number, shape?: LatencyLayerShape): number {
    const measured = isGpt2Layer(heads * headDim, shape) ? this.layers.get(`${width}/${ffnWidth}/${heads}/${headDim}`) : undefined;
    return measured ?? this.calibration * this.fallback.layerMs(width, ffnWidth, heads, headDim, shape);
  }

  projectionMs(inWidth: number, outWidth: number, bias?: boolean): number {
    return this.projections.get(`${inWidth}/${outWidth}`) ?? this.calibration * this.fallback.projectionMs(inWidth, outWidth, bias);
  }

  headMs(width: number, vocabSize: number, shape?: HeadShape): number {
    return this.heads.get(`${width}/${vocabSize}`) ?? this.calibration * this.fallback.headMs(width, vocabSize, shape);
  }
}

/** Whether a layer shape is the GPT-2 layer the table's entries measure. */
function isGpt2Layer(attentionWidth: number, shape: LatencyLayerShape | undefined): boolean {
  if (!shape) return true;
  return (
    (shape.kvWidth ?? attentionWidth) === attentionWidth &&
    (shape.norm ?? 'layernorm') === 'layernorm' &&
    (shape.mlp ?? 'gelu') === 'gelu' &&
    shape.qkvBias !== false &&
    shape.outputBias !== false &&
    !shape.rotary
  );
}
