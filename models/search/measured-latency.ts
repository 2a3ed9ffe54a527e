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

/** Points (KV length, ms) of one table key. */
type Curve = Array<{ seqLen: number; ms: number }>;

function addPoint(map: Map<string, Curve>, key: string, seqLen: number, value: number): void {
  const c = map.get(key) ?? [];
  c.push({ seqLen, ms: value });
  map.set(key, c);
}

/**
 * A curve's value at `s`: the point measured there, else the straight line through the two measured
 * KV lengths nearest `s` (attention over the cache grows linearly with its length); undefined when
 * the curve has one point elsewhere (`anyLength` takes that point: costs that do not read the cache).
 */
function valueAt(c: Curve | undefined, s: number, anyLength = false): number | undefined {
  if (!c || c.length === 0) return undefined;
  const exact = c.find((p) => p.seqLen === s);
  if (exact) return exact.ms;
  const lengths = [...new Set(c.map((p) => p.seqLen))];
  if (lengths.length < 2) return anyLength ? c[0]!.ms : undefined;
  const nearest = lengths.sort((a, b) => Math.abs(a - s) - Math.abs(b - s) || a - b).slice(0, 2);
  const [a, b] = nearest.map((l) => c.find((p) => p.seqLen === l)!);
  const v = a!.ms + ((b!.ms - a!.ms) * (s - a!.seqLen)) / (b!.seqLen - a!.seqLen);
  // A line through two noisy points can dip below zero far outside them; never below the smaller point's tenth.
  return Math.max(v, 0.1 * Math.min(a!.ms, b!.ms));
}

/**
 * Uses measured entries where the table has them (at the search's KV length, or interpolated between
 * two measured KV lengths); elsewhere the roofline times the median ratio measured / roofline over all
 * usable entries, so a few measurements correct the whole model.
 */
export class MeasuredLatencyModel implements LatencyModel {
  readonly kind = 'measured' as const;
  readonly seqLen: number;
  /** Median measured / roofline ratio applied to entries not in the table. */
  readonly calibration: number;
  /** Table entries (layers, heads, projections) usable at this seqLen. */
  readonly measuredEntries: number;
  private readonly layers = new Map<string, number>();
  private readonly heads = new Map<string, number>();
  private readonly projections = new Map<string, number>();

  constructor(
    table: LayerLatencyTable,
    private readonly fallback: LatencyModel,
  ) {
    const s = fallback.seqLen;
    const layerCurves = new Map<string, Curve>();
    const headCurves = new Map<string, Curve>();
    for (const l of table.layers) addPoint(layerCurves, `${l.width}/${l.ffnWidth}/${l.heads}/${l.headDim}`, l.seqLen ?? table.seqLen, l.ms);
    for (const h of table.heads) addPoint(headCurves, `${h.width}/${h.vocabSize}`, h.seqLen ?? table.seqLen, h.ms);
    const ratios: number[] = [];
    for (const [key, curve] of layerCurves) {
      const v = valueAt(curve, s);
      if (v === undefined) continue;
      this.layers.set(key, v);
      const [width, ffnWidth, heads, headDim] = key.split('/').map(Number) as [number, number, number, number];
      ratios.push(v / fallback.layerMs(width, ffnWidth, heads, headDim));
    }
    if (layerCurves.size > 0 && this.layers.size === 0) {
      throw new ValidationError(
        `layer latency table was measured at seqLen ${table.seqLen} but the search uses seqLen ${s}; they must match (or the table must time each layer at two KV lengths to interpolate)`,
      );
    }
    this.seqLen = s;
    // The head does not read the cache: a single measured KV length serves every seqLen.
    for (const [key, curve] of headCurves) {
      const v = valueAt(curve, s, true)!;
      this.heads.set(key, v);
      const [width, vocabSize] = key.split('/').map(Number) as [number, number];
      ratios.push(v / fallback.headMs(width, vocabSize));
    }
    for (const p of table.projections) {
      this.projections.set(`${p.inWidth}/${p.outWidth}`, p.ms);
      ratios.push(p.ms / fallback.projectionMs(p.inWidth, p.outWidth));
    }
    this.measuredEntries = this.layers.size + this.heads.size + this.projections.size;
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
