// The search's options: the schema callers write against, its defaults, the options after defaults
// are resolved, and the settings a result reports (derived from the schema, so they cannot drift).
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';
import { kvBytesPerValueOf } from '../arch/accounting.ts';
import { weightStorageOfBits, type WeightStorage } from '../arch/weight-storage.ts';
import { DEFAULT_RHO_MAX } from '../entropy/effectiveness.ts';
import { DeviceProfileSchema } from './device-profiles.ts';
import { LayerLatencyTableSchema } from './latency-table.ts';
import { DEFAULT_OBJECTIVE, SEARCH_OBJECTIVES } from './objective.ts';

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
    /** What the search maximises within the budgets (objective.ts). */
    objective: z.enum(SEARCH_OBJECTIVES).default(DEFAULT_OBJECTIVE),
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
    /**
     * 8- and 4-bit blocks without zero points. Default false: asymmetric, a zero point per block, which is
     * what `fleetlm quantize`, the pipeline and the benchmark grid ship.
     */
    symmetric: z.boolean().default(false),
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
/** Options after the schema's defaults are applied. */
export type ParsedSearchOptions = z.output<typeof SearchOptionsSchema>;
/** Options as a caller writes them; `onProgress` is called every few thousand iterations. */
export type SearchOptions = z.input<typeof SearchOptionsSchema> & { onProgress?: (done: number, total: number) => void };

/** Options copied into the settings as parsed. */
type CopiedSetting =
  | 'objective'
  | 'iterations'
  | 'population'
  | 'parentSetSize'
  | 'blocks'
  | 'minAttentionRatio'
  | 'vocabSize'
  | 'contextLength'
  | 'family'
  | 'rhoMax'
  | 'alphaAttention'
  | 'alphaFfn'
  | 'sigma'
  | 'eps'
  | 'maxLayersPerBlock'
  | 'maxHeads'
  | 'headDim'
  | 'weightSharing'
  | 'tiedHead';
/** Options the settings report after resolution (defaults filled in, null for "not given"). */
type ResolvedSetting = 'embeddingWidth' | 'minEmbeddingWidth' | 'seqLen' | 'bytesPerWeight' | 'widths' | 'ffnRatios';
/**
 * Options reported elsewhere in the result (budgets, device, seed), folded into weightStorage
 * (weightBits, blockSize, symmetric), or not part of the settings (computeUnit is in the device; the table is input).
 */
type ReportedElsewhere = 'budgets' | 'device' | 'computeUnit' | 'latencyTable' | 'seed' | 'weightBits' | 'blockSize' | 'symmetric' | 'ropeTheta';
// Every option must be placed in one of the three groups: a new option that is not fails to compile here.
type Unplaced = Exclude<keyof ParsedSearchOptions, CopiedSetting | ResolvedSetting | ReportedElsewhere>;
const everyOptionPlaced: [Unplaced] extends [never] ? true : Unplaced = true;
void everyOptionPlaced;

/** The settings a result was produced with (enough to reproduce it). */
export type SearchSettings = Pick<ParsedSearchOptions, CopiedSetting> & {
  embeddingWidth: number | null;
  /** Floor applied to the first block's width (null with a fixed embedding width). */
  minEmbeddingWidth: number | null;
  /** Why that floor: set by the caller, the default, or the default lowered so the budgets can be met. */
  minEmbeddingWidthSource: 'option' | 'default' | 'lowered-to-fit' | null;
  seqLen: number;
  /** Uniform bytes per weight and cache value; null when weightStorage says how the weights ship. */
  bytesPerWeight: number | null;
  /** The shipped weights' storage (from weightBits and blockSize), or null without weightBits. */
  weightStorage: WeightStorage | null;
  /** Bytes per K/V cache value the memory budget and latency use. */
  kvBytesPerValue: number;
  widths: number[];
  ffnRatios: number[];
};

/** Options after defaults are resolved. */
export type ResolvedOptions = ParsedSearchOptions & {
  seqLen: number;
  widths: number[];
  ffnRatios: number[];
  bytesPerWeight: number;
  storage: WeightStorage | null;
  kvBytesPerValue: number;
};

/** Validates caller options and resolves their defaults; throws ValidationError on contradictions. */
export function resolveSearchOptions(options: z.input<typeof SearchOptionsSchema>): ResolvedOptions {
  const parsed = parseWith(SearchOptionsSchema, options, 'search options');
  const seqLen = parsed.seqLen ?? parsed.contextLength;
  if (parsed.weightBits !== undefined && parsed.bytesPerWeight !== undefined) {
    throw new ValidationError(`give weightBits (${parsed.weightBits}) or bytesPerWeight (${parsed.bytesPerWeight}), not both: weightBits sets the bytes of every tensor`);
  }
  if (parsed.family === 'llama' && parsed.headDim % 2 !== 0) {
    throw new ValidationError(`rotary positions need an even headDim; got ${parsed.headDim}`);
  }
  const storage = parsed.weightBits === undefined ? null : weightStorageOfBits(parsed.weightBits, { blockSize: parsed.blockSize, asymmetric: !parsed.symmetric });
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
  return o;
}

/** The settings of a result, in the order results have always listed them. */
export function settingsOf(
  o: ResolvedOptions,
  floor: { width: number | null; source: SearchSettings['minEmbeddingWidthSource'] },
): SearchSettings {
  return {
    objective: o.objective,
    iterations: o.iterations,
    population: o.population,
    parentSetSize: o.parentSetSize,
    blocks: o.blocks,
    embeddingWidth: o.embeddingWidth ?? null,
    minEmbeddingWidth: floor.width,
    minEmbeddingWidthSource: floor.source,
    minAttentionRatio: o.minAttentionRatio,
    vocabSize: o.vocabSize,
    contextLength: o.contextLength,
    seqLen: o.seqLen,
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
  };
}

function sortedUnique(values: readonly number[]): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}
