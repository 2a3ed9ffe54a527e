// The search's evaluator: per-choice costs precomputed into typed arrays, so scoring a genome
// (every budget figure, latency and entropy) allocates nothing; and the genome's layout and spec.
import { parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import { layerParameters, layerWeightBytes, normParameters, ROTARY_FLOPS_PER_VALUE, SWIGLU_FLOPS_PER_UNIT, type LayerShape } from '../arch/accounting.ts';
import { weightByteModel, type WeightByteModel } from '../arch/weight-storage.ts';
import { attentionEntropy, ffnEntropy } from '../entropy/network-entropy.ts';
import { matrixEntropy } from '../entropy/matrix-entropy.ts';
import type { LatencyModel } from './latency-model.ts';
import type { ResolvedOptions } from './options.ts';
import { SEARCH_OBJECTIVES } from './objective.ts';

/** Genes per block: width index, ffn ratio index, layers, heads, shared (0/1), K/V heads (llama). */
export const G = 6;
/** Mutation codes: the gene a step changes (GENE_KV only in the llama family). */
export const GENE_SHARE = 4;
export const GENE_KV = 5;

// The objectives as numbers, so evaluate() switches on integers.
const OBJECTIVE_ENTROPY = SEARCH_OBJECTIVES.indexOf('entropy');
const OBJECTIVE_ENTROPY_EMBEDDING = SEARCH_OBJECTIVES.indexOf('entropy-embedding');
const OBJECTIVE_PARAMS = SEARCH_OBJECTIVES.indexOf('params');
const OBJECTIVE_DECODER_PARAMS = SEARCH_OBJECTIVES.indexOf('decoder-params');

/** Precomputed per-choice costs and the allocation-free evaluator of a genome. */
export class Evaluator {
  readonly nw: number;
  readonly nr: number;
  readonly mh: number;
  /** Query-head slots per width in the tables: maxHeads (gpt), the most heads any width allows (llama). */
  readonly hdim: number;
  /** K/V head slots per query-head count: the most divisors of any head count (llama), or 1 (gpt: K/V = Q). */
  readonly mkv: number;
  readonly llama: boolean;
  readonly widths: Float64Array;
  readonly ffnWidths: Float64Array; // [w * nr + r]
  readonly maxHeadsFor: Int32Array; // [w]
  readonly minHeadsFor: Int32Array; // [w]; above maxHeadsFor[w] when width w cannot meet the attention floor
  readonly divisors: Int32Array; // [(h - 1) * mkv + slot]: the divisors of h, ascending (the K/V head choices; llama)
  readonly divisorCount: Int32Array; // [h - 1]
  private readonly kvSlots: Int32Array; // [(h - 1) * hdim + kv - 1]: slot of kv among h's divisors, -1 if none
  readonly attH: Float64Array; // [(w * hdim + h - 1) * mkv + slot], alpha applied
  readonly ffnH: Float64Array; // [w * nr + r], alpha applied
  /** Entropy of the token embedding and the LM head by first-block width [w] (or last, untied: [nw + w]); entropy-embedding objective only. */
  readonly embH: Float64Array;
  /** The objective's index in SEARCH_OBJECTIVES. */
  private readonly objective: number;
  readonly layerP: Float64Array; // parameters of one layer, [layer index]
  readonly layerB: Float64Array | null; // shipped bytes of one layer, [layer index]; null with a uniform bytesPerWeight
  readonly layerMs: Float64Array | null; // [layer index]
  readonly projMs: Float64Array | null; // [w1 * nw + w2]
  readonly headMs: Float64Array | null; // [w]
  // With a fixed embedding width: project_in from it, project_out to it, and the tied head.
  readonly projInMs: Float64Array | null = null;
  readonly projOutMs: Float64Array | null = null;
  readonly headEmbMs: number = 0;
  private readonly by: WeightByteModel | null;
  // Outputs of the last evaluate().
  params = 0;
  flops = 0;
  memory = 0;
  weightBytes = 0;
  latency = 0;
  entropy = 0;
  rho = 0;
  /** The objective's value (what the population is sorted by). */
  score = 0;
  /** Whether every block meets the attention-width floor. */
  attentionOk = true;

  constructor(
    private readonly o: ResolvedOptions,
    readonly latencyModel: LatencyModel | null,
  ) {
    const nw = (this.nw = o.widths.length);
    const nr = (this.nr = o.ffnRatios.length);
    const mh = (this.mh = o.maxHeads);
    const llama = (this.llama = o.family === 'llama');
    this.by = o.storage ? weightByteModel(o.storage) : null;
    this.widths = Float64Array.from(o.widths);
    this.ffnWidths = new Float64Array(nw * nr);
    this.maxHeadsFor = new Int32Array(nw);
    this.minHeadsFor = new Int32Array(nw);
    for (let w = 0; w < nw; w++) {
      const e = o.widths[w]!;
      this.maxHeadsFor[w] = Math.max(1, Math.min(mh, Math.floor(e / o.headDim)));
      // The small tolerance keeps e.g. 0.25 x 256 / 64 = 1 from rounding up to 2.
      this.minHeadsFor[w] = Math.max(1, Math.ceil((o.minAttentionRatio * e) / o.headDim - 1e-9));
    }
    // Llama tables hold only reachable head counts and, per head count, its divisors (at most 6 up to 32 heads).
    const hdim = (this.hdim = llama ? Math.max(...this.maxHeadsFor) : mh);
    let mostDivisors = 1;
    if (llama) for (let h = 1; h <= hdim; h++) mostDivisors = Math.max(mostDivisors, divisorCountOf(h));
    const mkv = (this.mkv = mostDivisors);
    this.divisors = new Int32Array(llama ? hdim * mkv : 0);
    this.divisorCount = new Int32Array(llama ? hdim : 0);
    this.kvSlots = new Int32Array(llama ? hdim * hdim : 0).fill(-1);
    if (llama) {
      for (let h = 1; h <= hdim; h++) {
        for (let d = 1; d <= h; d++) {
          if (h % d !== 0) continue;
          this.kvSlots[(h - 1) * hdim + d - 1] = this.divisorCount[h - 1]!;
          this.divisors[(h - 1) * mkv + this.divisorCount[h - 1]++] = d;
        }
      }
    }
    this.attH = new Float64Array(nw * hdim * mkv);
    this.ffnH = new Float64Array(nw * nr);
    const mat = { sigma: o.sigma, eps: o.eps };
    const mlp = llama ? 'swiglu' : 'gelu';
    for (let w = 0; w < nw; w++) {
      const e = o.widths[w]!;
      for (let r = 0; r < nr; r++) {
        const f = Math.round(o.ffnRatios[r]! * e);
        this.ffnWidths[w * nr + r] = f;
        this.ffnH[w * nr + r] = o.alphaFfn * ffnEntropy(e, f, mat, mlp);
      }
      if (!llama) {
        for (let h = 1; h <= mh; h++) this.attH[w * mh + h - 1] = o.alphaAttention * attentionEntropy(e, h * o.headDim, mat);
        continue;
      }
      // Llama: H(E x j headDim) once per j, then Q and output at h heads, K and V at each divisor k of h.
      const hj = new Float64Array(hdim + 1);
      for (let j = 1; j <= hdim; j++) hj[j] = matrixEntropy(e, j * o.headDim, mat);
      for (let h = 1; h <= hdim; h++) {
        for (let i = 0; i < this.divisorCount[h - 1]!; i++) {
          const k = this.divisors[(h - 1) * mkv + i]!;
          this.attH[(w * hdim + h - 1) * mkv + i] = o.alphaAttention * (k === h ? 4 * hj[h]! : 2 * hj[h]! + 2 * hj[k]!);
        }
      }
    }
    this.objective = SEARCH_OBJECTIVES.indexOf(o.objective);
    this.embH = new Float64Array(2 * nw);
    if (o.objective === 'entropy-embedding') {
      // Same expression as embeddingHeadEntropy (network-entropy.ts), per width.
      for (let w = 0; w < nw; w++) {
        const e = o.widths[w]!;
        const emb = matrixEntropy(o.vocabSize, o.embeddingWidth ?? e, mat);
        this.embH[w] = o.tiedHead ? 2 * emb : emb;
        this.embH[nw + w] = o.tiedHead ? 0 : matrixEntropy(e, o.vocabSize, mat);
      }
    }
    const cells = nw * nr * hdim * mkv;
    this.layerP = new Float64Array(cells);
    this.layerB = this.by ? new Float64Array(cells) : null;
    this.layerMs = latencyModel ? new Float64Array(cells) : null;
    const shapes = Array.from({ length: mh + 1 }, (_, kv) => ({ ...this.shapeOf(kv), rotary: llama }));
    for (let w = 0; w < nw; w++) {
      const e = o.widths[w]!;
      for (let r = 0; r < nr; r++) {
        const f = this.ffnWidths[w * nr + r]!;
        for (let h = 1; h <= this.maxHeadsFor[w]!; h++) {
          for (let k = 1; k <= (llama ? h : 1); k++) {
            if (llama && h % k !== 0) continue;
            const kv = llama ? k : h;
            const shape = shapes[llama ? kv : 0]!;
            const cell = this.cell(w, r, h, kv);
            this.layerP[cell] = layerParameters(e, h * o.headDim, f, shape);
            if (this.layerB) this.layerB[cell] = layerWeightBytes(e, h * o.headDim, f, shape, this.by!);
            if (this.layerMs) this.layerMs[cell] = latencyModel!.layerMs(e, f, h, o.headDim, shape);
          }
        }
      }
    }
    if (latencyModel) {
      const bias = !llama;
      this.projMs = new Float64Array(nw * nw);
      this.headMs = new Float64Array(nw);
      const head = { tied: o.tiedHead, rotary: llama };
      if (o.embeddingWidth !== undefined) this.headEmbMs = latencyModel.headMs(o.embeddingWidth, o.vocabSize, head);
      for (let w = 0; w < nw; w++) {
        const e = o.widths[w]!;
        this.headMs[w] = latencyModel.headMs(e, o.vocabSize, head);
        if (o.embeddingWidth !== undefined) {
          this.projInMs ??= new Float64Array(nw);
          this.projOutMs ??= new Float64Array(nw);
          this.projInMs[w] = latencyModel.projectionMs(o.embeddingWidth, e, bias);
          this.projOutMs[w] = latencyModel.projectionMs(e, o.embeddingWidth, bias);
        }
        for (let w2 = 0; w2 < nw; w2++) this.projMs[w * nw + w2] = latencyModel.projectionMs(e, o.widths[w2]!, bias);
      }
    } else {
      this.projMs = this.headMs = null;
    }
  }

  /** The layer kind of this search's family with `kvHeads` K/V heads. */
  shapeOf(kvHeads: number): LayerShape {
    if (!this.llama) return {};
    return { kvWidth: kvHeads * this.o.headDim, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false };
  }

  /** Index of a (width, ratio, heads, K/V heads) choice in the per-layer tables. */
  cell(w: number, r: number, h: number, kv: number): number {
    return ((w * this.nr + r) * this.hdim + h - 1) * this.mkv + this.slot(h, kv);
  }

  /** Slot of `kv` K/V heads among the choices for `heads` query heads (0 in the gpt family). */
  slot(heads: number, kv: number): number {
    return this.llama ? this.kvSlots[(heads - 1) * this.hdim + kv - 1]! : 0;
  }

  /** The largest divisor of `heads` not above `kv` (the K/V head count after the query heads change). */
  fitKv(heads: number, kv: number): number {
    const base = (heads - 1) * this.mkv;
    let best = 1;
    for (let i = 0; i < this.divisorCount[heads - 1]!; i++) {
      const d = this.divisors[base + i]!;
      if (d <= kv) best = d;
    }
    return best;
  }

  /** Computes every cost of the genome at `off` into this object's fields (no allocation). */
  evaluate(g: Int32Array, off: number): void {
    const o = this.o;
    const by = this.by;
    const llama = this.llama;
    const nb = o.blocks;
    const s = o.seqLen;
    const hd = o.headDim;
    const w0 = g[off]!;
    const e0 = this.widths[w0]!;
    const fixedEmb = o.embeddingWidth;
    const eEmb = fixedEmb ?? e0;
    // Rotary positions have no table.
    const posRows = llama ? 0 : o.contextLength;
    let params = (o.vocabSize + posRows) * eEmb;
    let bytes = by ? by.embedding(o.vocabSize, eEmb) + by.float(posRows * eEmb) : 0;
    let flops = 0;
    let kv = 0;
    let ms = 0;
    if (eEmb !== e0) {
      params += eEmb * e0;
      if (by) bytes += by.linear(eEmb, e0);
      flops += 2 * s * eEmb * e0;
      if (this.projInMs) ms += this.projInMs[w0]!;
    }
    let entropy = 0;
    let layers = 0;
    let widthSum = 0;
    let prevW = -1;
    let attentionOk = true;
    for (let b = 0; b < nb; b++) {
      const p = off + b * G;
      const w = g[p]!;
      const r = g[p + 1]!;
      const l = g[p + 2]!;
      const h = g[p + 3]!;
      const kvh = llama ? g[p + 5]! : h;
      const e = this.widths[w]!;
      const a = h * hd;
      const akv = kvh * hd;
      const f = this.ffnWidths[w * this.nr + r]!;
      if (h < this.minHeadsFor[w]! || h > this.maxHeadsFor[w]!) attentionOk = false;
      if (prevW >= 0 && prevW !== w) {
        const pe = this.widths[prevW]!;
        // Llama-family blocks have no output biases, so their projections have none either.
        params += pe * e + (llama ? 0 : e);
        if (by) bytes += by.linear(pe, e) + (llama ? 0 : by.float(e));
        flops += 2 * s * pe * e;
        if (this.projMs) ms += this.projMs[prevW * this.nw + w]!;
      }
      const cell = this.cell(w, r, h, kvh);
      const copies = g[p + 4] ? 1 : l;
      params += this.layerP[cell]! * copies;
      if (this.layerB) bytes += this.layerB[cell]! * copies;
      if (llama) {
        flops +=
          l * 2 * s * (2 * e * a + 2 * e * akv) +
          l * 2 * (2 * s * s * a) +
          l * 2 * s * (3 * e * f) +
          l * ROTARY_FLOPS_PER_VALUE * s * (a + akv) +
          l * SWIGLU_FLOPS_PER_UNIT * s * f;
      } else {
        flops += l * 2 * s * (4 * e * a) + l * 2 * (2 * s * s * a) + l * 2 * s * (2 * e * f);
      }
      kv += l * 2 * s * akv;
      if (this.layerMs) ms += l * this.layerMs[cell]!;
      entropy += l * (this.attH[(w * this.hdim + h - 1) * this.mkv + this.slot(h, kvh)]! + this.ffnH[w * this.nr + r]!);
      layers += l;
      widthSum += l * e;
      prevW = w;
    }
    const eLast = this.widths[prevW]!;
    const finalNorm = normParameters(eLast, llama ? 'rmsnorm' : 'layernorm');
    params += finalNorm;
    if (by) bytes += by.float(finalNorm);
    if (o.tiedHead) {
      if (eLast !== eEmb) {
        params += eLast * eEmb;
        if (by) bytes += by.linear(eLast, eEmb);
        flops += 2 * s * eLast * eEmb;
        if (this.projMs) ms += fixedEmb === undefined ? this.projMs[prevW * this.nw + w0]! : this.projOutMs![prevW]!;
      }
      flops += 2 * s * eEmb * o.vocabSize;
      if (this.headMs) ms += fixedEmb === undefined ? this.headMs[w0]! : this.headEmbMs;
    } else {
      params += eLast * o.vocabSize;
      if (by) bytes += by.linear(eLast, o.vocabSize);
      flops += 2 * s * eLast * o.vocabSize;
      if (this.headMs) ms += this.headMs[prevW]!;
    }
    this.params = params;
    this.flops = flops;
    if (by) {
      this.weightBytes = bytes;
      this.memory = bytes + kv * o.kvBytesPerValue;
    } else {
      this.weightBytes = params * o.bytesPerWeight;
      this.memory = params * o.bytesPerWeight + kv * o.bytesPerWeight;
    }
    this.latency = ms;
    this.entropy = entropy;
    switch (this.objective) {
      case OBJECTIVE_ENTROPY:
        this.score = entropy;
        break;
      case OBJECTIVE_ENTROPY_EMBEDDING:
        this.score = entropy + this.embH[w0]! + this.embH[this.nw + prevW]!;
        break;
      case OBJECTIVE_PARAMS:
        this.score = params;
        break;
      case OBJECTIVE_DECODER_PARAMS:
        this.score = params - (o.vocabSize + posRows) * eEmb;
        break;
      default:
        this.score = flops;
    }
    // rho = L / (16 log2 E) with L all layers and E their mean width (models/entropy/effectiveness.ts).
    this.rho = layers / (16 * Math.log2(widthSum / layers));
    this.attentionOk = attentionOk;
  }

  /** Whether the last evaluated genome meets every budget. */
  feasible(): boolean {
    const bu = this.o.budgets;
    return (
      (bu.params === undefined || this.params <= bu.params) &&
      (bu.flops === undefined || this.flops <= bu.flops) &&
      (bu.decodeMemoryBytes === undefined || this.memory <= bu.decodeMemoryBytes) &&
      (bu.latencyMs === undefined || this.latency <= bu.latencyMs) &&
      this.rho <= this.o.rhoMax &&
      this.attentionOk
    );
  }
}

function divisorCountOf(n: number): number {
  let c = 0;
  for (let d = 1; d <= n; d++) if (n % d === 0) c++;
  return c;
}

/** Builds the spec a genome describes. */
export function genomeToSpec(g: Int32Array, off: number, o: ResolvedOptions, name: string): ArchSpec {
  const llama = o.family === 'llama';
  const blocks = [];
  for (let b = 0; b < o.blocks; b++) {
    const p = off + b * G;
    blocks.push({
      width: o.widths[g[p]!]!,
      ffnRatio: o.ffnRatios[g[p + 1]!]!,
      layers: g[p + 2]!,
      heads: g[p + 3]!,
      headDim: o.headDim,
      shareWeights: g[p + 4] === 1 && g[p + 2]! > 1,
      ...(llama ? { kvHeads: g[p + 5]!, norm: 'rmsnorm' as const, mlp: 'swiglu' as const, qkvBias: false, outputBias: false } : {}),
    });
  }
  const positions = llama ? { positions: 'rotary' as const, ropeTheta: o.ropeTheta } : {};
  return parseArchSpec({ name, vocabSize: o.vocabSize, contextLength: o.contextLength, embeddingWidth: o.embeddingWidth, blocks, tiedHead: o.tiedHead, ...positions });
}
