// `fleetlm/layer-latency@1`: measured per-layer decode latencies of one device or device class
// (what a fleet benchmark job uploads and `fleetlm latency` merges); the model that uses them is
// measured-latency.ts.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { checkNotNewerMajor, objectWith, parseJsonWith, parseWith, type UnknownFields } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';

const positiveInt = z.number().int().positive();
const ms = z.number().positive();
/** KV length (past tokens + the new one) the entry was timed at; default: the table's seqLen. */
const entrySeqLen = positiveInt.optional();
/**
 * Layer family an entry was timed with; absent: gpt2 (LayerNorm, GELU, biases, learned positions, full
 * attention). llama: RMSNorm, SwiGLU, no biases, rotary positions, `kvHeads` K/V heads.
 */
const entryFamily = z.enum(['gpt2', 'llama']).optional();
export type LatencyFamily = 'gpt2' | 'llama';

/** The format id of a table. */
export const LATENCY_TABLE_FORMAT = 'fleetlm/layer-latency@1';

/**
 * The table's shape with the given policy for fields it does not know (at every level). Tables travel between
 * versions (a newer agent uploads, an older CLI merges; a newer CLI merges, an older pipeline searches), so the
 * fleet's readers drop what they do not know; what a program writes, and a table file an operator hands to
 * `--latency-table`, is checked strictly (a misspelt optional field such as `kvheads` must not pass unseen).
 */
function latencyTableSchemaOf(unknown: UnknownFields) {
  const obj = objectWith(unknown);
  /** Across the devices of a merged table: how far the per-device medians spread around this one. */
  const SpreadSchema = obj({
    devices: positiveInt,
    /** Smallest and largest per-device median, ms. */
    min: ms,
    max: ms,
    /** Median absolute deviation of the per-device medians divided by their median. */
    relMad: z.number().nonnegative(),
  });

  /** Which device measured a table, and in what state (absent from hand-written tables). */
  const MeasuredOnSchema = obj({
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
    thermal: obj({ startC: z.number().nullable(), endC: z.number().nullable() }),
    loadAvg1m: z.number().nonnegative(),
    /** The benchmark job's run id. */
    runId: z.string().max(64),
  });

  /** A merged table's provenance: the device tables it is the median of, and those left out or flagged. */
  const MergedFromSchema = obj({
    runIds: z.array(z.string()),
    devices: z.array(obj({ thingName: z.string(), board: z.string(), onnxruntime: z.string() })),
    /** Devices whose figures sit far from the class median (median ratio outside the outlier band). */
    outliers: z.array(obj({ thingName: z.string(), ratio: z.number(), reason: z.string() })),
  });

  /**
   * `fleetlm/layer-latency@1`: median milliseconds of one decode step's operators at context
   * `seqLen`, batch 1, on `device`. Layers are keyed by (family, width, ffnWidth, heads, kvHeads,
   * headDim); an entry may carry its own seqLen (KV length), and the model interpolates between KV lengths.
   * Head entries are the per-model costs of one step: embedding lookup, final norm, LM head and the
   * runtime's per-run overhead and the sampling of the next token.
   */
  return obj({
    format: z.literal(LATENCY_TABLE_FORMAT),
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
        obj({
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
        }).superRefine((l, ctx) => {
          if (l.kvHeads === undefined) return;
          if (l.family !== 'llama') ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: 'kvHeads applies to llama entries only (a gpt2 layer has as many K/V heads as query heads)' });
          else if (l.kvHeads > l.heads || l.heads % l.kvHeads !== 0) ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: `kvHeads ${l.kvHeads} must divide heads ${l.heads}` });
        }),
      )
      .default([]),
    heads: z.array(obj({ width: positiveInt, vocabSize: positiveInt, seqLen: entrySeqLen, ms, samples: positiveInt.optional(), spread: SpreadSchema.optional(), family: entryFamily })).default([]),
    projections: z.array(obj({ inWidth: positiveInt, outWidth: positiveInt, ms, samples: positiveInt.optional(), spread: SpreadSchema.optional() })).default([]),
  });
}

/** The strict table: what FleetLM writes (the agent's upload, a merge) and the operator's `--latency-table` file. */
export const LayerLatencyTableSchema = latencyTableSchemaOf('reject');
/** A fleet reader's table (merging device uploads, reading merged tables): fields it does not know are dropped. */
export const LayerLatencyTableReadSchema = latencyTableSchemaOf('strip');

export type LayerLatencyTable = z.output<typeof LayerLatencyTableSchema>;

/** The family of a table entry (absent: gpt2). */
export function entryFamilyOf(e: { family?: LatencyFamily | undefined }): LatencyFamily {
  return e.family ?? 'gpt2';
}

/** K/V heads of a layer entry (gpt2: its query heads). */
export function entryKvHeadsOf(l: { family?: LatencyFamily | undefined; heads: number; kvHeads?: number | undefined }): number {
  return l.family === 'llama' ? (l.kvHeads ?? l.heads) : l.heads;
}

/** Validates a table given as a value, strictly (what FleetLM itself writes). */
export function parseLatencyTable(value: unknown): LayerLatencyTable {
  return parseWith(LayerLatencyTableSchema, value, 'layer latency table');
}

/**
 * Validates a table another FleetLM version may have written (a device's upload, a merged table in the
 * artifact store): fields this version does not know are dropped; a newer major format is refused with
 * VALIDATION_SCHEMA_VERSION rather than misread; wrong types and missing fields still fail.
 */
export function readLatencyTable(value: unknown, what = 'layer latency table'): LayerLatencyTable {
  checkNotNewerMajor(value, 'format', 'fleetlm/layer-latency', 1, what);
  return parseWith(LayerLatencyTableReadSchema, value, what);
}

/** Reads and validates a table file. */
export function loadLatencyTable(path: string): LayerLatencyTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read layer latency table '${path}': ${(err as Error).message}`, { cause: err });
  }
  const value = parseJsonWith(z.unknown(), text, `layer latency table ${path}`);
  checkNotNewerMajor(value, 'format', 'fleetlm/layer-latency', 1, `layer latency table ${path}`);
  return parseWith(LayerLatencyTableSchema, value, `layer latency table ${path}`);
}

