// `fleetlm/layer-latency@1`: measured per-layer decode latencies of one device or device class
// (what a fleet benchmark job uploads and `fleetlm latency` merges); the model that uses them is
// measured-latency.ts.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseJsonWith, parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';

const positiveInt = z.number().int().positive();
const ms = z.number().positive();

/** Across the devices of a merged table: how far the per-device medians spread around this one. */
const SpreadSchema = z
  .object({
    devices: positiveInt,
    /** Smallest and largest per-device median, ms. */
    min: ms,
    max: ms,
    /** Median absolute deviation of the per-device medians divided by their median. */
    relMad: z.number().nonnegative(),
  })
  .strict();
/** KV length (past tokens + the new one) the entry was timed at; default: the table's seqLen. */
const entrySeqLen = positiveInt.optional();
/**
 * Layer family an entry was timed with; absent: gpt2 (LayerNorm, GELU, biases, learned positions, full
 * attention). llama: RMSNorm, SwiGLU, no biases, rotary positions, `kvHeads` K/V heads.
 */
const entryFamily = z.enum(['gpt2', 'llama']).optional();
export type LatencyFamily = 'gpt2' | 'llama';

/** Which device measured a table, and in what state (absent from hand-written tables). */
export const MeasuredOnSchema = z
  .object({
    thingName: z.string().min(1).max(128),
    /** Board model as the device names it (device tree model, else DMI product name, else CPU model). */
    board: z.string().max(256),
    cpu: z.string().max(256),
    cores: positiveInt,
    onnxruntime: z.string().max(64),
    agentVersion: z.string().max(64),
    /** onnxruntime intra-op threads used for the timings. */
    threads: z.number().int().nonnegative(),
    /** Hottest thermal zone at the start and end of the run (null where the device has none), and the 1-minute load. */
    thermal: z.object({ startC: z.number().nullable(), endC: z.number().nullable() }).strict(),
    loadAvg1m: z.number().nonnegative(),
    /** The benchmark job's run id. */
    runId: z.string().max(64),
  })
  .strict();

/** A merged table's provenance: the device tables it is the median of, and those left out or flagged. */
export const MergedFromSchema = z
  .object({
    runIds: z.array(z.string()),
    devices: z.array(z.object({ thingName: z.string(), board: z.string(), onnxruntime: z.string() }).strict()),
    /** Devices whose figures sit far from the class median (median ratio outside the outlier band). */
    outliers: z.array(z.object({ thingName: z.string(), ratio: z.number(), reason: z.string() }).strict()),
  })
  .strict();

/**
 * `fleetlm/layer-latency@1`: median milliseconds of one decode step's operators at context
 * `seqLen`, batch 1, on `device`. Layers are keyed by (family, width, ffnWidth, heads, kvHeads,
 * headDim); an entry may carry its own seqLen (KV length), and the model interpolates between KV lengths.
 * Head entries are the per-model costs of one step: embedding lookup, final norm, LM head and the
 * runtime's per-run overhead and the sampling of the next token.
 */
export const LayerLatencyTableSchema = z
  .object({
    format: z.literal('fleetlm/layer-latency@1'),
    device: z.string().min(1),
    unit: z.enum(['gpu', 'cpu']).optional(),
    seqLen: positiveInt,
    bytesPerWeight: z.number().positive().default(4),
    /** Storage of the timed weights (fp32, int8 or int4 blocks); bytesPerWeight follows it. */
    storage: z.enum(['fp32', 'fp16', 'int8', 'int4']).optional(),
    measuredAt: z.string().optional(),
    /** False when the time limit stopped the run before every file was timed. */
    complete: z.boolean().optional(),
    measuredOn: MeasuredOnSchema.optional(),
    mergedFrom: MergedFromSchema.optional(),
    layers: z
      .array(
        z
          .object({
            width: positiveInt,
            ffnWidth: positiveInt,
            heads: positiveInt,
            headDim: positiveInt.default(64),
            seqLen: entrySeqLen,
            ms,
            samples: positiveInt.optional(),
            spread: SpreadSchema.optional(),
            family: entryFamily,
            /** llama: K/V heads (absent: heads). */
            kvHeads: positiveInt.optional(),
          })
          .strict()
          .superRefine((l, ctx) => {
            if (l.kvHeads === undefined) return;
            if (l.family !== 'llama') ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: 'kvHeads applies to llama entries only (a gpt2 layer has as many K/V heads as query heads)' });
            else if (l.kvHeads > l.heads || l.heads % l.kvHeads !== 0) ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: `kvHeads ${l.kvHeads} must divide heads ${l.heads}` });
          }),
      )
      .default([]),
    heads: z
      .array(z.object({ width: positiveInt, vocabSize: positiveInt, seqLen: entrySeqLen, ms, samples: positiveInt.optional(), spread: SpreadSchema.optional(), family: entryFamily }).strict())
      .default([]),
    projections: z.array(z.object({ inWidth: positiveInt, outWidth: positiveInt, ms, samples: positiveInt.optional(), spread: SpreadSchema.optional() }).strict()).default([]),
  })
  .strict();

export type LayerLatencyTable = z.output<typeof LayerLatencyTableSchema>;

/** The family of a table entry (absent: gpt2). */
export function entryFamilyOf(e: { family?: LatencyFamily | undefined }): LatencyFamily {
  return e.family ?? 'gpt2';
}

/** K/V heads of a layer entry (gpt2: its query heads). */
export function entryKvHeadsOf(l: { family?: LatencyFamily | undefined; heads: number; kvHeads?: number | undefined }): number {
  return l.family === 'llama' ? (l.kvHeads ?? l.heads) : l.heads;
}

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

