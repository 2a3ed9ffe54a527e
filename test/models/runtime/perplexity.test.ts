import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mulberry32 } from '../../../models/random.ts';
import { promises as fs } from 'node:fs';
import { loadLanguageModel, perplexity, type LanguageModel } from '../../../models/runtime/index.ts';
import { slidingWindows, tokenNll } from '../../../models/runtime/perplexity.ts';

import { ValidationError } from '../../../common/errors.ts';
import { buildTiny, charTokenizer, tempDir } from './fixtures.ts';

/** Reference: -log softmax in plain arithmetic over a number array. */
function refNll(row: ArrayLike<number>, target: number): number {
  const xs = Array.from(row);
  const m = Math.max(...xs);
  const z = xs.reduce((s, x) => s + Math.exp(x - m), 0);
  return -(xs[target]! - m - Math.log(z));
}

describe('slidingWindows', () => {
  it('scores every token after the first exactly once when stride < window', () => {
    for (const [n, w, s] of [[100, 16, 8], [37, 10, 3], [10, 32, 16], [50, 8, 7]] as const) {
      const counts = new Array<number>(n).fill(0);
      for (const win of slidingWindows(n, w, s)) {
        expect(win.end - win.begin).toBeLessThanOrEqual(w);
        expect(win.from).toBeGreaterThan(win.begin);
        for (let t = win.from; t < win.end; t++) counts[t]!++;
      }
      expect(counts[0]).toBe(0);
      expect(counts.slice(1).every((c) => c === 1)).toBe(true);
    }
  });

  it('skips each window start when stride equals the window', () => {
    const wins = slidingWindows(20, 5, 5);
    expect(wins.map((w) => [w.begin, w.end, w.from])).toEqual([[0, 5, 1], [5, 10, 6], [10, 15, 11], [15, 20, 16]]);
  });
});

describe('tokenNll', () => {
  it('matches a plain log-softmax', () => {
    const rng = mulberry32(3);
    const row = Float32Array.from({ length: 50 }, () => (rng() - 0.5) * 20);
    for (const t of [0, 7, 49]) expect(tokenNll(row, 0, 50, t)).toBeCloseTo(refNll(row, t), 10);
  });
});

describe('perplexity', () => {
  const dir = tempDir('runtime-ppl');
  let model: LanguageModel;
  const rng = mulberry32(11);
  const ids = Array.from({ length: 60 }, () => Math.floor(rng() * 63));

  beforeAll(async () => {
    model = await loadLanguageModel(await buildTiny(dir, false), { tokenizer: charTokenizer(), intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await model.dispose();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('equals exp(mean NLL) from full-sequence logits within one window, for any chunk size', async () => {
    const seq = ids.slice(0, 30);
    const V = model.info.vocabSize;
    const logits = await model.logits(seq);
    let nll = 0;
    for (let t = 1; t < seq.length; t++) nll += refNll(logits.subarray((t - 1) * V, t * V), seq[t]!);
    const expected = Math.exp(nll / (seq.length - 1));
    for (const chunk of [1, 7, 128]) {
      const r = await perplexity(model, seq, { chunk });
      expect(r.scoredTokens).toBe(29);
      expect(r.windows).toBe(1);
      expect(r.perplexity).toBeCloseTo(expected, 4);
    }
  });

  it('slides a window over a longer text like the reference loop', async () => {
    const V = model.info.vocabSize;
    const window = 16;
    const stride = 6;
    let nll = 0;
    let n = 0;
    for (const w of slidingWindows(ids.length, window, stride)) {
      const logits = await model.logits(ids.slice(w.begin, w.end));
      for (let t = w.from; t < w.end; t++) {
        nll += refNll(logits.subarray((t - 1 - w.begin) * V, (t - w.begin) * V), ids[t]!);
        n++;
      }
    }
    const progress: number[] = [];
    const r = await perplexity(model, ids, { window, stride, chunk: 5, onProgress: (done) => progress.push(done) });
    expect(n).toBe(ids.length - 1);
    expect(r.scoredTokens).toBe(n);
    expect(r.meanNll).toBeCloseTo(nll / n, 5);
    expect(progress.at(-1)).toBe(n);
    // A random model over 64 ids sits near the uniform perplexity.
    expect(r.perplexity).toBeGreaterThan(30);
    expect(r.perplexity).toBeLessThan(130);
  });

  it('defaults the window to the context length and takes text', async () => {
    const r = await perplexity(model, 'the quick brown fox jumps over the lazy dog and keeps running far away');
    expect(r.window).toBe(32);
    expect(r.stride).toBe(16);
    expect(r.totalTokens).toBe(70);
  });

  it('rejects windows beyond the context and too-short texts', async () => {
    await expect(perplexity(model, ids, { window: 64 })).rejects.toThrow(/context length 32/);
    await expect(perplexity(model, ids, { window: 8, stride: 9 })).rejects.toThrow(ValidationError);
    await expect(perplexity(model, [3])).rejects.toThrow(/at least 2 tokens/);
  });
});
