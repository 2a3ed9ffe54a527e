// The quality gate: perplexity before and after every compression or quantization step of a model,
// the total change against the dense model, and the verdict that `publish` enforces (quality.json).
import { z } from 'zod';

/** File name of the gate record inside a model bundle directory. */
export const QUALITY_FILE = 'quality.json';

/** Default limit on the perplexity increase, as a fraction of the dense model's (matches the pipeline's maxQualityDrop). */
export const DEFAULT_MAX_PERPLEXITY_INCREASE = 0.15;

const finitePositive = z.number().finite().positive();

export const QualityStepSchema = z
  .object({
    /** What the step did, e.g. "embedding tt-row 2x" or "quantize int4 block 32 asym". */
    step: z.string().min(1),
    perplexityBefore: finitePositive,
    perplexityAfter: finitePositive,
    /** (after - before) / before. */
    change: z.number().finite(),
    /** Whether the step's output is what ships (false for a candidate tried and dropped). */
    shipped: z.boolean().default(true),
    detail: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();
export type QualityStep = z.output<typeof QualityStepSchema>;

export const QualityRecordSchema = z
  .object({
    format: z.literal('fleetlm/quality@1'),
    /** The evaluation text and how many tokens were scored. */
    text: z.string(),
    tokens: z.number().int().nonnegative(),
    baselinePerplexity: finitePositive,
    /** Largest allowed (shipped perplexity - baseline) / baseline. */
    maxPerplexityIncrease: z.number().finite().nonnegative(),
    steps: z.array(QualityStepSchema),
    /** (perplexity of the shipped model - baseline) / baseline. */
    totalChange: z.number().finite(),
    passed: z.boolean(),
    reason: z.string(),
  })
  .strict();
export type QualityRecord = z.output<typeof QualityRecordSchema>;

/** Relative perplexity change (after - before) / before. */
export function perplexityChange(before: number, after: number): number {
  return (after - before) / before;
}

/** One gate step from two perplexities. */
export function qualityStep(step: string, perplexityBefore: number, perplexityAfter: number, options: { shipped?: boolean; detail?: Record<string, unknown> } = {}): QualityStep {
  return {
    step,
    perplexityBefore,
    perplexityAfter,
    change: perplexityChange(perplexityBefore, perplexityAfter),
    shipped: options.shipped ?? true,
    ...(options.detail ? { detail: options.detail } : {}),
  };
}

/** Perplexity of what ships: the last shipped step's output, else the baseline (nothing changed the model). */
export function shippedPerplexity(baseline: number, steps: readonly QualityStep[]): number {
  const shipped = steps.filter((s) => s.shipped);
  return shipped.length > 0 ? shipped[shipped.length - 1]!.perplexityAfter : baseline;
}

/**
 * The verdict for a chain of steps: it passes when the shipped model's perplexity exceeds the dense
 * baseline by at most `maxIncrease` (a fraction). Computed from the figures, never taken on trust.
 */
export function judgeQuality(input: { text: string; tokens: number; baselinePerplexity: number; maxPerplexityIncrease: number; steps: readonly QualityStep[] }): QualityRecord {
  const shipped = shippedPerplexity(input.baselinePerplexity, input.steps);
  const totalChange = perplexityChange(input.baselinePerplexity, shipped);
  const passed = totalChange <= input.maxPerplexityIncrease;
  const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;
  const reason = passed
    ? `perplexity ${input.baselinePerplexity.toFixed(3)} -> ${shipped.toFixed(3)} (${pct(totalChange)}), within the limit of +${pct(input.maxPerplexityIncrease)}`
    : `perplexity ${input.baselinePerplexity.toFixed(3)} -> ${shipped.toFixed(3)} (${pct(totalChange)}) exceeds the limit of +${pct(input.maxPerplexityIncrease)}`;
  return {
    format: 'fleetlm/quality@1',
    text: input.text,
    tokens: input.tokens,
    baselinePerplexity: input.baselinePerplexity,
    maxPerplexityIncrease: input.maxPerplexityIncrease,
    steps: [...input.steps],
    totalChange,
    passed,
    reason,
  };
}

/** Re-judges a stored record (optionally under a different limit): what publish relies on. */
export function rejudge(record: QualityRecord, maxPerplexityIncrease = record.maxPerplexityIncrease): QualityRecord {
  return judgeQuality({ ...record, maxPerplexityIncrease });
}

/** Appends a step to an existing record (or starts one whose baseline is the step's input) and judges again. */
export function appendQualityStep(
  record: QualityRecord | undefined,
  step: QualityStep,
  defaults: { text: string; tokens: number; maxPerplexityIncrease?: number },
): QualityRecord {
  if (!record) {
    return judgeQuality({
      text: defaults.text,
      tokens: defaults.tokens,
      baselinePerplexity: step.perplexityBefore,
      maxPerplexityIncrease: defaults.maxPerplexityIncrease ?? DEFAULT_MAX_PERPLEXITY_INCREASE,
      steps: [step],
    });
  }
  return judgeQuality({ ...record, maxPerplexityIncrease: defaults.maxPerplexityIncrease ?? record.maxPerplexityIncrease, steps: [...record.steps, step] });
}

/** One line per step plus the verdict, for terminals and logs. */
export function formatQuality(record: QualityRecord): string {
  const lines = [`quality gate on ${record.tokens} tokens of ${record.text}: dense perplexity ${record.baselinePerplexity.toFixed(3)}`];
  for (const s of record.steps) {
    const sign = s.change >= 0 ? '+' : '';
    lines.push(`  ${s.step}: ${s.perplexityBefore.toFixed(3)} -> ${s.perplexityAfter.toFixed(3)} (${sign}${(s.change * 100).toFixed(2)}%)${s.shipped ? '' : ' [not shipped]'}`);
  }
  lines.push(`  verdict: ${record.passed ? 'PASS' : 'REJECT'}: ${record.reason}`);
  return lines.join('\n');
}
