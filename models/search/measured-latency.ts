// Measured latency model: a device's measured layer table (latency-table.ts) where it has entries,
// elsewhere the roofline calibrated on the measured entries: for layers a fixed per-layer cost plus a
// scale (fitted by least squares), for projections and the head the median measured / roofline ratio.
// GPT-2 and Llama-family entries are kept apart: each family's layers use its own entries and its own fit.
import { ValidationError } from '../../common/errors.ts';
import type { HeadShape, LatencyLayerShape, LatencyModel } from './latency-model.ts';
import { entryFamilyOf, entryKvHeadsOf, type LayerLatencyTable } from './latency-table.ts';

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Points (KV length, ms) of one table key. */
type Curve = Array<{ seqLen: number; ms: number }>;

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

/** The Llama-family layer a llama table entry measures: RMSNorm, SwiGLU, no biases, rotary, K/V at `kvHeads`. */
export function llamaLayerShape(kvHeads: number, headDim: number): LatencyLayerShape {
  return { kvWidth: kvHeads * headDim, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false, rotary: true };
}

/** The head a llama head entry measures: tied, rotary (no position row). */
const LLAMA_HEAD: HeadShape = { tied: true, rotary: true };

// gpt2 keys are those of tables before families; llama keys add the K/V heads.
const gpt2Key = (width: number, ffnWidth: number, heads: number, headDim: number): string => `${width}/${ffnWidth}/${heads}/${headDim}`;
const llamaKey = (width: number, ffnWidth: number, heads: number, kvHeads: number, headDim: number): string => `llama ${width}/${ffnWidth}/${heads}/${kvHeads}/${headDim}`;

/**
 * Uses measured entries where the table has them (at the search's KV length, or interpolated between
 * two measured KV lengths). Other GPT-2 layers cost the fitted per-layer cost plus the scaled roofline
 * (fitLayerCost), and other Llama-family layers the fit of the table's llama entries (when it has
 * any); projections, heads and other layer kinds the roofline times the median ratio measured /
 * roofline over all usable entries, so a few measurements correct the whole model.
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
  /** Cost of Llama-family layers the table lacks; null when the table has no llama layer entries. */
  readonly llamaLayerFit: LayerFit | null;
  private readonly layers = new Map<string, number>();
  private readonly heads = new Map<string, number>();
  private readonly llamaHeads = new Map<string, number>();
  private readonly projections = new Map<string, number>();

  constructor(
    table: LayerLatencyTable,
    private readonly fallback: LatencyModel,
  ) {
    const s = fallback.seqLen;
    const layerCurves = new Map<string, { curve: Curve; roofline: () => number; llama: boolean }>();
    const headCurves = new Map<string, { curve: Curve; roofline: () => number; into: Map<string, number>; key: string }>();
    for (const l of table.layers) {
      const llama = entryFamilyOf(l) === 'llama';
      const kv = entryKvHeadsOf(l);
      const key = llama ? llamaKey(l.width, l.ffnWidth, l.heads, kv, l.headDim) : gpt2Key(l.width, l.ffnWidth, l.heads, l.headDim);
      const roofline = llama ? () => fallback.layerMs(l.width, l.ffnWidth, l.heads, l.headDim, llamaLayerShape(kv, l.headDim)) : () => fallback.layerMs(l.width, l.ffnWidth, l.heads, l.headDim);
      const c = layerCurves.get(key) ?? { curve: [], roofline, llama };
      c.curve.push({ seqLen: l.seqLen ?? table.seqLen, ms: l.ms });
      layerCurves.set(key, c);
    }
    for (const h of table.heads) {
      const llama = entryFamilyOf(h) === 'llama';
      const key = `${h.width}/${h.vocabSize}`;
      const roofline = llama ? () => fallback.headMs(h.width, h.vocabSize, LLAMA_HEAD) : () => fallback.headMs(h.width, h.vocabSize);
      const c = headCurves.get(`${llama ? 'llama ' : ''}${key}`) ?? { curve: [], roofline, into: llama ? this.llamaHeads : this.heads, key };
      c.curve.push({ seqLen: h.seqLen ?? table.seqLen, ms: h.ms });
      headCurves.set(`${llama ? 'llama ' : ''}${key}`, c);
    }
    const ratios: number[] = [];
    const gpt2Points: Array<{ roofline: number; ms: number }> = [];
    const llamaPoints: Array<{ roofline: number; ms: number }> = [];
    for (const [key, c] of layerCurves) {
      const v = valueAt(c.curve, s);
      if (v === undefined) continue;
      this.layers.set(key, v);
      const roofline = c.roofline();
      ratios.push(v / roofline);
      (c.llama ? llamaPoints : gpt2Points).push({ roofline, ms: v });
    }
    if (layerCurves.size > 0 && this.layers.size === 0) {
      throw new ValidationError(
        `layer latency table was measured at seqLen ${table.seqLen} but the search uses seqLen ${s}; they must match (or the table must time each layer at two KV lengths to interpolate)`,
      );
    }
    this.seqLen = s;
    // The head does not read the cache: a single measured KV length serves every seqLen.
    for (const c of headCurves.values()) {
      const v = valueAt(c.curve, s, true)!;
      c.into.set(c.key, v);
      ratios.push(v / c.roofline());
    }
    for (const p of table.projections) {
      this.projections.set(`${p.inWidth}/${p.outWidth}`, p.ms);
      ratios.push(p.ms / fallback.projectionMs(p.inWidth, p.outWidth));
    }
    this.measuredEntries = this.layers.size + this.heads.size + this.llamaHeads.size + this.projections.size;
    this.calibration = ratios.length > 0 ? median(ratios) : 1;
    const fitOf = (points: Array<{ roofline: number; ms: number }>): LayerFit => fitLayerCost(points, points.length > 0 ? median(points.map((p) => p.ms / p.roofline)) : this.calibration);
    this.layerFit = fitOf(gpt2Points);
    this.llamaLayerFit = llamaPoints.length > 0 ? fitOf(llamaPoints) : null;
  }

  /**
   * GPT-2 layers: their entry, else the GPT-2 fit. Llama-family layers: their entry (same K/V heads),
   * else the llama fit when the table has llama entries. Anything else (or a llama layer and a table
   * without llama entries): the ratio-calibrated roofline.
   */
  layerMs(width: number, ffnWidth: number, heads: number, headDim: number, shape?: LatencyLayerShape): number {
    const roofline = this.fallback.layerMs(width, ffnWidth, heads, headDim, shape);
    if (isGpt2Layer(heads * headDim, shape)) return this.layers.get(gpt2Key(width, ffnWidth, heads, headDim)) ?? this.layerFit.fixedMs + this.layerFit.scale * roofline;
    const kvHeads = llamaKvHeadsOf(heads, headDim, shape);
    if (kvHeads !== null) {
      const measured = this.layers.get(llamaKey(width, ffnWidth, heads, kvHeads, headDim));
      if (measured !== undefined) return measured;
      if (this.llamaLayerFit) return this.llamaLayerFit.fixedMs + this.llamaLayerFit.scale * roofline;
    }
    return this.calibration * roofline;
  }

  projectionMs(inWidth: number, outWidth: number, bias?: boolean): number {
    return this.projections.get(`${inWidth}/${outWidth}`) ?? this.calibration * this.fallback.projectionMs(inWidth, outWidth, bias);
  }

  /**
   * A rotary (Llama-family) head uses a llama head entry, else the GPT-2 one (the LM head's matmul
   * dominates both); a GPT-2 head only GPT-2 entries. Else the ratio-calibrated roofline.
   */
  headMs(width: number, vocabSize: number, shape?: HeadShape): number {
    const key = `${width}/${vocabSize}`;
    const measured = (shape?.rotary ? this.llamaHeads.get(key) : undefined) ?? this.heads.get(key);
    return measured ?? this.calibration * this.fallback.headMs(width, vocabSize, shape);
  }
}

/** Whether a layer shape is the GPT-2 layer the table's gpt2 entries measure. */
export function isGpt2Layer(attentionWidth: number, shape: LatencyLayerShape | undefined): boolean {
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

/** K/V heads of a layer shape when it is the Llama-family layer llama entries measure, else null. */
export function llamaKvHeadsOf(heads: number, headDim: number, shape: LatencyLayerShape | undefined): number | null {
  if (!shape || shape.norm !== 'rmsnorm' || shape.mlp !== 'swiglu' || shape.qkvBias !== false || shape.outputBias !== false || shape.rotary !== true) return null;
  const kvWidth = shape.kvWidth ?? heads * headDim;
  const kvHeads = kvWidth / headDim;
  return Number.isInteger(kvHeads) && kvHeads >= 1 && heads % kvHeads === 0 ? kvHeads : null;
}
