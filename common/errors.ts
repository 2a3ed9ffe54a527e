// Typed errors shared by every FleetLM program. Each has a stable `code` callers can switch on,
// and a message that states the rule, the value that broke it, and what is allowed.

/** Codes of ValidationError: a person must change what they passed in (exit status 2). */
export type ValidationCode =
  | 'VALIDATION'
  | 'VALIDATION_API_TOKEN'
  | 'VALIDATION_ARCHIVE'
  | 'VALIDATION_CANCELED'
  | 'VALIDATION_CHECKSUM'
  | 'VALIDATION_DEPRECATED'
  | 'VALIDATION_DISK_FULL'
  | 'VALIDATION_FLEET_KEY'
  | 'VALIDATION_HF_CHECKPOINT'
  | 'VALIDATION_HF_CONFIG'
  | 'VALIDATION_HTTP'
  | 'VALIDATION_INFEASIBLE_BUDGET'
  | 'VALIDATION_JOB_LIMIT'
  | 'VALIDATION_KEY_EXISTS'
  | 'VALIDATION_MANIFEST_EXPIRED'
  | 'VALIDATION_MANIFEST_MISMATCH'
  | 'VALIDATION_MANIFEST_MISSING'
  | 'VALIDATION_NOTHING_TO_QUANTIZE'
  | 'VALIDATION_NO_EMBEDDING'
  | 'VALIDATION_NO_LAUNCHER'
  | 'VALIDATION_OUT_DIR'
  | 'VALIDATION_PACKAGE'
  | 'VALIDATION_PATH'
  | 'VALIDATION_PLATFORM'
  | 'VALIDATION_QUALITY_GATE'
  | 'VALIDATION_QUANT_ACCURACY'
  | 'VALIDATION_QUANT_BITS'
  | 'VALIDATION_QUANT_BLOCK'
  | 'VALIDATION_RATIO'
  | 'VALIDATION_ROLLBACK_AUTHORIZATION'
  | 'VALIDATION_ROLLBACK_REFUSED'
  | 'VALIDATION_SIGNATURE'
  | 'VALIDATION_SIZE'
  | 'VALIDATION_TOO_LARGE'
  | 'VALIDATION_TT_SHAPE'
  | 'VALIDATION_URL_NOT_ALLOWED'
  | 'VALIDATION_URL_REDIRECT'
  | 'VALIDATION_VERSION_EXISTS'
  /** A tokenizer that does not fit the model's logits (models/runtime/vocab-match.ts). */
  | 'VALIDATION_TOKENIZER_MISMATCH'
  /** A checkpoint's tokenizer is not where build looks for it (models/checkpoint/checkpoint-tokenizer.ts). */
  | 'VALIDATION_TOKENIZER_MISSING'
  /** Publish's bundle check (models/runtime/bundle-check.ts): the model does not load in onnxruntime. */
  | 'VALIDATION_BUNDLE_LOAD'
  /** Publish's bundle check: the bundle's tokenizer does not fit the model's vocabulary. */
  | 'VALIDATION_BUNDLE_VOCAB'
  /** Publish's bundle check: the model's logits are NaN, infinite or equal for every token. */
  | 'VALIDATION_BUNDLE_LOGITS'
  /** Publish's bundle check: the model loads but cannot generate and decode a token. */
  | 'VALIDATION_BUNDLE_GENERATE'
  /** `fleetlm approve`: no pending approval for the execution, or it was already answered. */
  | 'VALIDATION_APPROVAL'
  /** A versioned message (telemetry, a layer-latency table) of a newer major version than this program reads. */
  | 'VALIDATION_SCHEMA_VERSION';

/** Codes of TransportError. */
export type TransportCode =
  | 'TRANSPORT'
  | 'TRANSPORT_INTERRUPTED'
  | 'TRANSPORT_JOBS_REJECTED'
  | 'TRANSPORT_OFFLINE'
  | 'TRANSPORT_SUBSCRIBE_REFUSED'
  | 'TRANSPORT_TIMEOUT'
  | 'TRANSPORT_UPLOAD';

/** Codes of ModelError. */
export type ModelCode =
  | 'MODEL'
  | 'MODEL_CHECKPOINT'
  | 'MODEL_CORRUPT'
  | 'MODEL_DISPOSED'
  | 'MODEL_INVALID'
  | 'MODEL_IO'
  | 'MODEL_NOT_FOUND'
  | 'MODEL_NO_REUSE'
  | 'MODEL_OPTIONS'
  | 'MODEL_RUN'
  | 'MODEL_WEIGHTS'
  | 'MODEL_BENCHMARK';

/** The agent's install state machine (edge-agent/install-state-machine.ts) and its restarts. */
export type StateCode = 'STATE_BUSY' | 'STATE_IDLE' | 'STATE_NO_RESTART' | 'STATE_TRANSITION' | 'AGENT_RESTARTING';

/** How a watched rollout ended when it did not succeed (fleet/job-outcome.ts; exit 3 or 4). */
export type OutcomeCode = 'OUTCOME_JOB_FAILED' | 'OUTCOME_WATCH_TIMEOUT' | 'OUTCOME_CANARY_FAILED';

/** Every error code a FleetLM program raises: one union, so a switch over codes is checked by the compiler. */
export type FleetErrorCode = ValidationCode | TransportCode | ModelCode | StateCode | OutcomeCode | UsageCode;

/** True for the codes of bad input (what exits with status 2), without comparing string prefixes. */
export function isValidationCode(code: FleetErrorCode): code is ValidationCode {
  return code === 'VALIDATION' || code.startsWith('VALIDATION_');
}

/** Base class: a stable machine-readable code plus an optional underlying cause. */
export class FleetError extends Error {
  readonly code: FleetErrorCode;
  constructor(code: FleetErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad input or config: a person must change what they passed in. */
export class ValidationError extends FleetError {
  declare readonly code: ValidationCode;
  constructor(message: string, options?: { cause?: unknown; code?: ValidationCode }) {
    super(options?.code ?? 'VALIDATION', message, options);
  }
}

/** MQTT, HTTP or S3 failure; `cause` keeps the transport's own error. */
export class TransportError extends FleetError {
  declare readonly code: TransportCode;
  constructor(message: string, options?: { cause?: unknown; code?: TransportCode }) {
    super(options?.code ?? 'TRANSPORT', message, options);
  }
}

/** A model could not be loaded, built or run. */
export class ModelError extends FleetError {
  declare readonly code: ModelCode;
  constructor(message: string, options?: { cause?: unknown; code?: ModelCode }) {
    super(options?.code ?? 'MODEL', message, options);
  }
}

/** Turns anything thrown into a one-line message fit for a terminal. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    // Validation messages already name every bad field; their cause (a zod error) only repeats it.
    const showCause = err.cause instanceof Error && !(err instanceof ValidationError);
    const cause = showCause ? ` (cause: ${(err.cause as Error).message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

/** Codes of UsageError: the command line itself is wrong (unknown flag or command, missing option, bad choice; exit status 1). */
export type UsageCode =
  | 'USAGE'
  | 'USAGE_CONFLICTING_OPTIONS'
  | 'USAGE_EXCESS_ARGUMENTS'
  | 'USAGE_INVALID_ARGUMENT'
  | 'USAGE_MISSING_ARGUMENT'
  | 'USAGE_MISSING_COMMAND'
  | 'USAGE_MISSING_OPTION'
  | 'USAGE_MISSING_OPTION_VALUE'
  | 'USAGE_UNKNOWN_COMMAND'
  | 'USAGE_UNKNOWN_OPTION';

/** The command line does not parse (cli/conventions.ts turns commander's errors into these). */
export class UsageError extends FleetError {
  declare readonly code: UsageCode;
  constructor(message: string, options?: { cause?: unknown; code?: UsageCode }) {
    super(options?.code ?? 'USAGE', message, options);
  }
}
