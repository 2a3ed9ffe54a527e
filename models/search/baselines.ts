// Hand-designed reference points for the search: the uniform GPT-2 recipe scaled to a budget.
import { parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import { countParameters } from '../arch/accounting.ts';

/** Vocabulary and context of the baseline (GPT-2's by default). */
export interface BaselineOptions {
  vocabSize?: number;
  contextLength?: number;
}

/** GPT-2's proportions at width E: E/64 layers and heads of 64, FFN 4E, tied head. */
export function gpt2StyleSpec(width: number, options: BaselineOptions = {}): ArchSpec {
  const n = Math.max(1, Math.round(width / 64));
  return parseArchSpec({
    name: `gpt2-style-${width}`,
    vocabSize: options.vocabSize ?? 50257,
    contextLength: options.contextLength ?? 1024,
    blocks: [{ width, ffnRatio: 4, layers: n, heads: n, headDim: 64 }],
    tiedHead: true,
  });
}

/** The widest GPT-2-style design (width a multiple of 64) within a parameter budget, or null. */
export function uniformGpt2Design(paramBudget: number, options: BaselineOptions = {}): ArchSpec | null {
  let best: ArchSpec | null = null;
  for (let width = 64; width <= 8192; width += 64) {
    const spec = gpt2StyleSpec(width, options);
    if (countParameters(spec) > paramBudget) break;
    best = spec;
  }
  return best;
}
