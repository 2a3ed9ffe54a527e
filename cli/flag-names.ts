// Where error texts meet the command line: options and library fields are camelCase (`maxTokens`,
// `budgets.decodeMemoryBytes`), the user typed flags (`--max-tokens`, `--memory`). This is the one place that
// maps field paths to flag names, for a command's own option schema (parseFlags) and for the libraries it calls
// (LIBRARY_FIELDS, applied to every failure by cli/conventions.ts).
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';

/** The flag commander derives an option field from: `maxTokens` -> `--max-tokens`. */
export function flagOf(field: string): string {
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function describeIssues(issues: readonly z.core.$ZodIssue[], nameOf: (path: readonly PropertyKey[]) => string, given?: Record<string, unknown>): string {
  return issues
    .map((issue) => {
      const value = given && typeof issue.path[0] === 'string' ? given[issue.path[0]] : undefined;
      const shown = typeof value === 'string' ? ` (got ${JSON.stringify(value)})` : '';
      return `${nameOf(issue.path)}${shown}: ${issue.message}`;
    })
    .join('; ');
}

/**
 * Parses a command's options (commander's camelCase fields) with `schema`; the error names each bad flag and
 * what was given: `invalid build options: --seed (got "-1"): Too small: ...`. `labels` overrides a field's
 * name where it has another source too (an environment variable).
 */
export function parseFlags<S extends z.ZodType>(schema: S, raw: unknown, what: string, labels: Readonly<Record<string, string>> = {}): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const nameOf = (path: readonly PropertyKey[]): string => {
    if (path.length === 0) return '(options)';
    const [head, ...rest] = path.map(String);
    return [labels[head!] ?? flagOf(head!), ...rest].join('.');
  };
  const given = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : undefined;
  throw new ValidationError(`invalid ${what}: ${describeIssues(result.error.issues, nameOf, given)}`, { cause: result.error });
}

const HEALTH_CHECK_FIELDS = {
  'healthCheck.prompt': '--health-prompt',
  'healthCheck.maxFirstTokenMs': '--max-first-token-ms',
  'healthCheck.minTokensPerSecond': '--min-tokens-per-second',
} as const;

const SEARCH_FIELDS = {
  'budgets.params': '--params',
  'budgets.flops': '--flops',
  'budgets.decodeMemoryBytes': '--memory',
  'budgets.latencyMs': '--latency',
  device: '--device',
  computeUnit: '--unit',
  latencyTable: '--latency-table',
  seed: '--seed',
  iterations: '--iterations',
  population: '--population',
  parentSetSize: '--parents',
  blocks: '--blocks',
  embeddingWidth: '--embedding-width',
  minEmbeddingWidth: '--min-embedding-width',
  minAttentionRatio: '--min-attention-ratio',
  vocabSize: '--vocab',
  contextLength: '--context',
  seqLen: '--seq-len',
  bytesPerWeight: '--bytes-per-weight',
  family: '--family',
  weightBits: '--weight-bits',
  blockSize: '--block-size',
  ropeTheta: '--rope-theta',
  rhoMax: '--rho-max',
  alphaAttention: '--alpha-attention',
  alphaFfn: '--alpha-ffn',
  weightSharing: '--weight-sharing',
  tiedHead: '--untied-head',
} as const;

const GENERATION_FIELDS = { maxTokens: '--max-tokens', temperature: '--temperature', topP: '--top-p', topK: '--top-k', seed: '--seed', stop: '--stop', ignoreEos: '--ignore-eos' } as const;

/**
 * Library option fields -> the flag that sets them, per command (`fleetlm` and the command path left out).
 * Zod paths (`budgets.params`) are mapped in full; in hand-written library messages only the camelCase names
 * listed in TEXT_FIELDS are rewritten, whole words, so plain words ("device", "blocks") stay as they are.
 */
export const LIBRARY_FIELDS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  search: SEARCH_FIELDS,
  rollout: HEALTH_CHECK_FIELDS,
  rollback: HEALTH_CHECK_FIELDS,
  generate: GENERATION_FIELDS,
  perplexity: { maxTokens: '--max-tokens', window: '--window', stride: '--stride', chunk: '--chunk' },
};

/** camelCase field names that library messages use in running text, rewritten to flags for these commands. */
const TEXT_FIELDS: Readonly<Record<string, readonly string[]>> = {
  search: ['embeddingWidth', 'minEmbeddingWidth', 'minAttentionRatio', 'weightBits', 'bytesPerWeight', 'rhoMax'],
  generate: ['maxTokens', 'topP', 'topK'],
  perplexity: ['maxTokens'],
};

function isZodError(err: unknown): err is z.ZodError {
  return err instanceof z.ZodError;
}

/**
 * A ValidationError from a library, reworded for the command line of `command` (e.g. `search`): zod paths and
 * listed field names become the flags the user typed. Anything else comes back unchanged.
 */
export function withFlagNames(err: unknown, command: string): unknown {
  const fields = LIBRARY_FIELDS[command];
  if (!fields || !(err instanceof ValidationError)) return err;
  let message = err.message;
  if (isZodError(err.cause)) {
    // parseWith wrote `invalid ${what}: ${issues}`; keep `what`, rename the paths.
    const issues = err.cause.issues;
    const original = issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`).join('; ');
    const at = message.lastIndexOf(`: ${original}`);
    if (at >= 0) {
      const nameOf = (path: readonly PropertyKey[]): string => {
        const full = path.map(String).join('.');
        return fields[full] ?? (path.length > 0 ? (fields[String(path[0])] ?? full) : '(root)');
      };
      message = `${message.slice(0, at)}: ${describeIssues(issues, nameOf)}`;
    }
  }
  for (const word of TEXT_FIELDS[command] ?? []) {
    const flag = fields[word];
    if (flag) message = message.replace(new RegExp(`\\b${word}\\b`, 'g'), flag);
  }
  if (message === err.message) return err;
  return new ValidationError(message, { code: err.code, cause: err.cause ?? err });
}
