import { describe, expect, it } from 'vitest';
import { matrixEntropy } from '../../../models/entropy/matrix-entropy.ts';
import { attentionEntropy, ffnEntropy, networkEntropy } from '../../../models/entropy/network-entropy.ts';
import { GPT2_SMALL, SMOLLM2_135M, TINY_LLAMA } from '../../../models/arch/presets.ts';

describe('networkEntropy of Llama-family layers', () => {
  it('counts Q and output at the attention width and K, V at the K/V width (GQA)', () => {
    // SmolLM2-135M: E 576, A 9 x 64 = 576, Akv 3 x 64 = 192, SwiGLU 1536, 30 layers.
    const h = networkEntropy(SMOLLM2_135M);
    expect(h.attention).toBeCloseTo(30 * (2 * matrixEntropy(576, 576) + 2 * matrixEntropy(576, 192)), 6);
    expect(h.ffn).toBeCloseTo(30 * 3 * matrixEntropy(576, 1536), 6);
    // Fewer K/V heads carry less entropy than full multi-head attention of the same width.
    expect(attentionEntropy(576, 576, {}, 192)).toBeLessThan(attentionEntropy(576, 576));
  });

  it('gives SwiGLU one more E x F matrix than GELU, and leaves GPT-2 figures as they were', () => {
    expect(ffnEntropy(32, 48, {}, 'swiglu')).toBeCloseTo(1.5 * ffnEntropy(32, 48), 9);
    expect(networkEntropy(TINY_LLAMA).ffn).toBeCloseTo(2 * 3 * matrixEntropy(32, 48), 9);
    // Full-width K/V takes the old expression, bit for bit.
    expect(attentionEntropy(768, 768, {}, 768)).toBe(4 * matrixEntropy(768, 768));
    expect(networkEntropy(GPT2_SMALL).attention).toBe(12 * 4 * matrixEntropy(768, 768));
  });
});
