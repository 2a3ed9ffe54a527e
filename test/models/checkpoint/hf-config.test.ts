// config.json -> FleetLM spec: the published configs of real models map to the presets, and every
// setting the builder cannot honour is refused with its name.
import { describe, expect, it } from 'vitest';
import { specFromHfConfig } from '../../../models/checkpoint/hf-config.ts';
import { GPT2_SMALL, OPT_125M, QWEN25_05B, SMOLLM2_135M, TINYLLAMA_11B } from '../../../models/arch/presets.ts';
import { ValidationError } from '../../../common/errors.ts';
import { SMOLLM2_135M_CONFIG } from '../../helpers/published-configs.ts';

const SMOLLM2 = SMOLLM2_135M_CONFIG;
const QWEN25 = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  hidden_act: 'silu',
  max_position_embeddings: 32768,
  max_window_layers: 24,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  sliding_window: 32768,
  use_sliding_window: false,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  bos_token_id: 151643,
  eos_token_id: 151643,
};
const TINYLLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: 2048,
  intermediate_size: 5632,
  num_hidden_layers: 22,
  num_attention_heads: 32,
  num_key_value_heads: 4,
  hidden_act: 'silu',
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  rope_scaling: null,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};
const MISTRAL_V02 = {
  architectures: ['MistralForCausalLM'],
  model_type: 'mistral',
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  hidden_act: 'silu',
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: false,
};
const GPT2 = {
  architectures: ['GPT2LMHeadModel'],
  model_type: 'gpt2',
  vocab_size: 50257,
  n_positions: 1024,
  n_ctx: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  activation_function: 'gelu_new',
  layer_norm_epsilon: 1e-5,
  bos_token_id: 50256,
  eos_token_id: 50256,
};
const OPT125 = {
  architectures: ['OPTForCausalLM'],
  model_type: 'opt',
  vocab_size: 50272,
  hidden_size: 768,
  word_embed_proj_dim: 768,
  ffn_dim: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 2048,
  do_layer_norm_before: true,
  activation_function: 'relu',
  enable_bias: true,
  bos_token_id: 2,
  eos_token_id: 2,
};

const specOf = (config: Record<string, unknown>, name: string) => specFromHfConfig(config, name).spec;

describe('specFromHfConfig: published configs give the presets', () => {
  it.each([
    ['smollm2-135m', SMOLLM2, SMOLLM2_135M],
    ['qwen2.5-0.5b', QWEN25, QWEN25_05B],
    ['tinyllama-1.1b', TINYLLAMA, TINYLLAMA_11B],
    ['gpt2-small', GPT2, GPT2_SMALL],
    ['opt-125m', OPT125, OPT_125M],
  ] as const)('%s', (name, config, preset) => {
    expect(specOf(config, name)).toEqual(preset);
  });

  it('names the layout, activation, dtype and stop tokens', () => {
    expect(specFromHfConfig(GPT2)).toMatchObject({ architecture: 'GPT2LMHeadModel', layout: 'gpt2', activation: 'gelu_tanh', eosTokenIds: [50256] });
    expect(specFromHfConfig(OPT125)).toMatchObject({ layout: 'opt', activation: 'relu' });
    expect(specFromHfConfig(SMOLLM2)).toMatchObject({ layout: 'llama', activation: undefined, torchDtype: 'bfloat16', bosTokenId: 0 });
    expect(specFromHfConfig({ ...MISTRAL_V02, eos_token_id: [2, 32000] })).toMatchObject({ architecture: 'MistralForCausalLM', eosTokenIds: [2, 32000] });
  });

  it('accepts what changes nothing: default rope type, unused sliding windows, attention+mlp biases together', () => {
    expect(specOf({ ...SMOLLM2, rope_scaling: { rope_type: 'default' } }, 'x').ropeTheta).toBe(100000);
    expect(specOf({ ...SMOLLM2, rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }, 'x').ropeTheta).toBe(5e5);
    expect(specOf({ ...MISTRAL_V02, sliding_window: 32768 }, 'x').blocks[0]!.kvHeads).toBe(8);
    expect(specOf({ ...QWEN25, use_sliding_window: true, sliding_window: 4096, max_window_layers: 24 }, 'x').blocks[0]!.layers).toBe(24);
    expect(specOf({ ...SMOLLM2, attention_bias: true, mlp_bias: true }, 'x').blocks[0]).toMatchObject({ qkvBias: true, outputBias: true });
    expect(specOf({ ...MISTRAL_V02, hidden_size: 5120, head_dim: 128, num_attention_heads: 32 }, 'nemo').blocks[0]).toMatchObject({ width: 5120, headDim: 128 });
    expect(specOf({ ...GPT2, architectures: undefined }, 'x').blocks[0]!.width).toBe(768);
  });
});

describe('specFromHfConfig: refusals name the setting', () => {
  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    ['an unsupported architecture', { ...SMOLLM2, architectures: ['GemmaForCausalLM'], model_type: 'gemma' }, /unsupported architecture GemmaForCausalLM \(model_type gemma\); supported: GPT2LMHeadModel, OPTForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM/],
    ['a classification head', { ...SMOLLM2, architectures: ['LlamaForSequenceClassification'] }, /unsupported architecture LlamaForSequenceClassification/],
    ['no architecture at all', { ...SMOLLM2, architectures: undefined, model_type: 'phi3' }, /model_type phi3 is not one of gpt2, opt, llama, qwen2, mistral/],
    ['llama3 rope scaling', { ...SMOLLM2, rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling has rope_type "llama3"/],
    ['linear rope scaling (old key)', { ...TINYLLAMA, rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling has rope_type "linear"/],
    ['rope_parameters with yarn', { ...SMOLLM2, rope_parameters: { rope_type: 'yarn', factor: 4 } }, /rope_parameters has rope_type "yarn"/],
    ['partial rotary', { ...SMOLLM2, partial_rotary_factor: 0.5 }, /partial_rotary_factor is 0\.5; the builder rotates the full head dimension/],
    ['a Mistral sliding window in effect', { ...MISTRAL_V02, sliding_window: 4096 }, /sliding_window 4096 is in effect \(shorter than max_position_embeddings 32768\)/],
    ['Mistral without sliding_window (transformers default 4096)', { ...MISTRAL_V02, sliding_window: undefined }, /sliding_window 4096 is in effect/],
    ['a Qwen2 sliding window in effect', { ...QWEN25, use_sliding_window: true, sliding_window: 4096, max_window_layers: 21 }, /use_sliding_window is true with sliding_window 4096 .* on layers 21, 22, 23/],
    ['a GELU gate', { ...SMOLLM2, hidden_act: 'gelu_pytorch_tanh' }, /hidden_act "gelu_pytorch_tanh" is not supported/],
    ['attention bias without MLP bias', { ...SMOLLM2, attention_bias: true }, /attention_bias true with mlp_bias false/],
    ['KV heads that do not divide the heads', { ...SMOLLM2, num_key_value_heads: 2 }, /num_key_value_heads 2 does not divide num_attention_heads 9/],
    ['an odd head_dim', { ...SMOLLM2, head_dim: 63 }, /head_dim 63 is odd/],
    ['a quantized checkpoint', { ...TINYLLAMA, quantization_config: { quant_method: 'gptq', bits: 4 } }, /quantization_config \(gptq\)/],
    ['GPT-2 with an unknown activation', { ...GPT2, activation_function: 'quick_gelu' }, /activation_function "quick_gelu" of GPT2LMHeadModel is not supported; supported: gelu_new, gelu_pytorch_tanh, gelu, relu/],
    ['GPT-2 with per-layer attention scaling', { ...GPT2, scale_attn_by_inverse_layer_idx: true }, /scale_attn_by_inverse_layer_idx/],
    ['GPT-2 heads that do not divide the width', { ...GPT2, n_head: 7 }, /n_embd\/n_head: hidden size 768 is not divisible by 7/],
    ['post-LayerNorm OPT (OPT-350m)', { ...OPT125, do_layer_norm_before: false }, /do_layer_norm_before is false \(post-LayerNorm, as OPT-350m\)/],
    ['OPT without biases', { ...OPT125, enable_bias: false }, /enable_bias is false/],
    ['a missing size field', { ...SMOLLM2, hidden_size: undefined }, /config\.json for LlamaForCausalLM is invalid: hidden_size/],
    ['a non-object', [] as unknown as Record<string, unknown>, /must hold a JSON object/],
  ];
  it.each(refusals)('%s', (_, config, pattern) => {
    let caught: unknown;
    try {
      specFromHfConfig(config);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).code).toBe('VALIDATION_HF_CONFIG');
    expect((caught as Error).message).toMatch(/^cannot import this Hugging Face model: /);
    expect((caught as Error).message).toMatch(pattern);
  });
});
