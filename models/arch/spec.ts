// The architecture spec: a decoder-only transformer as the MeRino search describes it.
// Everything else (accounting, ONNX builder, trainer, search) reads this one type.
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';

const positiveInt = z.number().int().positive();

/** Normalisation of a layer: LayerNorm (scale and bias, GPT-2/OPT) or RMSNorm (scale only, Llama family). */
export const NORMS = ['layernorm', 'rmsnorm'] as const;
export type Norm = (typeof NORMS)[number];

/**
 * Feed-forward kind: `gelu` is up -> activation -> down (GPT-2/OPT; the activation function itself is a
 * build option); `swiglu` is down(silu(gate(x)) * up(x)) (Llama family, Shazeer 2020).
 */
export const MLPS = ['gelu', 'swiglu'] as const;
export type Mlp = (typeof MLPS)[number];

/** Position encoding: a learned table added to the token embedding, or rotary (RoPE, Su et al. 2021) in attention. */
export const POSITIONS = ['learned', 'rotary'] as const;
export type Positions = (typeof POSITIONS)[number];

/**
 * One block: `layers` identical pre-norm transformer layers of width `width` (E).
 * Attention projects E -> heads*headDim for Q and kvHeads*headDim for K and V (grouped-query
 * attention when kvHeads < heads) and back, so the attention width need not equal E.
 * The FFN hidden width is `ffnHidden`, or round(ffnRatio * width) when it is absent.
 * `qkvBias` gives Q, K and V projections a bias; `outputBias` gives the attention output and the
 * FFN projections one (GPT-2/OPT: both; Qwen2: qkv only; Llama/Mistral: neither).
 * With `shareWeights` every layer of the block uses the same weights (ALBERT-style, as MeRino).
 */
export const BlockSpecSchema = z
  .object({
    width: positiveInt,
    ffnRatio: z.number().positive().max(64).optional(),
    ffnHidden: positiveInt.optional(),
    layers: positiveInt,
    heads: positiveInt,
    kvHeads: positiveInt.optional(),
    headDim: positiveInt.default(64),
    shareWeights: z.boolean().default(false),
    norm: z.enum(NORMS).default('layernorm'),
    mlp: z.enum(MLPS).default('gelu'),
    qkvBias: z.boolean().default(true),
    outputBias: z.boolean().default(true),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.ffnRatio === undefined && b.ffnHidden === undefined) {
      ctx.addIssue({ code: 'custom', path: ['ffnRatio'], message: 'a block needs ffnRatio or ffnHidden (the FFN hidden width)' });
    }
    if (b.kvHeads !== undefined && (b.kvHeads > b.heads || b.heads % b.kvHeads !== 0)) {
      ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: `kvHeads ${b.kvHeads} must divide heads ${b.heads} (grouped-query attention)` });
    }
  })
  // A fixed key order, so a spec serialises the same however it was written (checkpoints compare JSON).
  .transform((b) => ({
    width: b.width,
    // Old readers use ffnRatio; an explicit ffnHidden wins in ffnWidthOf.
    ffnRatio: b.ffnRatio ?? (b.ffnHidden ?? 0) / b.width,
    ...(b.ffnHidden !== undefined ? { ffnHidden: b.ffnHidden } : {}),
    layers: b.layers,
    heads: b.heads,
    kvHeads: b.kvHeads ?? b.heads,
    headDim: b.headDim,
    shareWeights: b.shareWeights,
    norm: b.norm,
    mlp: b.mlp,
    qkvBias: b.qkvBias,
    outputBias: b.outputBias,
  }));

/**
 * A whole model. Blocks run in order; E must not decrease from one block to the next, and a
 * linear projection (with bias) sits between two blocks of different width.
 * `embeddingWidth` (default: first block's width) is the width of the token and position
 * embeddings; when it differs from the first block a bias-free projection maps it in, and a
 * bias-free projection maps the last block back to it when the head is tied (OPT-350m's
 * project_in/project_out).
 * `positionOffset` adds rows to the learned position table that are never addressed by
 * position 0..contextLength-1 (OPT reserves 2).
 * `positions: 'rotary'` drops the position table and rotates Q and K by `ropeTheta` (full head
 * dimension, Hugging Face's rotate_half convention, no scaling).
 * `layerNormEpsilon` is the epsilon of every norm, LayerNorm or RMSNorm.
 */
export const ArchSpecSchema = z
  .object({
    format: z.literal('fleetlm/arch@1').default('fleetlm/arch@1'),
    name: z.string().min(1).max(128).optional(),
    vocabSize: positiveInt,
    contextLength: positiveInt,
    positionOffset: z.number().int().nonnegative().default(0),
    embeddingWidth: positiveInt.optional(),
    blocks: z.array(BlockSpecSchema).min(1),
    tiedHead: z.boolean().default(true),
    layerNormEpsilon: z.number().positive().max(1).default(1e-5),
    positions: z.enum(POSITIONS).default('learned'),
    ropeTheta: z.number().positive().default(10000),
  })
  .strict()
  .superRefine((spec, ctx) => {
    for (let i = 1; i < spec.blocks.length; i++) {
      const prev = spec.blocks[i - 1]!.width;
      const cur = spec.blocks[i]!.width;
      if (cur < prev) {
        ctx.addIssue({
          code: 'custom',
          path: ['blocks', i, 'width'],
          message: `block widths must not decrease: block ${i} has width ${cur} after width ${prev}`,
        });
      }
    }
    if (spec.positions === 'rotary' && spec.positionOffset !== 0) {
      ctx.addIssue({ code: 'custom', path: ['positionOffset'], message: 'positionOffset applies to a learned position table; rotary positions have none' });
    }
    spec.blocks.forEach((b, i) => {
      if (spec.positions === 'rotary' && b.headDim % 2 !== 0) {
        ctx.addIssue({ code: 'custom', path: ['blocks', i, 'headDim'], message: `rotary positions need an even headDim; block ${i} has ${b.headDim}` });
      }
      if (ffnWidthOf(b) < 1) {
        ctx.addIssue({ code: 'custom', path: ['blocks', i, 'ffnRatio'], message: `ffnRatio ${b.ffnRatio} gives an empty FFN` });
      }
    });
  });

export type BlockSpec = z.output<typeof BlockSpecSchema>;
export type ArchSpec = z.output<typeof ArchSpecSchema>;
/** What a person may write: defaults filled in by parseArchSpec. */
export type ArchSpecInput = z.input<typeof ArchSpecSchema>;

/** Validates an outside architecture spec; errors name the offending field. */
export function parseArchSpec(value: unknown): ArchSpec {
  return parseWith(ArchSpecSchema, value, 'architecture spec');
}

/** Width of the token/position embeddings. */
export function embeddingWidthOf(spec: ArchSpec): number {
  return spec.embeddingWidth ?? spec.blocks[0]!.width;
}

/** FFN hidden width of a block. */
export function ffnWidthOf(block: Pick<BlockSpec, 'ffnRatio' | 'ffnHidden' | 'width'>): number {
  return block.ffnHidden ?? Math.round(block.ffnRatio * block.width);
}

/** Attention inner width (heads * headDim) of a block: the width of Q and of the output projection's input. */
export function attentionWidthOf(block: BlockSpec): number {
  return block.heads * block.headDim;
}

/** Width of K and of V (kvHeads * headDim); smaller than the attention width under grouped-query attention. */
export function kvWidthOf(block: BlockSpec): number {
  return block.kvHeads * block.headDim;
}

/** True when the spec uses any Llama-family option (RMSNorm, rotary, SwiGLU, GQA, bias-free projections). */
export function isLlamaFamily(spec: ArchSpec): boolean {
  return (
    spec.positions === 'rotary' ||
    spec.blocks.some((b) => b.norm === 'rmsnorm' || b.mlp === 'swiglu' || b.kvHeads !== b.heads || !b.qkvBias || !b.outputBias)
  );
}

/** Total number of transformer layers across blocks. */
export function totalLayersOf(spec: ArchSpec): number {
  return spec.blocks.reduce((n, b) => n + b.layers, 0);
}

/** Asserts an internal invariant about a spec built in code (not outside input). */
export function assertSpec(cond: boolean, message: string): asserts cond {
  if (!cond) throw new ValidationError(message);
}
