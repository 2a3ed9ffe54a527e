// Post-install health check: load the new version beside the one serving, generate from the job's prompt,
// and hold first-token latency and decode speed to the job's thresholds. A model that passes is handed
// back loaded, so the server can swap to it without a second load.
import { describeError } from '../common/errors.ts';
import type { HealthCheck } from '../contracts/job-document.ts';
import type { Manifest } from '../contracts/manifest.ts';
import type { GenerationStats, ModelRuntime, ServedModel } from './model-runtime.ts';
import type { ModelRef } from './model-store.ts';

export type HealthCheckResult =
  | { ok: true; model: ServedModel; loadMs: number; stats: GenerationStats; sample: string }
  | { ok: false; reason: string; loadMs: number; stats?: GenerationStats };

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
    return { ok: false, reason: `model failed to load: ${describeError(err)}`, loadMs: performance.now() - t0 };
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
    return { ok: false, reason: `generation failed: ${describeError(err)}`, loadMs };
  }
  const problems: string[] = [];
  if (stats.tokens < 1) problems.push('generated no tokens');
  if (stats.firstTokenMs > hc.maxFirstTokenMs) {
    problems.push(`first-token latency ${stats.firstTokenMs.toFixed(1)} ms exceeds maxFirstTokenMs ${hc.maxFirstTokenMs}`);
  }
  if (stats.tokensPerSecond < hc.minTokensPerSecond) {
    problems.push(`decode speed ${stats.tokensPerSecond.toFixed(2)} tokens/s is below minTokensPerSecond ${hc.minTokensPerSecond}`);
  }
  if (problems.length > 0) {
    await model.dispose().catch(() => {});
    return { ok: false, reason: problems.join('; '), loadMs, stats };
  }
  return { ok: true, model, loadMs, stats, sample };
}
