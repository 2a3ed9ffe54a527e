// Perplexity of a language model on a text with a sliding window, used to judge compression and
// training. Method: Hugging Face, "Perplexity of fixed-length models"
// (https://huggingface.co/docs/transformers/perplexity), scoring every token exactly once.
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseWith } from '../../common/validate.ts';
import type { LanguageModel } from './language-model.ts';

export const PerplexityOptionsSchema = z
  .object({
    /** Tokens the model sees at once; default: the model's context length. */
    window: z.number().int().min(2).optional(),
    /**
     * How far the window moves; default: half the window. Each token is scored at most once, with the
     * longest context the window allows; with stride = window the first token of each window is skipped.
     */
    stride: z.number().int().min(1).optional(),
    /** Tokens fed per forward pass inside a window (bounds the logits buffer to chunk x vocab). */
    chunk: z.number().int().min(1).max(65536).default(128),
    /** Evaluate only the first N tokens of the text. */
    maxTokens: z.number().int().min(2).optional(),
  })
  .strict();

export type PerplexityOptionsInput = z.input<typeof PerplexityOptionsSchema> & {
  /** Called after each window with tokens scored so far and the total to score. */
  onProgress?: (scored: number, total: number) => void;
};

export interface PerplexityResult {
  /** exp(mean negative log-likelihood). */
  perplexity: number;
  /** Mean negative log-likelihood per scored token, in nats. */
  meanNll: number;
  /** Tokens whose likelihood was scored: all but the first, less each later window's first token when stride = window. */
  scoredTokens: number;
  /** Tokens in the (possibly truncated) text. */
  totalTokens: number;
  windows: number;
  window: number;
  stride: number;
  ms: number;
}

/** -log softmax(row)[target], computed in float64 with the max shifted out. */
export function tokenNll(logits: Float32Array, offset: number, vocab: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) {
    const v = logits[offset + i]!;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i]! - max);
  return Math.log(sum) + max - logits[offset + target]!;
}

/**
 * The window starts and the first scored index of each: windows [begin, end) move by `stride`;
 * tokens before `from` were scored by an earlier window. Exported for tests.
 */
export function slidingWindows(n: number, window: number, stride: number): Array<{ begin: number; end: number; from: number }> {
  const out: Array<{ begin: number; end: number; from: number }> = [];
  let prevEnd = 0;
  for (let begin = 0; begin < n; begin += stride) {
    const end = Math.min(begin + window, n);
    // The window's first token has no prediction inside the window, so scoring starts at begin + 1.
    const from = Math.max(begin + 1, prevEnd);
    if (from < end) out.push({ begin, end, from });
    prevEnd = end;
    if (end === n) break;
  }
  return out;
}

/** Sliding-window perplexity of `model` on `text` (a string, or token ids). */
export async function perplexity(model: LanguageModel, text: string | readonly number[], options: PerplexityOptionsInput = {}): Promise<PerplexityResult> {
  const start = performance.now();
  const { onProgress, ...rest } = options;
  const opts = parseWith(PerplexityOptionsSchema, rest, 'perplexity options');
  const window = opts.window ?? model.info.contextLength;
  if (window === undefined) {
    throw new ValidationError('the model does not state its context length; pass a window (e.g. --window 1024)');
  }
  if (model.info.contextLength !== undefined && window > model.info.contextLength) {
    throw new ValidationError(`window ${window} exceeds the model's context length ${model.info.contextLength}`);
  }
  const stride = opts.stride ?? Math.max(1, Math.floor(window / 2));
  if (stride > window) throw new ValidationError(`stride ${stride} must not exceed the window ${window}, or tokens would go unscored`);
  let ids = typeof text === 'string' ? model.tokenizer.encode(text) : [...text];
  if (opts.maxTokens !== undefined && ids.length > opts.maxTokens) ids = ids.slice(0, opts.maxTokens);
  if (ids.length < 2) throw new ValidationError(`perplexity needs at least 2 tokens, the text has ${ids.length}`);
  const V = model.info.vocabSize;
  const windows = slidingWindows(ids.length, window, stride);
  const totalScored = windows.reduce((n, w) => n + w.end - w.from, 0);
  let nll = 0;
  let scored = 0;
  const state = model.createState(Math.max(...windows.map((w) => w.end - w.begin)));
  for (const w of windows) {
    state.reset();
    for (let at = w.begin; at < w.end; at += opts.chunk) {
      const stop = Math.min(at + opts.chunk, w.end);
      const logits = await model.step(state, ids.slice(at, stop), true);
      // Row j predicts the token at index at + j + 1.
      for (let j = 0; j < stop - at; j++) {
        const target = at + j + 1;
        if (target < w.from || target >= w.end) continue;
        nll += tokenNll(logits, j * V, V, ids[target]!);
        scored++;
      }
    }
    onProgress?.(scored, totalScored);
  }
  const meanNll = nll / scored;
  return {
    perplexity: Math.exp(meanNll),
    meanNll,
    scoredTokens: scored,
    totalTokens: ids.length,
    windows: windows.length,
    window,
    stride,
    ms: performance.now() - start,
  };
}
