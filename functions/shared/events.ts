// Event schemas of the pipeline's Lambda steps. Each step takes the previous step's output, so the
// Step Functions state stays small: S3 keys and a few numbers, never model bytes.
import { z } from 'zod';
import { ModelIdSchema, ModelVersionSchema } from '../../contracts/manifest.ts';
import { ArchSpecSchema } from '../../models/arch/spec.ts';
import { SEARCH_OBJECTIVES } from '../../models/search/objective.ts';
import { pipelineSizeProblem } from './payload.ts';

const NAME = /^[a-z][a-z0-9-]{0,30}$/;
/** S3 keys written by the pipeline live under runs/{runId}/ (expired by a lifecycle rule). */
export const RunIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,80}$/, 'must be 1-80 of [A-Za-z0-9_-]');
export const S3KeySchema = z
  .string()
  .min(1)
  .max(1024)
  .refine((k) => !k.startsWith('/') && !k.split('/').includes('..'), 'must be a relative key without .. segments');

/** Evaluation texts live under eval/, the only prefix the evaluate function may read besides runs/. */
export const EvalTextKeySchema = S3KeySchema.refine((k) => k.startsWith('eval/'), 'must be under eval/ (the only prefix the evaluate function may read)');

export const BudgetSchema = z
  .object({
    deviceClass: z.string().regex(NAME, 'must be 1-31 of [a-z0-9-], starting with a letter'),
    /** Peak decode memory (weights + KV cache at the context length), bytes. */
    memoryBudgetBytes: z.number().int().positive(),
    /** Forward FLOPs over one context-length sequence. */
    flopsBudget: z.number().positive(),
    /** Predicted per-token latency bound on the class's device profile (models/search/device-profiles.ts). */
    latencyMs: z.number().positive().optional(),
    /**
     * The fleet-measured layer table of this class (`fleetlm latency` writes latency/<group>/<class>-<storage>.json);
     * the search then predicts latency from it instead of the roofline.
     */
    latencyTableKey: S3KeySchema.refine((k) => k.startsWith('latency/'), 'must be under latency/ (where fleetlm latency writes merged tables)').optional(),
  })
  .strict();

/** Search settings a request may tune (the rest are the search's defaults). */
export const SearchSettingsSchema = z
  .object({
    /** What the search maximises (models/search/objective.ts); absent means the search's default. */
    objective: z.enum(SEARCH_OBJECTIVES).optional(),
    iterations: z.number().int().positive().max(1_000_000).default(20_000),
    population: z.number().int().min(1).max(10_000).default(256),
    blocks: z.number().int().min(1).max(8).default(3),
    maxLayersPerBlock: z.number().int().min(1).max(64).default(16),
    widths: z.array(z.number().int().positive()).min(1).max(256).optional(),
    headDim: z.number().int().positive().max(256).default(64),
  })
  .strict();

/** Weight quantization after the embedding compression (models/quantization, MatMulNBits). */
export const QuantizeSettingsSchema = z
  .object({
    bits: z.union([z.literal(4), z.literal(8)]),
    blockSize: z
      .number()
      .int()
      .refine((b) => b >= 16 && (b & (b - 1)) === 0, 'must be a power of two >= 16 (MatMulNBits)')
      .default(32),
    symmetric: z.boolean().default(false),
  })
  .strict();
/** Embedding compression (models/compression/auto.ts) at a target ratio, then optionally weight quantization. */
export const CompressionSettingsSchema = z
  .object({
    method: z.enum(['tt-row', 'tt-matrix', 'svd', 'auto']).default('tt-row'),
    ratio: z.number().min(1).max(10_000).default(4),
    quantize: QuantizeSettingsSchema.optional(),
  })
  .strict();
export type Budget = z.output<typeof BudgetSchema>;

/** Input models live under inputs/, the only prefix the search and build steps may read besides runs/. */
export const InputPrefixSchema = S3KeySchema.max(256, 'must be at most 256 characters (it travels in every shard of the state)').refine((k) => k.startsWith('inputs/') && k.endsWith('/'), 'must be a folder under inputs/ ending in / (the only prefix the pipeline reads input models from)');

/**
 * The model a run ships: a FleetLM checkpoint folder (arch.json, one .safetensors written by `fleetlm train`,
 * its tokenizer), a Hugging Face folder (config.json, safetensors, tokenizer.json as `save_pretrained` writes
 * it), or random weights on a searched design, for benchmarking the pipeline only (never rolled out unless
 * the request sets rollout.enabled).
 */
export const ModelSourceSchema = z.discriminatedUnion(
  'kind',
  [
    z.object({ kind: z.literal('checkpoint'), prefix: InputPrefixSchema }).strict(),
    z.object({ kind: z.literal('huggingface'), prefix: InputPrefixSchema }).strict(),
    z.object({ kind: z.literal('random-weights'), benchmarkOnly: z.literal(true, { error: 'must be true: random weights are for benchmarking the pipeline only' }) }).strict(),
  ],
  {
    error:
      'must name the model to ship: {"kind":"checkpoint","prefix":"inputs/<dir>/"} (a `fleetlm train` checkpoint), {"kind":"huggingface","prefix":"inputs/<dir>/"} ' +
      '(a save_pretrained folder), or {"kind":"random-weights","benchmarkOnly":true} (benchmarks only)',
  },
);
export type ModelSource = z.output<typeof ModelSourceSchema>;

/** What starts a pipeline execution. */
export const PipelineRequestSchema = z
  .object({
    runId: RunIdSchema,
    modelId: ModelIdSchema,
    /** Base version; each device class publishes `{version}-{deviceClass}`. */
    version: ModelVersionSchema,
    /** What to ship (required): a trained model, or random weights for benchmarks. */
    model: ModelSourceSchema,
    seed: z.number().int().nonnegative().default(1),
    vocabSize: z.number().int().positive().max(1_000_000).default(50257),
    contextLength: z.number().int().positive().max(32768).default(256),
    /** Budgets to search; defaults to the deployment's device classes. */
    budgets: z.array(BudgetSchema).min(1).max(200).optional(),
    /** Candidates per budget searched in different shards (different seeds). */
    seedsPerBudget: z.number().int().min(1).max(16).default(1),
    search: SearchSettingsSchema.default({ iterations: 20_000, population: 256, blocks: 3, maxLayersPerBlock: 16, headDim: 64 }),
    compression: CompressionSettingsSchema.default({ method: 'tt-row', ratio: 4 }),
    /** Evaluation text in the artifacts bucket; absent means the bundled default text. */
    evalTextKey: EvalTextKeySchema.optional(),
    evalTokens: z.number().int().min(16).max(100_000).default(512),
    rollout: z
      .object({
        /**
         * Ask for a rollout (it still waits for `fleetlm approve`). Default: true for a checkpoint or Hugging
         * Face model, false for random weights; the plan step writes the resolved value.
         */
        enabled: z.boolean().optional(),
        /** deviceClass -> thing group, overriding the deployment's groups. */
        thingGroups: z.record(z.string(), z.string().min(1).max(128)).optional(),
      })
      .strict()
      .default({}),
  })
  .strict()
  // What the state machine can carry (functions/shared/payload.ts); the plan step checks default budgets the same way.
  .superRefine((r, ctx) => {
    const problem = r.budgets && pipelineSizeProblem(r, r.budgets);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, path: ['budgets'] });
  });
export type PipelineRequest = z.output<typeof PipelineRequestSchema>;
export type PipelineRequestInput = z.input<typeof PipelineRequestSchema>;

/** One unit of Distributed Map work: one budget, one seed. */
export const ShardSchema = z
  .object({
    runId: RunIdSchema,
    shardId: z.string().regex(/^[a-z0-9-]{1,80}$/),
    modelId: ModelIdSchema,
    version: ModelVersionSchema,
    budget: BudgetSchema,
    model: ModelSourceSchema,
    seed: z.number().int().nonnegative(),
    vocabSize: z.number().int().positive(),
    contextLength: z.number().int().positive(),
    search: SearchSettingsSchema,
    compression: CompressionSettingsSchema,
    evalTextKey: EvalTextKeySchema.optional(),
    evalTokens: z.number().int().positive(),
  })
  .strict();
export type Shard = z.output<typeof ShardSchema>;

/** The plan before it is stored: the request and its shards (the plan step writes the shards to S3). */
export interface PlannedShards {
  request: PipelineRequest;
  shards: Shard[];
}

/** The plan step's output: the shards stay in S3 (the Distributed Map's ItemReader reads them), not in the state. */
export const PlanOutputSchema = z
  .object({
    request: PipelineRequestSchema,
    shardCount: z.number().int().positive(),
    /** JSON array of Shard under runs/{runId}/, read by the Map's ItemReader and by merge. */
    shardsKey: S3KeySchema,
    /** Prefix under runs/{runId}/ where the Map's ResultWriter exports child results. */
    resultsPrefix: S3KeySchema,
  })
  .strict();
export type PlanOutput = z.output<typeof PlanOutputSchema>;

/** A Distributed Map's output with ResultWriter: the Map Run and where its manifest.json was written. */
export const MapRunOutputSchema = z
  .object({ MapRunArn: z.string(), ResultWriterDetails: z.object({ Bucket: z.string(), Key: S3KeySchema }).passthrough() })
  .passthrough();
export type MapRunOutput = z.output<typeof MapRunOutputSchema>;

export const SearchSummarySchema = z
  .object({
    specKey: S3KeySchema,
    parameters: z.number().nonnegative(),
    forwardFlops: z.number().nonnegative(),
    decodeMemoryBytes: z.number().nonnegative(),
    /** Network entropy (nats), what MeRino maximises. */
    entropy: z.number(),
    latencyMs: z.number().nullable(),
  })
  .strict();
export const SearchOutputSchema = ShardSchema.extend({ search: SearchSummarySchema }).strict();
export type SearchOutput = z.output<typeof SearchOutputSchema>;

export const BuildSummarySchema = z
  .object({ modelPrefix: S3KeySchema, modelBytes: z.number().int().nonnegative(), files: z.array(z.string()).min(1) })
  .strict();
export const BuildOutputSchema = SearchOutputSchema.extend({ build: BuildSummarySchema }).strict();
export type BuildOutput = z.output<typeof BuildOutputSchema>;

export const CompressSummarySchema = z
  .object({
    modelPrefix: S3KeySchema,
    modelBytes: z.number().int().nonnegative(),
    files: z.array(z.string()).min(1),
    method: z.string(),
    /** Dense embedding elements / stored elements. */
    embeddingCompressionRatio: z.number().positive(),
    relativeError: z.number().nonnegative(),
    /** With quantization: the embedding-compressed float model (evaluated as its own step) and what the quantizer did. */
    embeddingModelPrefix: S3KeySchema.optional(),
    quantization: z.object({ bits: z.number().int(), blockSize: z.number().int(), symmetric: z.boolean(), weights: z.number().int().nonnegative() }).strict().optional(),
  })
  .strict();
export const CompressOutputSchema = BuildOutputSchema.extend({ compress: CompressSummarySchema }).strict();
export type CompressOutput = z.output<typeof CompressOutputSchema>;

export const EvaluateSummarySchema = z
  .object({
    tokens: z.number().int().positive(),
    baselinePerplexity: z.number().positive(),
    compressedPerplexity: z.number().positive(),
    /** (compressed - baseline) / baseline; the gate compares it with the configured threshold. */
    qualityDrop: z.number(),
    /** Perplexity change of each step (embedding compression, then quantization) on the same text. */
    steps: z
      .array(z.object({ step: z.string(), perplexityBefore: z.number().positive(), perplexityAfter: z.number().positive(), change: z.number() }).strict())
      .optional(),
  })
  .strict();
export const EvaluateOutputSchema = CompressOutputSchema.extend({ evaluate: EvaluateSummarySchema }).strict();
export type EvaluateOutput = z.output<typeof EvaluateOutputSchema>;

/** The plan plus the Distributed Map's result pointer (ResultPath $.shardResults). */
export const MergeInputSchema = PlanOutputSchema.extend({ shardResults: MapRunOutputSchema }).passthrough();
export type MergeInput = z.output<typeof MergeInputSchema>;

export const CandidateSchema = z
  .object({
    deviceClass: z.string(),
    modelId: ModelIdSchema,
    version: ModelVersionSchema,
    shardId: z.string(),
    specKey: S3KeySchema,
    modelPrefix: S3KeySchema,
    parameters: z.number().nonnegative(),
    evaluate: EvaluateSummarySchema,
    embeddingCompressionRatio: z.number().positive(),
    seed: z.number().int().nonnegative(),
  })
  .strict();
export type Candidate = z.output<typeof CandidateSchema>;

export const MergeOutputSchema = z
  .object({
    request: PipelineRequestSchema,
    candidates: z.array(CandidateSchema).min(1),
    /** Worst quality drop among the chosen candidates (what the gate checks). */
    maxQualityDrop: z.number(),
    summaryKey: S3KeySchema,
  })
  .strict();
export type MergeOutput = z.output<typeof MergeOutputSchema>;

/** The figures an approver sees for each published version (from evaluate and merge). */
export const PublishedQualitySchema = z
  .object({
    tokens: z.number().int().positive(),
    baselinePerplexity: z.number().positive(),
    perplexity: z.number().positive(),
    /** (perplexity - baseline) / baseline. */
    qualityDrop: z.number(),
    parameters: z.number().nonnegative(),
    embeddingCompressionRatio: z.number().positive(),
  })
  .strict();
export const PublishedSchema = z
  .object({
    deviceClass: z.string(),
    modelId: ModelIdSchema,
    version: ModelVersionSchema,
    prefix: S3KeySchema,
    manifestSha256: z.string(),
    totalBytes: z.number().int().nonnegative(),
    quality: PublishedQualitySchema.optional(),
  })
  .strict();
export const PublishOutputSchema = z
  .object({ request: PipelineRequestSchema, published: z.array(PublishedSchema).min(1) })
  .strict();
export type PublishOutput = z.output<typeof PublishOutputSchema>;

export const RolloutJobSchema = z
  .object({ deviceClass: z.string(), jobId: z.string(), jobArn: z.string(), targets: z.array(z.string()).min(1) })
  .strict();
/** One device class's canary, waiting for its outcome before the class's rollout job is created. */
export const CanaryJobSchema = z
  .object({
    deviceClass: z.string(),
    /** The rollout's job id; created by the canary-release step once every canary succeeded. */
    jobId: z.string(),
    canaryJobId: z.string(),
    canaryThings: z.array(z.string()).min(1),
    group: z.string(),
    modelId: z.string(),
    version: z.string(),
  })
  .strict();
/** The pipeline's canaries: started together, judged together by the canary-check step (PENDING until decided). */
export const CanaryStateSchema = z
  .object({
    startedAt: z.string().datetime(),
    jobs: z.array(CanaryJobSchema).min(1),
    state: z.enum(['PENDING', 'SUCCEEDED', 'FAILED', 'RELEASED']),
    reason: z.string().optional(),
  })
  .strict();
export const RolloutOutputSchema = z
  .object({ runId: RunIdSchema, jobs: z.array(RolloutJobSchema), skipped: z.string().optional(), canary: CanaryStateSchema.optional() })
  .strict();
export type RolloutOutput = z.output<typeof RolloutOutputSchema>;

/** The architecture stored at SearchSummary.specKey. */
export const StoredSpecSchema = ArchSpecSchema;

/** S3 prefix of a shard's scratch files. */
export function shardPrefix(runId: string, shardId: string): string {
  return `runs/${runId}/${shardId}/`;
}
