// Two GEMM threads split output rows only, so training is bit-identical to one thread: the same
// losses and the same weights, with the split actually taken for the model's large products.
import { describe, expect, it } from 'vitest';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { gemmNT } from '../../../models/training/kernels.ts';
import { trainModel } from '../../../models/training/trainer.ts';
import { gemmThreads, parallelGemmCount, setGemmThreads } from '../../../models/training/wasm-gemm.ts';
import { SeededRandom } from '../../../models/random.ts';

/** Products of 256 rows x 512 x 128 and up: above the size at which the row split starts. */
const spec = parseArchSpec({
  vocabSize: 256,
  contextLength: 64,
  blocks: [{ width: 128, ffnRatio: 4, layers: 1, heads: 2, headDim: 64 }],
});
const stream = Int32Array.from(new TextEncoder().encode('call me ishmael. some years ago, never mind how long precisely. '.repeat(20)));

async function trainWith(threads: number): Promise<{ losses: number[]; weights: Float32Array; split: number }> {
  setGemmThreads(threads);
  const before = parallelGemmCount();
  const result = await trainModel({ spec, train: stream, validation: stream.subarray(0, 200), tokenizer: 'bytes', tokens: 3 * 4 * 64, seq: 64, batch: 4, lr: 2e-3, warmup: 1, seed: 3 });
  return { losses: result.history.map((h) => h.loss), weights: Float32Array.from(result.model.params.values), split: parallelGemmCount() - before };
}

describe('GEMM threads', () => {
  const initial = gemmThreads();

  it('gives bit-identical products with one and two threads, odd edges included', () => {
    const rng = new SeededRandom(7);
    const [M, N, K] = [203, 517, 64];
    const a = Float32Array.from({ length: M * K }, () => rng.next() - 0.5);
    const b = Float32Array.from({ length: N * K }, () => rng.next() - 0.5);
    const one = new Float32Array(M * N).fill(1);
    const two = new Float32Array(M * N).fill(1);
    // Two threads first: the kernel's scratch memory then holds nothing a skipped row could reuse.
    setGemmThreads(2);
    const before = parallelGemmCount();
    gemmNT(a, b, two, M, N, K, true);
    expect(parallelGemmCount()).toBe(before + 1);
    setGemmThreads(1);
    gemmNT(a, b, one, M, N, K, true);
    expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    setGemmThreads(initial);
  });

  it('trains to the same losses and weights with one and two threads', async () => {
    const one = await trainWith(1);
    const two = await trainWith(2);
    setGemmThreads(initial);
    expect(one.split).toBe(0);
    expect(two.split).toBeGreaterThan(0);
    expect(two.losses).toEqual(one.losses);
    expect(one.losses.length).toBe(3);
    expect(Buffer.from(two.weights.buffer).equals(Buffer.from(one.weights.buffer))).toBe(true);
  }, 60_000);

  it('refuses thread counts other than 1 or 2', () => {
    expect(() => setGemmThreads(3)).toThrow(/must be 1 or 2.*got 3/);
    expect(() => setGemmThreads(0)).toThrow(/must be 1 or 2/);
  });
});
