import { describe, expect, it } from 'vitest';
import {
  countForwardFlops,
  countParameters,
  decodeMemoryBytes,
  flopBreakdown,
  kvCacheBytes,
  kvCacheBytesPerToken,
  layerParameters,
  parameterBreakdown,
  weightBytes,
  weightBytesBreakdown,
} from '../../../models/arch/accounting.ts';
import { GPT2_SMALL, OPT_125M, OPT_350M, QWEN25_05B, SMOLLM2_135M, TINY, TINY_LLAMA, TINYLLAMA_11B } from '../../../models/arch/presets.ts';
import { linearWeightBytes, parseWeightStorage, weightStorageOfBits } from '../../../models/arch/weight-storage.ts';
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

describe('Llama-family accounting', () => {
  // Hugging Face counts: sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(id).parameters()),
  // tied embeddings counted once; the figures quoted in the presets and on the model cards.
  it.each([
    ['SmolLM2-135M', SMOLLM2_135M, 134_515_008],
    ['Qwen2.5-0.5B (q/k/v biases, tied)', QWEN25_05B, 494_032_768],
    ['TinyLlama-1.1B (untied)', TINYLLAMA_11B, 1_100_048_384],
  ])('reproduces %s exactly', (_name, spec, hf) => {
    expect(countParameters(spec)).toBe(hf);
  });

  it('keeps GPT-2, OPT and the old FLOP convention unchanged', () => {
    expect(countParameters(GPT2_SMALL)).toBe(124_439_808);
    expect(countParameters(OPT_125M)).toBe(125_239_296);
    expect(countParameters(OPT_350M)).toBe(330_148_864); // as before this change
    const b = flopBreakdown(GPT2_SMALL);
    expect(b.rotary).toBe(0);
    expect(b.gating).toBe(0);
  });

  it('counts a tiny Llama spec line by line (RMSNorm, no position table, GQA K/V, SwiGLU, no biases, untied)', () => {
    // V 64, E 32, A 4 x 8 = 32, Akv 2 x 8 = 16, F 48, 2 layers.
    const b = parameterBreakdown(TINY_LLAMA);
    expect(b.positionEmbedding).toBe(0);
    const layer = 2 * 32 + 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 48;
    expect(layer).toBe(7744);
    expect(b.blocks).toEqual([2 * layer]);
    expect(b.finalLayerNorm).toBe(32);
    expect(b.head).toBe(32 * 64);
    expect(countParameters(TINY_LLAMA)).toBe(64 * 32 + 2 * layer + 32 + 32 * 64);
    // Qwen2 biases: q, k and v only.
    expect(layerParameters(32, 32, 48, { kvWidth: 16, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: true, outputBias: false })).toBe(layer + 32 + 2 * 16);
    // SwiGLU with output biases: gate and up F each, down E, attention output E.
    expect(layerParameters(32, 32, 48, { kvWidth: 16, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: true })).toBe(layer + 2 * 48 + 32 + 32);
  });

  it('adds rotary and SwiGLU FLOPs and K/V projections at kvHeads', () => {
    const s = 16;
    const f = flopBreakdown(TINY_LLAMA, s);
    expect(f.attentionProjections).toBe(2 * 2 * s * (2 * 32 * 32 + 2 * 32 * 16));
    expect(f.attentionMatmuls).toBe(2 * 2 * (2 * s * s * 32));
    expect(f.ffn).toBe(2 * 2 * s * (3 * 32 * 48));
    expect(f.rotary).toBe(2 * 3 * s * (32 + 16));
    expect(f.gating).toBe(2 * 2 * s * 48);
    expect(f.head).toBe(2 * s * 32 * 64);
    expect(countForwardFlops(TINY_LLAMA, s)).toBe(f.attentionProjections + f.attentionMatmuls + f.ffn + f.rotary + f.gating + f.head);
  });

  it('shrinks the K/V cache by heads / kvHeads', () => {
    const mha = (spec: typeof SMOLLM2_135M) => ({ ...spec, blocks: spec.blocks.map((b) => ({ ...b, kvHeads: b.heads })) });
    expect(kvCacheBytesPerToken(SMOLLM2_135M)).toBe(30 * 2 * 3 * 64 * 4);
    expect(kvCacheBytes(mha(SMOLLM2_135M), 2048) / kvCacheBytes(SMOLLM2_135M, 2048)).toBe(3);
    expect(kvCacheBytes(mha(QWEN25_05B), 100) / kvCacheBytes(QWEN25_05B, 100)).toBe(7);
    expect(kvCacheBytes(mha(TINYLLAMA_11B), 7, 2) / kvCacheBytes(TINYLLAMA_11B, 7, 2)).toBe(8);
    // TinyLlama at 2048 tokens, fp16 cache: 22 layers x 2 x 4 heads x 64 x 2048 x 2 bytes = 44 MiB.
    expect(kvCacheBytes(TINYLLAMA_11B, 2048, 2)).toBe(22 * 2 * 256 * 2048 * 2);
  });
});

describe('weight bytes per storage type', () => {
  it('lays out one int4/int8 matrix as MatMulNBits does (hand-derived)', () => {
    // K = 96 inputs, N = 10 outputs, block 32: 3 blocks per column of 16 bytes (int4), an fp32 scale each.
    const int4 = parseWeightStorage({ type: 'int4' });
    expect(linearWeightBytes(96, 10, int4)).toBe(10 * 3 * 16 + 10 * 3 * 4);
    // Asymmetric adds ceil(3 x 4 / 8) = 2 bytes of packed zero points per column.
    expect(linearWeightBytes(96, 10, { ...int4, asymmetric: true })).toBe(480 + 120 + 10 * 2);
    // K = 100 pads to 4 blocks; the padding is stored.
    expect(linearWeightBytes(100, 10, int4)).toBe(10 * 4 * 16 + 10 * 4 * 4);
    // Block 128 on K = 96: one padded block of 64 bytes.
    expect(linearWeightBytes(96, 10, { ...int4, blockSize: 128 })).toBe(10 * (64 + 4));
    expect(linearWeightBytes(96, 10, parseWeightStorage({ type: 'int8', blockSize: 64 }))).toBe(10 * 2 * (64 + 4));
    expect(linearWeightBytes(96, 10, parseWeightStorage({ type: 'fp16' }))).toBe(96 * 10 * 2);
  });

  it('counts a whole tiny Llama model in each storage (hand-derived)', () => {
    expect(weightBytes(TINY_LLAMA, weightStorageOfBits(32))).toBe(19_616 * 4);
    expect(weightBytes(TINY_LLAMA, weightStorageOfBits(16))).toBe(19_616 * 2);
    expect(weightBytes(TINY_LLAMA, 4)).toBe(19_616 * 4);
    // int4, block 32, symmetric: a K x N matrix is N x ceil(K / 32) x (16 + 4) bytes.
    // Per layer q 32x32: 640; k, v 32x16: 320 each; out 32x32: 640; gate, up 32x48: 960 each;
    // down 48x32: 32 x 2 x 20 = 1280; two RMSNorm scales 64 floats = 256 bytes. Total 5376.
    // Embedding 64 x 32 fp32 = 8192, final norm 128, untied head 32 -> 64: 1280.
    const int4 = weightBytesBreakdown(TINY_LLAMA, weightStorageOfBits(4));
    expect(int4).toEqual({ embeddings: 8192, blocks: 2 * 5376, projections: 0, finalNorm: 128, head: 1280, total: 8192 + 10_752 + 128 + 1280 });
    // Asymmetric: one zero-point byte per column per matrix (ceil(k_blocks x 4 / 8) = 1 here).
    const zp = 2 * (32 + 16 + 16 + 32 + 48 + 48 + 32) + 64;
    expect(weightBytes(TINY_LLAMA, weightStorageOfBits(4, { asymmetric: true }))).toBe(int4.total + zp);
    // int8, block 32: N x ceil(K / 32) x (32 + 4).
    const int8Layer = 36 * (32 + 16 + 16 + 32 + 48 + 48 + 2 * 32) + 256;
    expect(weightBytes(TINY_LLAMA, weightStorageOfBits(8))).toBe(8192 + 2 * int8Layer + 128 + 36 * 64);
    // Quantising the embedding: 64 rows of 32 values, one block each.
    expect(weightBytesBreakdown(TINY_LLAMA, weightStorageOfBits(4, { quantizeEmbedding: true })).embeddings).toBe(64 * 20);
  });

  it('keeps a tied head with the embedding and the rest of GPT-2 float (norms, biases, positions)', () => {
    const b = weightBytesBreakdown(GPT2_SMALL, weightStorageOfBits(4));
    expect(b.head).toBe(0);
    expect(b.embeddings).toBe((50257 + 1024) * 768 * 4);
    // Linear weights: 768 inputs = 24 blocks, 3072 inputs = 96 blocks; (16 + 4) bytes per block.
    const linear = 20 * (3 * 768 * 24 + 768 * 24 + 3072 * 24 + 768 * 96);
    const floats = 4 * (4 * 768 + 3 * 768 + 768 + 3072 + 768);
    expect(b.blocks).toBe(12 * (linear + floats));
    // Smaller than fp16, larger than the 0.5 bytes per parameter the bits alone suggest.
    expect(b.total).toBeLessThan(weightBytes(GPT2_SMALL, weightStorageOfBits(16)));
    expect(b.total).toBeGreaterThan(countParameters(GPT2_SMALL) / 2);
  });

  it('puts the shipped weights into decode memory, cache at float32 for quantised models', () => {
    const s4 = weightStorageOfBits(4);
    expect(decodeMemoryBytes(SMOLLM2_135M, 512, s4)).toBe(weightBytes(SMOLLM2_135M, s4) + kvCacheBytes(SMOLLM2_135M, 512, 4));
    expect(decodeMemoryBytes(SMOLLM2_135M, 512, weightStorageOfBits(16))).toBe(countParameters(SMOLLM2_135M) * 2 + kvCacheBytes(SMOLLM2_135M, 512, 2));
    expect(() => parseWeightStorage({ type: 'int3' })).toThrow(/weight storage/);
    expect(() => parseWeightStorage({ type: 'int4', blockSize: 48 })).toThrow(/blockSize/);
  });
});
