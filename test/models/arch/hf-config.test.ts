import { describe, expect, it } from 'vitest';
import { SMOLLM2_135M_CONFIG } from '../../helpers/published-configs.ts';
import { isGpt2Shaped, llamaFamilyClassOf, toHuggingFaceConfig } from '../../../models/arch/hf-config.ts';
import { GPT2_SMALL, OPT_125M, QWEN25_05B, SMOLLM2_135M, TINY, TINY_LLAMA, TINYLLAMA_11B } from '../../../models/arch/presets.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';

describe('toHuggingFaceConfig', () => {
  it('writes a transformers GPT-2 config for GPT-2 shaped specs', () => {
    // Field names and values of the published gpt2 config.json.
    const c = toHuggingFaceConfig(GPT2_SMALL);
    expect(c).toMatchObject({
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      vocab_size: 50257,
      n_positions: 1024,
      n_embd: 768,
      n_layer: 12,
      n_head: 12,
      n_inner: 3072,
      layer_norm_epsilon: 1e-5,
      bos_token_id: 50256,
      eos_token_id: 50256,
      tie_word_embeddings: true,
    });
  });

  it('lists every layer for block-wise designs, sharing groups included', () => {
    expect(isGpt2Shaped(TINY)).toBe(false);
    expect(isGpt2Shaped(OPT_125M)).toBe(false); // 2 reserved position rows
    const c = toHuggingFaceConfig(TINY);
    expect(c.model_type).toBe('fleetlm');
    expect(c.num_hidden_layers).toBe(3);
    expect(c.word_embed_proj_dim).toBe(16);
    const gelu = { norm: 'layer_norm', hidden_act: 'gelu', mlp: 'gelu', qkv_bias: true, output_bias: true };
    expect(c.layers).toEqual([
      { hidden_size: 16, num_attention_heads: 2, num_key_value_heads: 2, head_dim: 8, intermediate_size: 32, ...gelu, weight_group: 0 },
      { hidden_size: 24, num_attention_heads: 3, num_key_value_heads: 3, head_dim: 8, intermediate_size: 48, ...gelu, weight_group: 1 },
      { hidden_size: 24, num_attention_heads: 3, num_key_value_heads: 3, head_dim: 8, intermediate_size: 48, ...gelu, weight_group: 1 },
    ]);
    expect(c.position_embedding_type).toBe('learned');
    expect(c.activation_function).toBe('gelu');
    expect(JSON.parse(JSON.stringify(c)).fleetlm_spec).toEqual(JSON.parse(JSON.stringify(TINY)));
  });

  it('writes the published SmolLM2-135M and TinyLlama config fields (LlamaForCausalLM)', () => {
    // Values of HuggingFaceTB/SmolLM2-135M and TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json.
    // Every architecture field as published; dtype and special ids are those of the checkpoint FleetLM writes.
    expect(toHuggingFaceConfig(SMOLLM2_135M)).toMatchObject({ ...SMOLLM2_135M_CONFIG, head_dim: 64, torch_dtype: 'float32', bos_token_id: 49151, eos_token_id: 49151 });
    const t = toHuggingFaceConfig(TINYLLAMA_11B);
    expect(t).toMatchObject({ model_type: 'llama', hidden_size: 2048, intermediate_size: 5632, num_key_value_heads: 4, tie_word_embeddings: false, rope_theta: 10000 });
    expect(t).not.toHaveProperty('layer_norm_epsilon');
    expect(isGpt2Shaped(SMOLLM2_135M)).toBe(false);
  });

  it('writes Qwen2ForCausalLM for q/k/v biases without output biases', () => {
    expect(llamaFamilyClassOf(QWEN25_05B)).toBe('Qwen2ForCausalLM');
    expect(toHuggingFaceConfig(QWEN25_05B)).toMatchObject({
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000,
      tie_word_embeddings: true,
      use_sliding_window: false,
    });
  });

  it('falls back to per-layer fleetlm configs with the Llama fields for what transformers cannot hold', () => {
    // Output biases without q/k/v biases: Llama's attention_bias would add both.
    const oddBias = parseArchSpec({ ...TINY_LLAMA, blocks: [{ ...TINY_LLAMA.blocks[0]!, qkvBias: false, outputBias: true }] });
    expect(llamaFamilyClassOf(oddBias)).toBeNull();
    const twoBlocks = parseArchSpec({ ...TINY_LLAMA, blocks: [TINY_LLAMA.blocks[0]!, { ...TINY_LLAMA.blocks[0]!, width: 48 }] });
    const c = toHuggingFaceConfig(twoBlocks);
    expect(c.model_type).toBe('fleetlm');
    expect(c).toMatchObject({ position_embedding_type: 'rotary', rope_theta: 10000, activation_function: 'silu', num_hidden_layers: 4 });
    expect((c.layers as unknown[])[3]).toEqual({
      hidden_size: 48,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
      intermediate_size: 48,
      norm: 'rms_norm',
      hidden_act: 'silu',
      mlp: 'swiglu',
      qkv_bias: false,
      output_bias: false,
      weight_group: 3,
    });
    expect(toHuggingFaceConfig(TINY_LLAMA).model_type).toBe('llama');
  });
});
