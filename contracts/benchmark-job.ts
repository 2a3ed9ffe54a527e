// `fleetlm/benchmark@1`: the IoT Job document that asks a device to time a grid of decoder
// microbenchmarks with onnxruntime and upload a `fleetlm/layer-latency@1` table. The grid's ONNX files
// are built and quantized by the operator's CLI and published as a signed bundle (model id
// `benchmark-grid`), which the device downloads and verifies exactly as a model (allow-list, sha256,
// fleet-key signature), so the device bundle carries no model builder. Shared by the agent and the CLI.
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';
import { JobArtifactSchema } from './job-document.ts';
import { BundleFileNameSchema, ModelIdSchema, ModelVersionSchema, Sha256HexSchema } from './manifest.ts';

export const BENCHMARK_SCHEMA = 'fleetlm/benchmark@1';
/** Model id the grid bundles are published under. */
export const BENCHMARK_GRID_MODEL_ID = 'benchmark-grid';

const positiveInt = z.number().int().positive();
const UrlSchema = z.string().min(1).max(4096);

/**
 * One timed decoder file: `depth` identical layers of (width, ffnWidth, heads x headDim). Layer cost
 * comes from two files of the same layer at different depths (their difference over the depth
 * difference), so the per-model costs (embedding, final norm, head, session overhead) cancel out;
 * `role: 'fixed'` files at the target vocabulary give those per-model costs. `family` and `kvHeads`
 * appear on llama files only (RMSNorm, SwiGLU, rotary, no biases, `kvHeads` K/V heads): agents that
 * predate them refuse unknown fields, so a gpt2 file is written exactly as before (no family).
 */
export const BenchmarkModelSchema = z
  .object({
    /** The grid file (one of the document's artifacts). */
    name: BundleFileNameSchema,
    role: z.enum(['layer', 'fixed']),
    width: positiveInt,
    ffnWidth: positiveInt,
    heads: positiveInt,
    headDim: positiveInt,
    depth: positiveInt.max(64),
    vocabSize: positiveInt,
    /** Layer family; absent: gpt2. */
    family: z.enum(['gpt2', 'llama']).optional(),
    /** K/V heads of a llama file (grouped-query attention when below heads); absent: heads. */
    kvHeads: positiveInt.optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.kvHeads === undefined) return;
    if (m.family !== 'llama') ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: 'kvHeads applies to llama files only' });
    else if (m.kvHeads > m.heads || m.heads % m.kvHeads !== 0) ctx.addIssue({ code: 'custom', path: ['kvHeads'], message: `kvHeads ${m.kvHeads} must divide heads ${m.heads}` });
  });

export const BenchmarkDocumentSchema = z
  .object({
    schema: z.literal(BENCHMARK_SCHEMA),
    /** Names this run; the table records it and the CLI finds the uploads by it. */
    runId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    /** Device class the operator designs for (a device profile id such as rpi4); the table's `device`. */
    deviceClass: z.string().min(1).max(64),
    /** The signed grid bundle, as in deploy-model@1: the manifest must list exactly `artifacts`. */
    modelId: ModelIdSchema,
    version: ModelVersionSchema,
    manifest: z.object({ url: UrlSchema, sha256: Sha256HexSchema, size: z.number().int().nonnegative() }).strict(),
    signature: z.object({ url: UrlSchema }).strict(),
    artifacts: z.array(JobArtifactSchema).min(2).max(64),
    /** How the grid's weights are stored (the search's weightBits must match to use the table). */
    storage: z.enum(['fp32', 'int8', 'int4']),
    /** KV-cache lengths (past tokens + the new one) each layer is timed at; the first is the table's seqLen. */
    kvLengths: z.array(positiveInt.max(32768)).min(1).max(8),
    models: z.array(BenchmarkModelSchema).min(2).max(64),
    /** Timed decode steps per file and KV length (the median is kept), after `warmup` untimed ones. */
    samples: positiveInt.max(1000).default(15),
    warmup: z.number().int().nonnegative().max(100).default(3),
    /** onnxruntime intra-op threads (the serving runtime's count gives the comparable figure). */
    threads: z.number().int().nonnegative().max(64).default(0),
    /** The whole benchmark stops here; what was measured is still uploaded (marked incomplete). */
    timeLimitSec: positiveInt.max(3600).default(300),
    /** The device waits for this many quiet milliseconds without inference before each timed file. */
    idleQuietMs: z.number().int().nonnegative().max(600_000).default(2000),
    /** Where the table goes: a presigned PUT (the device's own key; checked against download.allowedHosts). */
    upload: z.object({ url: UrlSchema }).strict(),
  })
  .strict()
  .superRefine((d, ctx) => {
    const artifacts = new Set(d.artifacts.map((a) => a.name));
    const names = new Set<string>();
    d.models.forEach((m, i) => {
      if (names.has(m.name)) ctx.addIssue({ code: 'custom', path: ['models', i, 'name'], message: `duplicate model ${m.name}` });
      if (!artifacts.has(m.name)) ctx.addIssue({ code: 'custom', path: ['models', i, 'name'], message: `${m.name} is not one of the artifacts` });
      names.add(m.name);
    });
  });

export type BenchmarkDocument = z.output<typeof BenchmarkDocumentSchema>;
export type BenchmarkDocumentInput = z.input<typeof BenchmarkDocumentSchema>;
export type BenchmarkModel = z.output<typeof BenchmarkModelSchema>;
export type BenchmarkModelInput = z.input<typeof BenchmarkModelSchema>;

/** Validates a benchmark@1 job document. */
export function parseBenchmarkDocument(value: unknown): BenchmarkDocument {
  return parseWith(BenchmarkDocumentSchema, value, `${BENCHMARK_SCHEMA} job document`);
}
