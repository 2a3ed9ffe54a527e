// MeRino's evolutionary architecture search (Zhao et al., AAAI 2025, Algorithm 1): maximise the
// network entropy of a block-wise decoder (GPT-2 or Llama family) subject to parameter, FLOP,
// decode-memory, latency and effectiveness budgets. Genomes live in typed arrays and every cost comes from precomputed tables,
// so 100,000 mutate-evaluate-insert steps allocate nothing and take tens of milliseconds.
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';
import { formatBytes, formatCount } from '../../common/units.ts';
import { parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import {
  countForwardFlops,
  countParameters,
  decodeMemoryBytes,
  kvBytesPerValueOf,
  layerParameters,
  layerWeightBytes,
  normParameters,
  ROTARY_FLOPS_PER_VALUE,
  SWIGLU_FLOPS_PER_UNIT,
  weightBytes,
  type LayerShape,
} from '../arch/accounting.ts';
import { weightByteModel, weightStorageOfBits, type WeightByteModel, type WeightStorage } from '../arch/weight-storage.ts';
import { attentionEntropy, ffnEntropy, networkEntropy } from '../entropy/network-entropy.ts';
import { matrixEntropy } from '../entropy/matrix-entropy.ts';
import { DEFAULT_RHO_MAX } from '../entropy/effectiveness.ts';
import { computeUnitOf, deviceProfile, DeviceProfileSchema, type DeviceProfile } from './device-profiles.ts';
import { predictLatencyMs, RooflineLatencyModel, type LatencyModel } from './latency-model.ts';
import { LayerLatencyTableSchema, MeasuredLatencyModel } from './latency-table.ts';
import { SeededRandom as Rng } from '../random.ts';

const positiveInt = z.number().int().positive();

/** Upper bounds the design must meet; any may be left out. */
export const SearchBudgetsSchema = z
  .object({
    params: z.number().positive().finite().optional(),
    flops: z.number().positive().finite().optional(),
    decodeMemoryBytes: z.number().positive().finite().optional(),
    latencyMs: z.number().positive().finite().optional(),
  })
  .strict();

function range(lo: number, hi: number, step: number): number[] {
  const out: number[] = [];
  for (let v = lo; v <= hi + 1e-9; v += step) out.push(Number(v.toFixed(6)));
  return out;
}

/** Default search space: widths 64..2048 by 64, FFN ratios 1..6 by 0.5. */
export const DEFAULT_WIDTHS: readonly number[] = range(64, 2048, 64);
export const DEFAULT_FFN_RATIOS: readonly number[] = range(1, 6, 0.5);

/**
 * Default floor on the embedding width when the search chooses it: 128, the narrowest embedding of
 * published language models trained on a GPT-2-size vocabulary (Pythia-14m: 128 for 50,304 tokens;
 * ALBERT's factorised embedding: 128 for 30,000). The tied embedding is also the LM head, and its
 * width caps the rank of the logits (the softmax bottleneck, Yang et al., ICLR 2018), which the
 * entropy objective cannot see. When even the smallest design at this floor breaks a budget, the
 * default floor drops to the widest grid width that fits; a floor the caller sets is never lowered.
 */
export const DEFAULT_MIN_EMBEDDING_WIDTH = 128;
/**
 * Default floor on attention width relative to the block width: heads x headDim >= E / 4. Published
 * decoders use heads x headDim = E; the entropy objective alone drifts to 1 head of 64 on 512-wide
 * blocks, a rank-64 bottleneck on every token mix. A quarter keeps the search's room to trade
 * attention for depth while excluding designs no one trains.
 */
export const DEFAULT_MIN_ATTENTION_RATIO = 0.25;

/** Everything the search reads; validated once. */
export const SearchOptionsSchema = z
  .object({
    budgets: SearchBudgetsSchema.default({}),
    /** A shipped device id (see device-profiles.ts) or a full profile. */
    device: z.union([z.string().min(1), DeviceProfileSchema]).optional(),
    computeUnit: z.enum(['gpu', 'cpu']).optional(),
    /** Measured per-layer latencies; replaces the roofline where it has entries. */
    latencyTable: LayerLatencyTableSchema.optional(),
    seed: z.number().int().nonnegative().max(0xffffffff).default(1),
    iterations: z.number().int().nonnegative().max(100_000_000).default(100_000),
    population: z.number().int().min(1).max(100_000).default(512),
    parentSetSize: z.number().int().min(1).max(100_000).default(64),
    blocks: z.number().int().min(1).max(16).default(3),
    /** Fixed width of token/position embeddings (and of the tied head); default: the first block's width. */
    embeddingWidth: positiveInt.optional(),
    /**
     * Floor on the embedding width when it is not fixed, i.e. on the first block's width (and so on
     * every block's). Default DEFAULT_MIN_EMBEDDING_WIDTH, lowered to fit the budgets; a value set
     * here is a hard constraint.
     */
    minEmbeddingWidth: positiveInt.optional(),
    /** Every block needs heads x headDim >= minAttentionRatio x width (0 turns the floor off). */
    minAttentionRatio: z.number().nonnegative().max(1).default(DEFAULT_MIN_ATTENTION_RATIO),
    vocabSize: positiveInt.default(50257),
    contextLength: positiveInt.default(1024),
    /** Sequence length of the FLOP count, the KV cache and the latency model (default contextLength). */
    seqLen: positiveInt.optional(),
    /** Bytes per weight and cache value, every tensor alike (default 4); exclusive with weightBits. */
    bytesPerWeight: z.number().positive().max(8).optional(),
    /**
     * Decoder family. 'gpt': LayerNorm, learned positions, GELU FFN, biases, K/V as many heads as Q.
     * 'llama': RMSNorm, rotary positions (no position table), SwiGLU FFN, no biases, and the number
     * of K/V heads searched among the divisors of the query heads (grouped-query attention).
     */
    family: z.enum(['gpt', 'llama']).default('gpt'),
    /**
     * Bits per shipped weight: 32, 16, or 8 and 4 block-quantised (models/arch/weight-storage.ts).
     * The memory budget and the latency model then count the exact bytes of that layout.
     */
    weightBits: z.union([z.literal(32), z.literal(16), z.literal(8), z.literal(4)]).optional(),
    /** Block size of 8- and 4-bit weights. */
    blockSize: z.union([z.literal(32), z.literal(64), z.literal(128)]).default(32),
    /** Rotary base of Llama-family designs. */
    ropeTheta: z.number().positive().default(10000),
    rhoMax: z.number().positive().default(DEFAULT_RHO_MAX),
    alphaAttention: z.number().nonnegative().default(1),
    alphaFfn: z.number().nonnegative().default(1),
    sigma: z.number().positive().default(1),
    eps: z.number().positive().default(1),
    widths: z.array(positiveInt).min(1).max(1024).optional(),
    ffnRatios: z.array(z.number().positive().max(64)).min(1).max(256).optional(),
    maxLayersPerBlock: z.number().int().min(1).max(256).default(32),
    maxHeads: z.number().int().min(1).max(1024).default(32),
    headDim: positiveInt.default(64),
    weightSharing: z.enum(['never', 'always', 'search']).default('never'),
    tiedHead: z.boolean().default(true),
  })
  .strict();

export type SearchBudgets = z.output<typeof SearchBudgetsSchema>;
type ParsedOptions = z.output<typeof SearchOptionsSchema>;
/** Options as a caller writes them; `onProgress` is called every few thousand iterations. */
export type SearchOptions = z.input<typeof SearchOptionsSchema> & { onProgress?: (done: number, total: number) => void };

/** The settings a result was produced with (enough to reproduce it). */
export interface SearchSettings {
  iterations: number;
  population: number;
  parentSetSize: number;
  blocks: number;
  embeddingWidth: number | null;
  /** Floor applied to the first block's width (null with a fixed embedding width). */
  minEmbeddingWidth: number | null;
  /** Why that floor: set by the caller, the default, or the default lowered so the budgets can be met. */
  minEmbeddingWidthSource: 'option' | 'default' | 'lowered-to-fit' | null;
  minAttentionRatio: number;
  vocabSize: number;
  contextLength: number;
  seqLen: number;
  /** Uniform bytes per weight and cache value; null when weightStorage says how the weights ship. */
  bytesPerWeight: number | null;
  family: 'gpt' | 'llama';
  /** The shipped weights' storage (from weightBits and blockSize), or null without weightBits. */
  weightStorage: WeightStorage | null;
  /** Bytes per K/V cache value the memory budget and latency use. */
  kvBytesPerValue: number;
  rhoMax: number;
  alphaAttention: number;
  alphaFfn: number;
  sigma: number;
  eps: number;
  widths: number[];
  ffnRatios: number[];
  maxLayersPerBlock: number;
  maxHeads: number;
  headDim: number;
  weightSharing: 'never' | 'always' | 'search';
  tiedHead: boolean;
}

/** What the search found, with every figure recomputed from the spec by the accounting code. */
export interface SearchResult {
  format: 'fleetlm/search-result@1';
  spec: ArchSpec;
  params: number;
  flops: number;
  decodeMemoryBytes: number;
  /** Bytes of the weights as they ship (weightStorage, or parameters x bytesPerWeight). */
  weightBytes: number;
  /** Network entropy in nats (models/entropy/README.md). */
  entropy: number;
  entropyAttention: number;
  entropyFfn: number;
  rho: number;
  /** Predicted per-token decode latency at seqLen on the device; null without a device. */
  latencyMs: number | null;
  budgets: SearchBudgets & { rhoMax: number };
  device: { id: string; name: string; unit: 'gpu' | 'cpu'; latencyModel: 'roofline' | 'measured' } | null;
  settings: SearchSettings;
  seed: number;
  stats: { evaluated: number; feasible: number; inserted: number; populationSize: number; elapsedMs: number };
}

const MAX_GENES = 4; // genes changed per step: 1, then each further one with probability MULTI_GENE_P
const MULTI_GENE_P = 0.6;
const G = 6; // genes per block: width index, ffn ratio index, layers, heads, shared (0/1), K/V heads (llama)
/** Mutation codes: the gene a step changes (GENE_KV only in the llama family). */
const GENE_SHARE = 4;
const GENE_KV = 5;

/** Options after defaults are resolved. */
type ResolvedOptions = ParsedOptions & {
  seqLen: number;
  widths: number[];
  ffnRatios: number[];
  bytesPerWeight: number;
  storage: WeightStorage | null;
  kvBytesPerValue: number;
};

/** Precomputed per-choice costs and the allocation-free evaluator of a genome. */
class Evaluator {
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

function resolveLatencyModel(o: ResolvedOptions, seqLen: number): { model: LatencyModel | null; device: SearchResult['device'] } {
  let profile: DeviceProfile | undefined;
  if (typeof o.device === 'string') profile = deviceProfile(o.device);
  else if (o.device) profile = o.device;
  else if (o.latencyTable) profile = deviceProfile(o.latencyTable.device);
  if (!profile) {
    if (o.budgets.latencyMs !== undefined) {
      throw new ValidationError('a latency budget needs a device: pass device (jetson-nano, jetson-orin-nano, rpi4, rpi5) or a latency table');
    }
    return { model: null, device: null };
  }
  if (o.latencyTable && o.latencyTable.device !== profile.id) {
    throw new ValidationError(`layer latency table is for device '${o.latencyTable.device}' but the search targets '${profile.id}'`);
  }
  // A table measured at one weight width says nothing exact about another.
  if (o.latencyTable && o.weightBits !== undefined && o.latencyTable.bytesPerWeight * 8 !== o.weightBits) {
    throw new ValidationError(
      `layer latency table was measured at ${o.latencyTable.bytesPerWeight * 8}-bit weights (bytesPerWeight ${o.latencyTable.bytesPerWeight}) but the search ships ${o.weightBits}-bit weights; measure at ${o.weightBits} bits or drop weightBits`,
    );
  }
  const { kind, unit } = computeUnitOf(profile, o.computeUnit ?? o.latencyTable?.unit);
  const roofline = new RooflineLatencyModel(
    unit,
    o.storage ? { seqLen, weights: o.storage, kvBytesPerValue: o.kvBytesPerValue } : { seqLen, bytesPerWeight: o.bytesPerWeight },
  );
  const model = o.latencyTable ? new MeasuredLatencyModel(o.latencyTable, roofline) : roofline;
  return { model, device: { id: profile.id, name: profile.name, unit: kind, latencyModel: model.kind } };
}

function divisorCountOf(n: number): number {
  let c = 0;
  for (let d = 1; d <= n; d++) if (n % d === 0) c++;
  return c;
}

function sortedUnique(values: readonly number[]): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}

/** Builds the spec a genome describes. */
function genomeToSpec(g: Int32Array, off: number, o: ResolvedOptions, name: string): ArchSpec {
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

/** One line per budget the smallest design in the space already breaks, naming the smallest feasible value. */
function infeasibility(ev: Evaluator, o: ResolvedOptions, smallest: string): string[] {
  const b = o.budgets;
  const out: string[] = [];
  if (b.params !== undefined && ev.params > b.params) out.push(`params budget ${formatCount(b.params)} is below the smallest feasible value ${formatCount(ev.params)} (${ev.params} parameters)`);
  if (b.flops !== undefined && ev.flops > b.flops) out.push(`FLOPs budget ${formatCount(b.flops)} is below the smallest feasible value ${formatCount(ev.flops)} (${ev.flops} FLOPs)`);
  if (b.decodeMemoryBytes !== undefined && ev.memory > b.decodeMemoryBytes) {
    out.push(`decode memory budget ${formatBytes(b.decodeMemoryBytes)} is below the smallest feasible value ${formatBytes(ev.memory)} (${ev.memory} bytes)`);
  }
  if (b.latencyMs !== undefined && ev.latency > b.latencyMs) out.push(`latency budget ${b.latencyMs} ms is below the smallest feasible value ${ev.latency.toFixed(3)} ms`);
  if (ev.rho > o.rhoMax) out.push(`rhoMax ${o.rhoMax} is below the smallest feasible value ${ev.rho.toFixed(4)}`);
  if (!ev.attentionOk) {
    out.push(`minAttentionRatio ${o.minAttentionRatio} needs more than maxHeads ${o.maxHeads} heads of ${o.headDim} (or more than the block width) at the smallest width`);
  }
  return out.length > 0 ? [...out.slice(0, -1), `${out[out.length - 1]} (the smallest design in the search space is ${smallest})`] : out;
}

/**
 * Resolves the floor on the first block's width as an index into the width grid. With a fixed
 * embedding width there is none. A caller's floor is kept even if it makes the budgets unmeetable
 * (the caller then gets the infeasibility error); the default floor steps down the grid until the
 * smallest design at it meets every budget, so tight budgets (a 6M model with a 50k vocabulary)
 * still get a design. `smallestAt` evaluates the smallest design at a grid index into `ev`.
 */
function embeddingFloor(
  o: ResolvedOptions,
  ev: Evaluator,
  smallestAt: (w0: number) => void,
): { index: number; source: SearchSettings['minEmbeddingWidthSource'] } {
  if (o.embeddingWidth !== undefined) {
    if (o.minEmbeddingWidth !== undefined && o.embeddingWidth < o.minEmbeddingWidth) {
      throw new ValidationError(`embeddingWidth ${o.embeddingWidth} is below minEmbeddingWidth ${o.minEmbeddingWidth}; fix one or the other`);
    }
    return { index: 0, source: null };
  }
  const wanted = o.minEmbeddingWidth ?? DEFAULT_MIN_EMBEDDING_WIDTH;
  const index = o.widths.findIndex((w) => w >= wanted);
  if (o.minEmbeddingWidth !== undefined) {
    if (index < 0) {
      throw new ValidationError(`minEmbeddingWidth ${wanted} is above the widest width in the search space (${o.widths[o.widths.length - 1]})`);
    }
    return { index, source: 'option' };
  }
  // The default is a target (capped at the grid): take the widest grid width at or below it that the budgets allow.
  const top = index < 0 ? o.widths.length - 1 : index;
  for (let w = top; w > 0; w--) {
    smallestAt(w);
    if (ev.feasible()) return { index: w, source: w === top ? 'default' : 'lowered-to-fit' };
  }
  return { index: 0, source: top === 0 ? 'default' : 'lowered-to-fit' };
}

/**
 * Searches for the highest-entropy architecture within the budgets. Synchronous and seeded: the
 * same options give the same result. Throws ValidationError (code VALIDATION_INFEASIBLE_BUDGET)
 * when even the smallest architecture breaks a budget, naming the smallest feasible value.
 */
export function searchArchitecture(options: SearchOptions = {}): SearchResult {
  const started = performance.now();
  const { onProgress, ...rest } = options;
  const parsed = parseWith(SearchOptionsSchema, rest, 'search options');
  const seqLen = parsed.seqLen ?? parsed.contextLength;
  if (parsed.weightBits !== undefined && parsed.bytesPerWeight !== undefined) {
    throw new ValidationError(`give weightBits (${parsed.weightBits}) or bytesPerWeight (${parsed.bytesPerWeight}), not both: weightBits sets the bytes of every tensor`);
  }
  if (parsed.family === 'llama' && parsed.headDim % 2 !== 0) {
    throw new ValidationError(`rotary positions need an even headDim; got ${parsed.headDim}`);
  }
  const storage = parsed.weightBits === undefined ? null : weightStorageOfBits(parsed.weightBits, { blockSize: parsed.blockSize });
  const bytesPerWeight = parsed.bytesPerWeight ?? 4;
  const o: ResolvedOptions = {
    ...parsed,
    seqLen,
    widths: sortedUnique(parsed.widths ?? DEFAULT_WIDTHS),
    ffnRatios: sortedUnique(parsed.ffnRatios ?? DEFAULT_FFN_RATIOS),
    bytesPerWeight,
    storage,
    kvBytesPerValue: storage ? kvBytesPerValueOf(storage) : bytesPerWeight,
  };
  if (o.widths.some((w) => w < o.headDim)) {
    throw new ValidationError(`every width must be at least headDim ${o.headDim}; got widths ${o.widths.join(', ')}`);
  }
  const { model, device } = resolveLatencyModel(o, seqLen);
  const ev = new Evaluator(o, model);
  const nb = o.blocks;
  const P = o.population;
  const share = o.weightSharing === 'always' ? 1 : 0;

  const pop = new Int32Array(P * G * nb);
  const score = new Float64Array(P);
  const child = new Int32Array(G * nb);
  // The smallest design whose first block (and so every block) is at least `w0` wide.
  const smallestAt = (w0: number): void => {
    // One K/V head is the smallest choice (the gpt family ignores this gene).
    for (let b = 0; b < nb; b++) child.set([w0, 0, 1, ev.minHeadsFor[w0]!, share, 1], b * G);
    ev.evaluate(child, 0);
  };
  const floor = embeddingFloor(o, ev, smallestAt);
  const w0Min = floor.index;
  smallestAt(w0Min);
  if (!ev.feasible()) {
    const emb = o.embeddingWidth === undefined ? '' : `, embedding width ${o.embeddingWidth}`;
    const heads = ev.minHeadsFor[w0Min]!;
    const why = floor.source === 'option' ? ` (minEmbeddingWidth ${o.minEmbeddingWidth})` : '';
    const kvText = ev.llama ? ' (1 K/V head)' : '';
    const s = `${nb} block(s) of width ${o.widths[w0Min]}${why}, FFN ratio ${o.ffnRatios[0]}, 1 layer and ${heads} head${heads === 1 ? '' : 's'}${kvText} each${emb}, vocab ${o.vocabSize}, context ${o.contextLength}`;
    throw new ValidationError(`no architecture meets the budgets: ${infeasibility(ev, o, s).join('; ')}`, { code: 'VALIDATION_INFEASIBLE_BUDGET' });
  }
  const GL = G * nb;
  pop.set(child, 0);
  score[0] = ev.entropy;
  let size = 1;

  const rng = new Rng(o.seed);
  // Genes a step may change: width, ratio, layers, heads, then K/V heads (llama), then sharing (when searched).
  const searchShare = o.weightSharing === 'search';
  const geneCodes = Int32Array.from([0, 1, 2, 3, ...(ev.llama ? [GENE_KV] : []), ...(searchShare ? [GENE_SHARE] : [])]);
  const geneCount = geneCodes.length;
  const maxL = o.maxLayersPerBlock;
  let evaluated = 1;
  let feasibleCount = 1;
  let inserted = 1;
  const progressEvery = 4096;

  // Small steps refine, uniform jumps explore; half of the mutations do each.
  const mutateInt = (cur: number, lo: number, hi: number): number => {
    if (lo >= hi) return lo;
    if (rng.next() < 0.5) {
      const step = 1 + rng.int(2);
      let v = cur + (rng.next() < 0.5 ? -step : step);
      if (v < lo) v = lo;
      if (v > hi) v = hi;
      return v;
    }
    return rng.range(lo, hi);
  };

  for (let it = 0; it < o.iterations; it++) {
    if (onProgress && it % progressEvery === 0) onProgress(it, o.iterations);
    const parent = rng.int(size < o.parentSetSize ? size : o.parentSetSize);
    for (let k = 0, src = parent * GL; k < GL; k++) child[k] = pop[src + k]!;
    const b = rng.int(nb);
    const p = b * G;
    // One block per step (as MeRino); sometimes several of its genes, so a width increase can
    // come with a depth cut that keeps a budget-tight design feasible.
    let genes = 1;
    while (genes < MAX_GENES && rng.next() < MULTI_GENE_P) genes++;
    for (let k = 0; k < genes; k++) {
      switch (geneCodes[rng.int(geneCount)]) {
        case 0: {
          const lo = b > 0 ? child[p - G]! : w0Min;
          const hi = b < nb - 1 ? child[p + G]! : ev.nw - 1;
          const w = mutateInt(child[p]!, lo, hi);
          child[p] = w;
          if (child[p + 3]! > ev.maxHeadsFor[w]!) child[p + 3] = ev.maxHeadsFor[w]!;
          if (child[p + 3]! < ev.minHeadsFor[w]!) child[p + 3] = ev.minHeadsFor[w]!;
          break;
        }
        case 1:
          child[p + 1] = mutateInt(child[p + 1]!, 0, ev.nr - 1);
          break;
        case 2:
          child[p + 2] = mutateInt(child[p + 2]!, 1, maxL);
          break;
        case 3:
          child[p + 3] = mutateInt(child[p + 3]!, ev.minHeadsFor[child[p]!]!, ev.maxHeadsFor[child[p]!]!);
          break;
        case GENE_KV: {
          // Among the divisors of the query heads, so every K/V head serves the same number of queries.
          const h = child[p + 3]!;
          // The heads may have changed earlier in this step: start from the nearest valid K/V count.
          const slot = mutateInt(ev.slot(h, ev.fitKv(h, child[p + 5]!)), 0, ev.divisorCount[h - 1]! - 1);
          child[p + 5] = ev.divisors[(h - 1) * ev.mkv + slot]!;
          break;
        }
        default:
          child[p + 4] = 1 - child[p + 4]!;
      }
    }
    // A one-layer block is the same design shared or not; keep one spelling so duplicates are caught.
    if (searchShare && child[p + 2] === 1) child[p + 4] = 0;
    // Query heads may have changed: keep K/V heads a divisor of them.
    if (ev.llama) child[p + 5] = ev.fitKv(child[p + 3]!, child[p + 5]!);
    ev.evaluate(child, 0);
    evaluated++;
    if (!ev.feasible()) continue;
    feasibleCount++;
    const sc = ev.entropy;
    if (size === P && sc <= score[P - 1]!) continue;
    // Descending order; a newcomer goes after members of equal entropy.
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (score[mid]! >= sc) lo = mid + 1;
      else hi = mid;
    }
    let dup = false;
    for (let i = lo - 1; i >= 0 && score[i] === sc; i--) {
      let same = true;
      for (let k = 0; k < GL; k++) {
        if (pop[i * GL + k] !== child[k]) {
          same = false;
          break;
        }
      }
      if (same) {
        dup = true;
        break;
      }
    }
    if (dup) continue;
    if (size === P) size--;
    score.copyWithin(lo + 1, lo, size);
    pop.copyWithin((lo + 1) * GL, lo * GL, size * GL);
    score[lo] = sc;
    pop.set(child, lo * GL);
    size++;
    inserted++;
  }
  onProgress?.(o.iterations, o.iterations);

  const spec = genomeToSpec(pop, 0, o, `fleetlm-search-seed${o.seed}`);
  const params = countParameters(spec);
  const flops = countForwardFlops(spec, seqLen);
  const weights = o.storage ?? o.bytesPerWeight;
  const memory = decodeMemoryBytes(spec, seqLen, weights, o.kvBytesPerValue);
  const shipped = weightBytes(spec, weights);
  const latencyMs = model ? predictLatencyMs(spec, model) : null;
  const ent = networkEntropy(spec, { sigma: o.sigma, eps: o.eps, alphaAttention: o.alphaAttention, alphaFfn: o.alphaFfn });
  ev.evaluate(pop, 0);
  if (params !== ev.params || flops !== ev.flops || memory !== ev.memory || shipped !== ev.weightBytes || (latencyMs !== null && latencyMs !== ev.latency) || ent.rho !== ev.rho) {
    throw new Error(`search evaluator disagrees with the accounting for ${JSON.stringify(spec)}`);
  }
  if (!(ent.rho <= o.rhoMax) || !ev.attentionOk) throw new Error(`search returned a design outside rhoMax or the attention floor: ${JSON.stringify(spec)}`);
  return {
    format: 'fleetlm/search-result@1',
    spec,
    params,
    flops,
    decodeMemoryBytes: memory,
    weightBytes: shipped,
    entropy: ent.entropy,
    entropyAttention: ent.attention,
    entropyFfn: ent.ffn,
    rho: ent.rho,
    latencyMs,
    budgets: { ...o.budgets, rhoMax: o.rhoMax },
    device,
    settings: {
      iterations: o.iterations,
      population: o.population,
      parentSetSize: o.parentSetSize,
      blocks: o.blocks,
      embeddingWidth: o.embeddingWidth ?? null,
      minEmbeddingWidth: floor.source === null ? null : o.widths[w0Min]!,
      minEmbeddingWidthSource: floor.source,
      minAttentionRatio: o.minAttentionRatio,
      vocabSize: o.vocabSize,
      contextLength: o.contextLength,
      seqLen,
      bytesPerWeight: o.storage ? null : o.bytesPerWeight,
      family: o.family,
      weightStorage: o.storage,
      kvBytesPerValue: o.kvBytesPerValue,
      rhoMax: o.rhoMax,
      alphaAttention: o.alphaAttention,
      alphaFfn: o.alphaFfn,
      sigma: o.sigma,
      eps: o.eps,
      widths: o.widths,
      ffnRatios: o.ffnRatios,
      maxLayersPerBlock: o.maxLayersPerBlock,
      maxHeads: o.maxHeads,
      headDim: o.headDim,
      weightSharing: o.weightSharing,
      tiedHead: o.tiedHead,
    },
    seed: o.seed,
    stats: { evaluated, feasible: feasibleCount, inserted, populationSize: size, elapsedMs: performance.now() - started },
  };
}
