// The architecture spec: a decoder-only transformer as the MeRino search describes it.
// Everything else (accounting, ONNX builder, trainer, search) reads this one type.
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';

const positiveInt = z.number().int().positive();

/**
 * One block: `layers` identical pre-LayerNorm transformer layers of width `width` (E).
 * Attention projects E -> heads*headDim for Q, K and V and back, so the attention width need
 * not equal E. The FFN hidden width is round(ffnRatio * width).
 * With `shareWeights` every layer of the block uses the same weights (ALBERT-style, as MeRino).
 */
export const BlockSpecSchema = z
  .object({
    width: positiveInt,
    ffnRatio: z.number().positive().max(64),
    layers: positiveInt,
    heads: positiveInt,
    headDim: positiveInt.default(64),
    shareWeights: z.boolean().default(false),
  })
  .strict();

/**
 * A whole model. Blocks run in order; E must not decrease from one block to the next, and a
 * linear projection (with bias) sits between two blocks of different width.
 * `embeddingWidth` (default: first block's width) is the width of the token and position
 * embeddings; when it differs from the first block a bias-free projection maps it in, and a
 * bias-free projection maps the last block back to it when the head is tied (OPT-350m's
 * project_in/project_out).
 * `positionOffset` adds rows to the learned position table that are never addressed by
 * position 0..contextLength-1 (OPT reserves 2).
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
    spec.blocks.forEach((b, i) => {
      if (Math.round(b.ffnRatio * b.width) < 1) {
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
export function ffnWidthOf(block: BlockSpec): number {
  return Math.round(block.ffnRatio * block.width);
}

/** Attention inner width (heads * headDim) of a block. */
export function attentionWidthOf(block: BlockSpec): number {
  return block.heads * block.headDim;
}

/** Total number of transformer layers across blocks. */
export function totalLayersOf(spec: ArchSpec): number {
  return spec.blocks.reduce((n, b) => n + b.layers, 0);
}

/** Asserts an internal invariant about a spec built in code (not outside input). */
export function assertSpec(cond: boolean, message: string): asserts cond {
  if (!cond) throw new ValidationError(message);
}
