// What each `fleetlm <command> --json` prints, in one place: one zod schema per command (a top-level object,
// numbers as numbers, stable key names), and the error object every command writes to stderr with --json.
// docs/operator.md ("--json output") points here; test/cli/json-output.test.ts validates real outputs.
import { z } from 'zod';
import { SEARCH_OBJECTIVES } from '../models/search/objective.ts';
import { RollbackAuthorizationSchema } from '../contracts/rollback-authorization.ts';

const num = z.number();
const int = z.number().int();
const count = z.number().int().nonnegative();
const str = z.string();
const iso = z.string().regex(/^\d{4}-\d{2}-\d{2}T/, 'an ISO 8601 time');

/** `{"error":{"code","message","exitCode","hint"?}}`, one line on stderr, for every command given --json. */
export const JsonErrorSchema = z.strictObject({
  error: z.strictObject({
    /** A FleetError code (VALIDATION_*, TRANSPORT_*, USAGE_*, OUTCOME_*, ...), or ERROR for anything else. */
    code: z.string().regex(/^[A-Z][A-Z0-9_]*$/),
    message: str,
    /** The process exit code (cli/exit-codes.ts). */
    exitCode: int,
    /** `run 'fleetlm <cmd> --help'` for usage errors and invalid input. */
    hint: str.optional(),
  }),
});

const DeviceProgressSchema = z.looseObject({
  thingName: str,
  status: str,
  executionNumber: int.optional(),
  retryAttempt: int.optional(),
  lastUpdatedAt: iso.optional(),
  /** IoT Jobs status details: string values by the Jobs API's rule. */
  statusDetails: z.record(str, str),
  online: z.boolean().nullable().optional(),
  lastSeen: z.union([num, iso]).nullable().optional(),
});

/** A rollout job's progress (`status`, `cancel`, the `final` of watched commands). */
const JobProgressSchema = z.strictObject({
  jobId: str,
  status: str,
  modelId: str.optional(),
  version: str.optional(),
  description: str.optional(),
  reasonCode: str.optional(),
  comment: str.optional(),
  createdAt: iso.optional(),
  completedAt: iso.optional(),
  /** Execution status (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, ...) -> devices in it; statuses with none are left out. */
  counts: z.record(z.string().regex(/^[A-Z_]+$/), count),
  devices: z.array(DeviceProgressSchema),
  done: z.boolean(),
});

const ManifestFileSchema = z.looseObject({ name: str, size: count, sha256: z.string().regex(/^[0-9a-f]{64}$/), role: str });

const PublishSchema = z.strictObject({
  modelId: str,
  version: str,
  bucket: str,
  prefix: str,
  manifest: z.looseObject({ format: str, modelId: str, version: str, createdAt: iso, entry: str, files: z.array(ManifestFileSchema) }),
  manifestSha256: str,
  manifestSize: count,
  signature: z.looseObject({ format: str, algorithm: str, keyId: str, signature: str }),
  files: z.array(ManifestFileSchema),
  totalBytes: count,
  ignored: z.array(str),
  /** The bundle check (models/runtime/bundle-check.ts), or 'skipped' with --skip-bundle-checks. */
  check: z.union([z.literal('skipped'), z.looseObject({ modelVocabSize: count, tokenizerVocabSize: count, promptTokens: count, tokenId: count, tokenText: str })]),
});

const RolloutResultShape = {
  jobId: str,
  jobArn: str,
  modelId: str,
  version: str,
  targets: z.array(str),
  targetCount: count,
  document: z.looseObject({ schema: str }),
  config: z.looseObject({}),
  /** With --watch: the job's progress when it ended. */
  final: JobProgressSchema.optional(),
};

const AgentRolloutSchema = z.strictObject({
  jobId: str,
  jobArn: str,
  version: str,
  targets: z.array(str),
  targetCount: count,
  document: z.looseObject({ schema: str }),
  config: z.looseObject({}),
  published: z.array(z.looseObject({ version: str, platform: str, arch: str, prefix: str, uploaded: z.boolean() })),
  final: JobProgressSchema.optional(),
});

const DeploymentRefSchema = z.looseObject({ jobId: str, modelId: str, version: str, status: str });

const TelemetrySummarySchema = z.strictObject({
  key: str,
  messages: count,
  devices: count,
  requests: count,
  firstTokenMsP50: num.nullable(),
  firstTokenMsP95: num.nullable(),
  tokensPerSecondP50: num.nullable(),
  rssMb: num.nullable(),
  energyJ: num,
  energyEstimated: z.boolean(),
});

const SearchSchema = z.strictObject({
  format: z.literal('fleetlm/search-result@1'),
  spec: z.looseObject({ format: str, vocabSize: count, contextLength: count, blocks: z.array(z.looseObject({ width: count, layers: count, heads: count })) }),
  params: count,
  flops: num,
  decodeMemoryBytes: count,
  weightBytes: count,
  /** What the search maximised (SEARCH_OBJECTIVES) and the design's value of it. */
  objective: z.enum(SEARCH_OBJECTIVES),
  score: num,
  entropy: num,
  entropyAttention: num,
  entropyFfn: num,
  rho: num,
  latencyMs: num.nullable(),
  budgets: z.looseObject({ params: num.optional(), flops: num.optional(), decodeMemoryBytes: num.optional(), latencyMs: num.optional(), rhoMax: num }),
  device: z.looseObject({ id: str, unit: str }).nullable(),
  settings: z.looseObject({ iterations: count, population: count, seqLen: count }),
  seed: int,
  stats: z.looseObject({ evaluated: count, feasible: count, elapsedMs: num }),
});

const BuildSchema = z.strictObject({
  modelPath: str,
  externalDataPath: str.nullable(),
  modelBytes: count,
  externalDataBytes: count,
  parameters: count,
  nodes: count,
  fused: z.boolean(),
  activation: str,
  weights: z.looseObject({ source: str }),
  arch: str.nullable(),
  /** The tokenizer written beside the model (source file), GPT-2's (source gpt2), or none. */
  tokenizer: z.union([
    z.strictObject({ source: z.literal('file'), from: str, path: str, configPath: str.nullable(), vocabSize: count }),
    z.strictObject({ source: z.enum(['gpt2', 'none']) }),
  ]),
  seconds: num,
});

const ImportSchema = z.strictObject({
  outDir: str,
  architecture: str,
  spec: z.looseObject({ vocabSize: count, blocks: z.array(z.looseObject({})) }),
  activation: str,
  parameters: count,
  dtypes: z.record(str, count),
  checkpointFiles: z.array(z.looseObject({ name: str, bytes: count })),
  fused: z.boolean(),
  nodes: count,
  files: z.array(z.looseObject({ name: str, bytes: count })),
  warnings: z.array(str),
  seconds: num,
});

const GenerateSchema = z.strictObject({
  text: str,
  tokens: z.array(int),
  promptTokens: count,
  stopReason: str,
  firstTokenMs: num.nullable(),
  tokensPerSecond: num.nullable(),
  totalMs: num,
  loadMs: num,
  model: z.looseObject({ path: str, vocabSize: count, layers: count, contextLength: count, threads: count, tokenizer: str }),
});

const PerplexitySchema = z.strictObject({
  model: str,
  text: str,
  perplexity: num,
  meanNll: num,
  scoredTokens: count,
  totalTokens: count,
  windows: count,
  window: count,
  stride: count,
  ms: num,
});

const FileRefSchema = z.looseObject({ path: str, bytes: count });

const CompressSchema = z.strictObject({
  format: z.literal('fleetlm/compress-report@1'),
  input: FileRefSchema.extend({ embedding: str, vocab: count, width: count }),
  output: FileRefSchema.extend({ externalDataPath: str.nullable() }),
  embedding: z.looseObject({ method: str, ratio: num, relativeError: num, meanCosine: num, denseElements: count, storedElements: count }),
  why: str,
  candidates: z.array(z.looseObject({})).optional(),
  tiedHead: z.looseObject({ mode: str }).nullable(),
  seconds: num,
});

const QuantizeSchema = z.strictObject({
  format: z.literal('fleetlm/quantize-report@1'),
  bits: z.union([z.literal(4), z.literal(8)]),
  blockSize: count,
  symmetric: z.boolean(),
  accuracyLevel: count,
  quantizedWeights: count,
  weightFloatBytes: count,
  weightQuantizedBytes: count,
  floatCopiesKept: z.array(str),
  initializerBytesBefore: count,
  initializerBytesAfter: count,
  worstRelativeError: z.looseObject({ name: str, value: num }).nullable(),
  meanRelativeError: num.nullable(),
  weights: z.array(z.looseObject({ name: str, k: count, n: count })),
  skipped: z.array(z.looseObject({ node: str, reason: str })),
  input: FileRefSchema,
  output: FileRefSchema,
  seconds: num,
  carried: z.array(z.unknown()),
  quality: z.looseObject({}).optional(),
  evaluation: z.looseObject({}).optional(),
});

const TrainSchema = z.strictObject({
  out: str,
  tokenizer: str,
  tokenizerPath: str.nullable(),
  parameters: count,
  steps: count,
  stepsThisRun: count,
  tokensSeen: count,
  finalLoss: num,
  evalLoss: num.nullable(),
  evalPerplexity: num.nullable(),
  tokensPerSecond: num,
  gemmThreads: count,
  seconds: num,
  trainDocuments: count,
  validationDocuments: count,
});

const EndpointsSchema = z.strictObject({
  region: str,
  mqtt: z.strictObject({ host: str, port: count, url: str }),
  iotEndpoint: str,
  s3: z.strictObject({ endpoint: str, bucket: str, forcePathStyle: z.literal(true) }),
  credentials: z.strictObject({ accessKeyId: str, secretAccessKey: str }),
  telemetryDir: str,
});

const DeviceRegisterSchema = z.strictObject({
  mode: z.enum(['aws', 'local']),
  thingName: str,
  group: str.nullable(),
  certificateArn: str.nullable(),
  files: z.strictObject({ config: str, certificate: str.nullable(), privateKey: str.nullable(), fleetPublicKey: str, mqttPassword: str.nullable() }),
  mqtt: z.strictObject({ host: str, port: count, tls: z.boolean() }),
  notes: z.array(str),
});

const DemoSchema = z.looseObject({
  dir: str,
  timings: z.array(z.looseObject({})),
  totalMs: num,
  published: z.array(z.looseObject({ modelId: str, version: str })),
  goodJob: JobProgressSchema,
  completions: z.array(z.looseObject({})),
  report: z.array(z.looseObject({})),
  evaluation: z.looseObject({ perplexityDense: num, perplexityCompressed: num, tokens: count }),
  quality: z.looseObject({ passed: z.boolean(), totalChange: num }),
  compression: z.looseObject({ method: str, ratio: num, why: str }),
  endpoints: EndpointsSchema,
});

/**
 * `fleetlm <command path> --json` -> the shape of its stdout. Every command that has a --json flag has an entry
 * (test/cli/json-output.test.ts checks the catalog against this table).
 */
export const JSON_OUTPUTS = {
  search: SearchSchema,
  build: BuildSchema,
  import: ImportSchema,
  generate: GenerateSchema,
  perplexity: PerplexitySchema,
  compress: CompressSchema,
  quantize: QuantizeSchema,
  train: TrainSchema,
  'local up': EndpointsSchema,
  'local endpoints': EndpointsSchema,
  publish: PublishSchema,
  /** A model rollout; with --agent-package the agent rollout's shape (AgentRolloutSchema). */
  rollout: z.union([z.strictObject(RolloutResultShape), AgentRolloutSchema]),
  /** A rollout's job; `canary` is its `<job>-canary` job when it had one (status NOT_CREATED until the canary succeeded). */
  status: JobProgressSchema.extend({ canary: JobProgressSchema.optional() }),
  /** The jobs `cancel` canceled (the rollout's and its canary's), and where each stands now. */
  cancel: z.strictObject({
    jobId: str,
    canceled: z.array(str),
    status: str.optional(),
    counts: JobProgressSchema.shape.counts.optional(),
    canary: z.strictObject({ jobId: str, status: str, counts: JobProgressSchema.shape.counts }).optional(),
  }),
  rollback: z.strictObject({
    from: DeploymentRefSchema,
    to: DeploymentRefSchema,
    /** The current job, when it was still running and rollback canceled it first. */
    canceled: str.optional(),
    jobId: str,
    final: JobProgressSchema.optional(),
  }),
  /** `--list`: every approval request with its figures (never the token); otherwise the decision just sent. */
  approve: z.union([
    z.strictObject({ approvals: z.array(z.looseObject({ executionName: str, runId: str, versions: z.array(z.looseObject({ version: str })), decision: z.looseObject({ approved: z.boolean() }).nullable() })) }),
    z.strictObject({ executionName: str, approved: z.boolean(), reason: str.nullable(), decidedAt: iso, versions: z.array(z.looseObject({ version: str })) }),
  ]),
  /** The benchmark run (one job per device); with --wait, each device's final status. */
  benchmark: z.strictObject({
    run: z.looseObject({ format: z.literal('fleetlm/benchmark-run@1'), runId: str, group: str, deviceClass: str, storage: str, jobs: z.array(z.looseObject({ thingName: str, jobId: str, tableKey: str })) }),
    finished: z.array(z.strictObject({ thingName: str, status: str, details: z.record(z.string(), str) })).optional(),
  }),
  /** The merged tables per device class (and where they went); with --check, predicted vs reported latency. */
  latency: z.union([
    z.strictObject({ runId: str, alsoMerged: z.array(str).optional(), missing: z.array(str), classes: z.array(z.looseObject({ deviceClass: str, storage: str, devices: z.array(str), key: str })) }),
    z.strictObject({ goal: num, rows: z.array(z.looseObject({ deviceClass: str })) }),
  ]),
  /** The authorization as signed (RollbackAuthorizationSchema) and the file it went to. */
  'authorize-rollback': RollbackAuthorizationSchema.extend({ file: str }),
  /** skipped: messages left out, of a newer major schema (a warning on stderr names them) or malformed. */
  telemetry: z.strictObject({ messages: count, skipped: z.strictObject({ newerSchema: count, invalid: count }), byDevice: z.array(TelemetrySummarySchema), byVersion: z.array(TelemetrySummarySchema) }),
  keygen: z.strictObject({ privateKey: str, publicKey: str, replaced: z.boolean() }),
  'kms-public-key': z.strictObject({ keyId: str, publicKey: str }),
  devices: z.strictObject({
    /** False when fleet indexing (online state) is off or unreadable: `online` is then null. */
    indexed: z.boolean(),
    devices: z.array(
      z.strictObject({
        thingName: str,
        online: z.boolean().nullable(),
        lastSeen: num.nullable(),
        disconnectReason: str.nullable(),
        groups: z.array(str),
        model: str.nullable(),
        job: z.strictObject({ jobId: str, status: str }).nullable(),
        temperatureC: num.nullable(),
        powerW: num.nullable(),
        tokensPerSecondP50: num.nullable(),
        firstTokenMsP50: num.nullable(),
        rssMb: num.nullable(),
        requests: num.nullable(),
        energyJ: num.nullable(),
        energyEstimated: z.boolean().nullable(),
      }),
    ),
  }),
  jobs: z.strictObject({
    jobs: z.array(
      z.strictObject({
        jobId: str,
        modelId: str,
        version: str,
        group: str.nullable(),
        status: str,
        reasonCode: str.nullable(),
        createdAt: iso,
        completedAt: iso.nullable(),
        counts: z.strictObject({ succeeded: count, failed: count, rejected: count, timedOut: count, canceled: count, removed: count, inProgress: count, queued: count }),
        total: count,
        /** On a canary job, the rollout it gates (created only once the canary succeeded); null otherwise. */
        canaryOf: str.nullable(),
      }),
    ),
  }),
  versions: z.strictObject({
    versions: z.array(
      z.strictObject({
        modelId: str,
        version: str,
        createdAt: iso,
        files: count,
        totalBytes: count,
        modelBytes: count,
        compression: z.unknown(),
        quality: z.looseObject({ passed: z.boolean().nullable().optional(), totalChange: num.nullable() }).nullable(),
        perplexity: num.nullable(),
        deprecated: z.looseObject({ deprecatedAt: iso, reason: str }).nullable(),
        devices: z.array(str),
      }),
    ),
  }),
  deprecate: z.strictObject({ modelId: str, version: str, deprecated: z.looseObject({ deprecatedAt: iso, reason: str }).nullable() }),
  console: z.strictObject({ url: str, port: count, actions: z.boolean(), profile: str }),
  'device register': DeviceRegisterSchema,
  'agent package': z.strictObject({
    version: str,
    arch: str,
    topFolder: str,
    tarball: str,
    tarballBytes: count,
    deb: str.optional(),
    debBytes: count.optional(),
    launcher: z.boolean(),
    unpackedBytes: count,
  }),
  demo: DemoSchema,
} as const satisfies Record<string, z.ZodType>;

export type JsonOutputCommand = keyof typeof JSON_OUTPUTS;
