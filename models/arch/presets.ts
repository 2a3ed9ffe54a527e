// Well-known architectures expressed as FleetLM specs, used as anchors in tests and benchmarks.
import { parseArchSpec, type ArchSpec } from './spec.ts';

/** GPT-2 small (124,439,808 parameters, tied head). */
export const GPT2_SMALL: ArchSpec = parseArchSpec({
  name: 'gpt2-small',
  vocabSize: 50257,
  contextLength: 1024,
  blocks: [{ width: 768, ffnRatio: 4, layers: 12, heads: 12 }],
  tiedHead: true,
});

/** OPT-125m (125,239,296 parameters; 2 reserved position rows, tied head). */
export const OPT_125M: ArchSpec = parseArchSpec({
  name: 'opt-125m',
  vocabSize: 50272,
  contextLength: 2048,
  positionOffset: 2,
  blocks: [{ width: 768, ffnRatio: 4, layers: 12, heads: 12 }],
  tiedHead: true,
});

/** OPT-350m's shape: 512-wide embeddings projected in and out of 24 layers of width 1024. */
export const OPT_350M: ArchSpec = parseArchSpec({
  name: 'opt-350m',
  vocabSize: 50272,
  contextLength: 2048,
  positionOffset: 2,
  embeddingWidth: 512,
  blocks: [{ width: 1024, ffnRatio: 4, layers: 24, heads: 16 }],
  tiedHead: true,
});

/** A tiny spec for fast tests. */
export const TINY: ArchSpec = parseArchSpec({
  name: 'tiny',
  vocabSize: 64,
  contextLength: 32,
  blocks: [
    { width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 },
    { width: 24, ffnRatio: 2, layers: 2, heads: 3, headDim: 8, shareWeights: true },
  ],
  tiedHead: true,
});

/**
 * SmolLM2-135M (HuggingFaceTB/SmolLM2-135M config.json): Llama family, 30 layers of 576 with
 * grouped-query attention (9 query heads, 3 KV heads), SwiGLU 1536, tied head; 134,515,008 parameters.
 */
export const SMOLLM2_135M: ArchSpec = parseArchSpec({
  name: 'smollm2-135m',
  vocabSize: 49152,
  contextLength: 8192,
  positions: 'rotary',
  ropeTheta: 100000,
  layerNormEpsilon: 1e-5,
  blocks: [{ width: 576, ffnHidden: 1536, layers: 30, heads: 9, kvHeads: 3, headDim: 64, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
  tiedHead: true,
});

/**
 * Qwen2.5-0.5B (Qwen/Qwen2.5-0.5B config.json): 24 layers of 896, 14 query heads and 2 KV heads,
 * q/k/v biases, SwiGLU 4864, tied head; 494,032,768 parameters.
 */
export const QWEN25_05B: ArchSpec = parseArchSpec({
  name: 'qwen2.5-0.5b',
  vocabSize: 151936,
  contextLength: 32768,
  positions: 'rotary',
  ropeTheta: 1000000,
  layerNormEpsilon: 1e-6,
  blocks: [{ width: 896, ffnHidden: 4864, layers: 24, heads: 14, kvHeads: 2, headDim: 64, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: true, outputBias: false }],
  tiedHead: true,
});

/**
 * TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json): 22 layers of 2048, 32 query heads
 * and 4 KV heads, SwiGLU 5632, untied head; 1,100,048,384 parameters.
 */
export const TINYLLAMA_11B: ArchSpec = parseArchSpec({
  name: 'tinyllama-1.1b',
  vocabSize: 32000,
  contextLength: 2048,
  positions: 'rotary',
  ropeTheta: 10000,
  layerNormEpsilon: 1e-5,
  blocks: [{ width: 2048, ffnHidden: 5632, layers: 22, heads: 32, kvHeads: 4, headDim: 64, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
  tiedHead: false,
});

/** A tiny Llama-family spec (RMSNorm, rotary, SwiGLU, GQA) for fast tests. */
export const TINY_LLAMA: ArchSpec = parseArchSpec({
  name: 'tiny-llama',
  vocabSize: 64,
  contextLength: 32,
  positions: 'rotary',
  blocks: [{ width: 32, ffnHidden: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
  tiedHead: false,
});

export const PRESETS: Readonly<Record<string, ArchSpec>> = {
  'gpt2-small': GPT2_SMALL,
  'opt-125m': OPT_125M,
  'opt-350m': OPT_350M,
  tiny: TINY,
  'smollm2-135m': SMOLLM2_135M,
  'qwen2.5-0.5b': QWEN25_05B,
  'tinyllama-1.1b': TINYLLAMA_11B,
  'tiny-llama': TINY_LLAMA,
};
