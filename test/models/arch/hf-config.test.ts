import { describe, expect, it } from 'vitest';
import { isGpt2Shaped, toHuggingFaceConfig } from '../../../models/arch/hf-config.ts';
import { GPT2_SMALL, OPT_125M, TINY } from '../../../models/arch/presets.ts';

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
    expect(c.layers).toEqual([
      { hidden_size: 16, num_attention_heads: 2, head_dim: 8, intermediate_size: 32, weight_group: 0 },
      { hidden_size: 24, num_attention_heads: 3, head_dim: 8, intermediate_size: 48, weight_group: 1 },
      { hidden_size: 24, num_attention_heads: 3, head_dim: 8, intermediate_size: 48, weight_group: 1 },
    ]);
    expect(JSON.parse(JSON.stringify(c)).fleetlm_spec).toEqual(JSON.parse(JSON.stringify(TINY)));
  });
});
