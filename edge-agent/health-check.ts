// Post-install health check: load the new version beside the one serving, generate from the job's prompt,
// check that its scores are numbers and its output is not degenerate, and hold first-token latency and
// decode speed to the job's thresholds. A model that passes is handed back loaded, so the server can swap
// to it without a second load. Every failure carries a stable code (HEALTH_CHECK_CODES).
import { describeError } from '../common/errors.ts';
import type { HealthCheck } from '../contracts/job-document.ts';
import type { Manifest } from '../contracts/manifest.ts';
import type { GenerationStats, ModelRuntime, ServedModel } from './model-runtime.ts';
import type { ModelRef } from './model-store.ts';

/** Stable codes of health-check failures, as reported in the job's `statusDetails.code`. */
export const HEALTH_CHECK_CODES = {
  /** The model did not load (bad graph, tokenizer, out of memory) or not within healthCheck.timeoutMs. */
  load: 'HEALTH_LOAD_FAILED',
  /** Generation threw or ran past the deadline. */
  generation: 'HEALTH_GENERATION_FAILED',
  /** Some logits are NaN or infinite (a broken weight): greedy decoding would still emit token 0 at full speed. */
  nonFinite: 'HEALTH_NON_FINITE_LOGITS',
  /** No tokens, logits equal for every token, or text with nothing printable in it. */
  degenerate: 'HEALTH_DEGENERATE_OUTPUT',
  /** First-token latency or decode speed outside the job's thresholds. */
  threshold: 'HEALTH_THRESHOLD',
  /** The agent died during the check (the new model may be what killed it); set by the state machine on restart. */
  interrupted: 'HEALTH_CHECK_INTERRUPTED',
} as const;
export type HealthCheckCode = (typeof HEALTH_CHECK_CODES)[keyof typeof HEALTH_CHECK_CODES];

export type HealthCheckResult =
  | { ok: true; model: ServedModel; loadMs: number; stats: GenerationStats; sample: string }
  | { ok: false; code: HealthCheckCode; reason: string; loadMs: number; stats?: GenerationStats };

/** True when `text` has at least one character that is neither a control character nor U+FFFD. */
function hasPrintable(text: string): boolean {
  return /[^\p{Cc}\p{Cs}\uFFFD\s]/u.test(text);
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Loads and exercises a freshly installed version; never throws (failures are results). */
export async function runHealthCheck(
  runtime: ModelRuntime,
  dir: string,
  manifest: Manifest,
  ref: ModelRef,
  hc: HealthCheck,
  timeoutMs: number,
): Promise<HealthCheckResult> {
  const t0 = performance.now();
  let model: ServedModel;
  try {
    model = await withDeadline(runtime.load(dir, manifest, ref), timeoutMs, 'model load');
  } catch (err) {
    return { ok: false, code: HEALTH_CHECK_CODES.load, reason: `model failed to load: ${describeError(err)}`, loadMs: performance.now() - t0 };
  }
  const loadMs = performance.now() - t0;
  let stats: GenerationStats;
  let sample = '';
  try {
    // Greedy decoding keeps the check reproducible.
    stats = await withDeadline(
      // ignoreEos: an early end-of-text must not make a healthy model look like it generated nothing.
      model.generate({ prompt: hc.prompt, maxTokens: hc.maxTokens, temperature: 0, topP: 1, ignoreEos: true }, (t) => {
        sample += t;
      }),
      Math.max(1, timeoutMs - loadMs),
      'health-check generation',
    );
  } catch (err) {
    await model.dispose().catch(() => {});
    return { ok: false, code: HEALTH_CHECK_CODES.generation, reason: `generation failed: ${describeError(err)}`, loadMs };
  }
  const fail = async (code: HealthCheckCode, reason: string): Promise<HealthCheckResult> => {
    await model.dispose().catch(() => {});
    return { ok: false, code, reason, loadMs, stats };
  };
  if (model.inspectLogits) {
    // Score the prompt and what greedy decoding produced: the positions the check actually exercised.
    let r;
    try {
      r = await withDeadline(model.inspectLogits(hc.prompt + sample), Math.max(1, timeoutMs - (performance.now() - t0)), 'health-check scoring');
    } catch (err) {
      return fail(HEALTH_CHECK_CODES.generation, `scoring the health-check text failed: ${describeError(err)}`);
    }
    if (r.nonFinite > 0) {
      return fail(
        HEALTH_CHECK_CODES.nonFinite,
        `the model's logits must be finite; ${r.nonFinite} of ${r.values} values over ${r.positions} positions are NaN or infinite`,
      );
    }
    if (r.flatPositions > 0) {
      return fail(
        HEALTH_CHECK_CODES.degenerate,
        `the model's logits must tell tokens apart; they are all equal at ${r.flatPositions} of ${r.positions} positions`,
      );
    }
  }
  if (stats.tokens < 1) return fail(HEALTH_CHECK_CODES.degenerate, 'the model generated no tokens');
  if (!hasPrintable(sample)) {
    return fail(
      HEALTH_CHECK_CODES.degenerate,
      `the generated text must contain a printable character; got ${stats.tokens} tokens of ${JSON.stringify(sample.slice(0, 40))}`,
    );
  }
  const problems: string[] = [];
  if (stats.firstTokenMs > hc.maxFirstTokenMs) {
    problems.push(`first-token latency ${stats.firstTokenMs.toFixed(1)} ms exceeds maxFirstTokenMs ${hc.maxFirstTokenMs}`);
  }
  if (stats.tokensPerSecond < hc.minTokensPerSecond) {
    problems.push(`decode speed ${stats.tokensPerSecond.toFixed(2)} tokens/s is below minTokensPerSecond ${hc.minTokensPerSecond}`);
  }
  if (problems.length > 0) return fail(HEALTH_CHECK_CODES.threshold, problems.join('; '));
  return { ok: true, model, loadMs, stats, sample };
}
