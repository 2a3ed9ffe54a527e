import { describe, expect, it } from 'vitest';
import {
  countForwardFlops,
  countParameters,
  decodeMemoryBytes,
  flopBreakdown,
  kvCacheBytes,
  parameterBreakdown,
} from '../../../models/arch/accounting.ts';
import { GPT2_SMALL, OPT_125M, TINY } from '../../../models/arch/presets.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';

describe('countParameters', () => {
  // Published counts: sum of numel over GPT2LMHeadModel.from_pretrained('gpt2').parameters() with the
  // tied head counted once, and over OPTForCausalLM 'facebook/opt-125m' (Zhang et al. 2022, Table 1: 125M).
  it('reproduces GPT-2 small exactly (124,439,808)', () => {
    expect(countParameters(GPT2_SMALL)).toBe(124_439_808);
  });

  it('reproduces OPT-125m exactly (125,239,296)', () => {
    expect(countParameters(OPT_125M)).toBe(125_239_296);
  });

  it('counts every part of a multi-block spec by hand', () => {
    // TINY: vocab 64, context 32; block 0: E=16, A=16, F=32, 1 layer; block 1: E=24, A=24, F=48,
    // 2 shared layers. Worked out line by line from the conventions in accounting.ts.
    const b = parameterBreakdown(TINY);
    expect(b.tokenEmbedding).toBe(64 * 16);
    expect(b.positionEmbedding).toBe(32 * 16);
    expect(b.blocks).toEqual([2224, 4872]);
    expect(b.blockProjections).toBe(16 * 24 + 24);
    expect(b.finalLayerNorm).toBe(48);
    expect(b.projectOut).toBe(24 * 16);
    expect(b.head).toBe(0);
    expect(countParameters(TINY)).toBe(9472);
  });

  it('counts shared layers once and an untied head as E_last x V', () => {
    const base = { vocabSize: 100, contextLength: 10, blocks: [{ width: 64, ffnRatio: 2, layers: 4, heads: 1 }] };
    const plain = countParameters(parseArchSpec(base));
    const shared = countParameters(parseArchSpec({ ...base, blocks: [{ ...base.blocks[0]!, shareWeights: true }] }));
    const layer = (plain - shared) / 3;
    expect(layer).toBe(2 * 64 + 4 * (64 * 64 + 64) + 2 * 64 + (64 * 128 + 128) + (128 * 64 + 64));
    const untied = countParameters(parseArchSpec({ ...base, tiedHead: false }));
    expect(untied - plain).toBe(64 * 100);
  });

  it('adds bias-free project_in and project_out when the embedding width differs', () => {
    const spec = parseArchSpec({ vocabSize: 10, contextLength: 4, embeddingWidth: 32, blocks: [{ width: 64, ffnRatio: 1, layers: 1, heads: 1 }] });
    const b = parameterBreakdown(spec);
    expect(b.projectIn).toBe(32 * 64);
    expect(b.projectOut).toBe(64 * 32);
    expect(b.tokenEmbedding).toBe(10 * 32);
  });
});

describe('countForwardFlops', () => {
  it('counts GPT-2 small at S = 1024 as matmuls at 2 FLOPs per multiply-add', () => {
    const s = 1024;
    const e = 768;
    const linear = 12 * 2 * s * (4 * e * e + 2 * e * 4 * e);
    const attention = 12 * 2 * (2 * s * s * e);
    const head = 2 * s * e * 50257;
    expect(countForwardFlops(GPT2_SMALL, s)).toBe(linear + attention + head);
    expect(countForwardFlops(GPT2_SMALL)).toBe(291_648_307_200);
    const b = flopBreakdown(GPT2_SMALL, s);
    expect(b.attentionMatmuls).toBe(attention);
    expect(b.head).toBe(head);
  });

  it('does not discount shared layers (they still run)', () => {
    const base = { vocabSize: 100, contextLength: 16, blocks: [{ width: 64, ffnRatio: 2, layers: 4, heads: 1 }] };
    const shared = parseArchSpec({ ...base, blocks: [{ ...base.blocks[0]!, shareWeights: true }] });
    expect(countForwardFlops(shared, 16)).toBe(countForwardFlops(parseArchSpec(base), 16));
  });

  it('grows quadratically in S only through attention', () => {
    const f = (s: number): number => flopBreakdown(GPT2_SMALL, s).attentionMatmuls;
    expect(f(2048)).toBe(4 * f(1024));
    expect(flopBreakdown(GPT2_SMALL, 2048).ffn).toBe(2 * flopBreakdown(GPT2_SMALL, 1024).ffn);
  });
});

describe('decodeMemoryBytes', () => {
  it('is fp32 weights plus a K/V cache per layer', () => {
    const kv = 12 * 2 * 1024 * 768 * 4;
    expect(kvCacheBytes(GPT2_SMALL, 1024)).toBe(kv);
    expect(decodeMemoryBytes(GPT2_SMALL, 1024)).toBe(124_439_808 * 4 + kv);
    expect(decodeMemoryBytes(GPT2_SMALL, 1024, 2)).toBe(124_439_808 * 2 + kv / 2);
  });

  it('keeps a cache for every shared layer', () => {
    expect(kvCacheBytes(TINY, 32)).toBe((1 * 2 * 32 * 16 + 2 * 2 * 32 * 24) * 4);
  });
});
