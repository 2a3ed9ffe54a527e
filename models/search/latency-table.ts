// `fleetlm/layer-latency@1`: measured per-layer decode latencies of one device or device class
// (what a fleet benchmark job uploads and `fleetlm latency` merges); the model that uses them is
// measured-latency.ts.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseJsonWith, parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';

const positiveInt = z.number().int().positive();
const ms = z.number().positive();

/**
 * `fleetlm/layer-latency@1`: median milliseconds of one decode step's operators at context
 * `seqLen`, batch 1, on `device`. Layers are keyed by (width, ffnWidth, heads, headDim).
 */
export const LayerLatencyTableSchema = z
  .object({
    format: z.literal('fleetlm/layer-latency@1'),
    device: z.string().min(1),
    unit: z.enum(['gpu', 'cpu']).optional(),
    seqLen: positiveInt,
    bytesPerWeight: z.number().positive().default(4),
    measuredAt: z.string().optional(),
    layers: z
      .array(z.object({ width: positiveInt, ffnWidth: positiveInt, heads: positiveInt, headDim: positiveInt.default(64), ms, samples: positiveInt.optional() }).strict())
      .default([]),
    heads: z.array(z.object({ width: positiveInt, vocabSize: positiveInt, ms, samples: positiveInt.optional() }).strict()).default([]),
    projections: z.array(z.object({ inWidth: positiveInt, outWidth: positiveInt, ms, samples: positiveInt.optional() }).strict()).default([]),
  })
  .strict();

export type LayerLatencyTable = z.output<typeof LayerLatencyTableSchema>;

/** Validates a table given as a value. */
export function parseLatencyTable(value: unknown): LayerLatencyTable {
  return parseWith(LayerLatencyTableSchema, value, 'layer latency table');
}

/** Reads and validates a table file. */
export function loadLatencyTable(path: string): LayerLatencyTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read layer latency table '${path}': ${(err as Error).message}`, { cause: err });
  }
  return parseJsonWith(LayerLatencyTableSchema, text, `layer latency table ${path}`);
}

