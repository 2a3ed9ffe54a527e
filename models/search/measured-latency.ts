// Measured latency model: a device's measured layer table (latency-table.ts) where it has entries,
// elsewhere the roofline calibrated on the measured entries: for layers a fixed per-layer cost plus a
// scale (fitted by least squares), for projections and the head the median measured / roofline ratio.
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

/** A layer's cost outside the table: `fixedMs + scale x roofline`. */
export interface LayerFit {
  /** Per-layer cost the roofline does not see (operator dispatch, kernel launch, graph overhead), ms. */
  fixedMs: number;
  scale: number;
  /** 'affine' (least squares over two or more distinct layer shapes) or 'ratio' (median ratio, no fixed cost). */
  kind: 'affine' | 'ratio';
}

/**
 * Least-squares `ms = fixed + scale x roofline` over measured layers. A per-layer cost is what a
 * ratio cannot express: scaling the roofline leaves narrow layers too cheap, which is what makes
 * a search pile up 60-70 of them (docs/search.md, "Depth and per-layer cost"). Falls back to the
 * ratio when the shapes cannot separate the two terms (fewer than two distinct roofline values) or
 * the fit is not physical (negative fixed cost: refitted through the origin).
 */
export function fitLayerCost(points: ReadonlyArray<{ roofline: number; ms: number }>, ratio: number): LayerFit {
  const n = points.length;
  const distinct = new Set(points.map((p) => p.roofline)).size;
  if (n < 2 || distinct < 2) return { fixedMs: 0, scale: ratio, kind: 'ratio' };
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    sx += p.roofline;
    sy += p.ms;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.roofline - mx) ** 2;
    sxy += (p.roofline - mx) * (p.ms - my);
  }
  const scale = sxy / sxx;
  const fixedMs = my - scale * mx;
  if (scale > 0 && fixedMs >= 0) return { fixedMs, scale, kind: 'affine' };
  // Through the origin: the least-squares ratio.
  let sxy0 = 0;
  let sxx0 = 0;
  for (const p of points) {
    sxy0 += p.roofline * p.ms;
    sxx0 += p.roofline * p.roofline;
  }
  return { fixedMs: 0, scale: sxy0 > 0 ? sxy0 / sxx0 : ratio, kind: 'ratio' };
}

/**
 * Uses measured entries where the table has them (at the search's KV length, or interpolated between
 * two measured KV lengths). Other GPT-2 layers cost the fitted per-layer cost plus the scaled roofline
 * (fitLayerCost); projections, heads and other layer kinds the roofline times the median ratio
 * measured / roofline over all usable entries, so a few measurements correct the whole model.
 */
export class MeasuredLatencyModel implements LatencyModel {
  readonly kind = 'measured' as const;
  readonly seqLen: number;
  /** Median measured / roofline ratio applied to entries not in the table. */
  readonly calibration: number;
  /** Table entries (layers, heads, projections) usable at this seqLen. */
  readonly measuredEntries: number;
  /** Cost of GPT-2 layers the table lacks. */
  readonly layerFit: LayerFit;
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
    const layerPoints: Array<{ roofline: number; ms: number }> = [];
    for (const [key, curve] of layerCurves) {
      const v = valueAt(curve, s);
      if (v === undefined) continue;
      this.layers.set(key, v);
      const [width, ffnWidth, heads, headDim] = key.split('/').map(Number) as [number, number, number, number];
      const roofline = fallback.layerMs(width, ffnWidth, heads, headDim);
      ratios.push(v / roofline);
      layerPoints.push({ roofline, ms: v });
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
    const layerRatios = layerPoints.map((p) => p.ms / p.roofline);
    this.layerFit = fitLayerCost(layerPoints, layerRatios.length > 0 ? median(layerRatios) : this.calibration);
  }

  /** Table entries are GPT-2 layers, and so is the fit; any other layer kind uses the ratio-calibrated roofline. */
  layerMs(width: number, ffnWidth: number, heads: number, headDim: number, shape?: LatencyLayerShape): number {
    const roofline = this.fallback.layerMs(width, ffnWidth, heads, headDim, shape);
    if (!isGpt2Layer(heads * headDim, shape)) return this.calibration * roofline;
    return this.layers.get(`${width}/${ffnWidth}/${heads}/${headDim}`) ?? this.layerFit.fixedMs + this.layerFit.scale * roofline;
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
