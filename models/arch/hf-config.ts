// Hugging Face style config.json for an ArchSpec, so a team can train a searched design in its own
// stack: GPT-2, Llama or Qwen2 configs when transformers' classes hold the design, else per-layer lists.
import { attentionWidthOf, embeddingWidthOf, ffnWidthOf, totalLayersOf, isLlamaFamily, type ArchSpec, type BlockSpec } from './spec.ts';

/** GPT-2's end-of-text token, used as BOS/EOS when the vocabulary is GPT-2's. */
const GPT2_EOS = 50256;

/** A JSON object in the shape of transformers' PretrainedConfig. */
export type HuggingFaceConfig = Record<string, unknown>;

/** True when transformers' GPT2LMHeadModel can hold the spec without changes. */
export function isGpt2Shaped(spec: ArchSpec): boolean {
  if (spec.blocks.length !== 1 || !spec.tiedHead || spec.positionOffset !== 0) return false;
  const b = spec.blocks[0]!;
  return !b.shareWeights && !isLlamaFamily(spec) && embeddingWidthOf(spec) === b.width && attentionWidthOf(b) === b.width;
}

/** Which transformers class holds a uniform Llama-family spec as it is, or null. */
export function llamaFamilyClassOf(spec: ArchSpec): 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | null {
  if (spec.blocks.length !== 1 || spec.positions !== 'rotary') return null;
  const b = spec.blocks[0]!;
  if (b.shareWeights || b.norm !== 'rmsnorm' || b.mlp !== 'swiglu' || embeddingWidthOf(spec) !== b.width) return null;
  // Llama's attention_bias covers q, k, v and o together and mlp_bias gate, up and down, so our two
  // flags map when they agree; Qwen2 is q/k/v biases only (and head_dim = hidden / heads).
  if (b.qkvBias === b.outputBias) return 'LlamaForCausalLM';
  if (b.qkvBias && !b.outputBias && attentionWidthOf(b) === b.width) return 'Qwen2ForCausalLM';
  return null;
}

/** config.json of LlamaForCausalLM or Qwen2ForCausalLM for a spec llamaFamilyClassOf accepts. */
function llamaFamilyConfig(spec: ArchSpec, cls: 'LlamaForCausalLM' | 'Qwen2ForCausalLM', common: HuggingFaceConfig): HuggingFaceConfig {
  const b = spec.blocks[0]!;
  // RMSNorm's epsilon is rms_norm_eps in these classes.
  const { layer_norm_epsilon: _eps, ...rest } = common;
  const shared = {
    ...rest,
    hidden_size: b.width,
    intermediate_size: ffnWidthOf(b),
    num_hidden_layers: b.layers,
    num_attention_heads: b.heads,
    num_key_value_heads: b.kvHeads,
    head_dim: b.headDim,
    hidden_act: 'silu',
    max_position_embeddings: spec.contextLength,
    rms_norm_eps: spec.layerNormEpsilon,
    rope_theta: spec.ropeTheta,
    rope_scaling: null,
    attention_dropout: 0,
    initializer_range: 0.02,
    use_cache: true,
  };
  if (cls === 'Qwen2ForCausalLM') {
    return { architectures: [cls], model_type: 'qwen2', ...shared, use_sliding_window: false, sliding_window: spec.contextLength, max_window_layers: b.layers };
  }
  return { architectures: [cls], model_type: 'llama', ...shared, attention_bias: b.qkvBias, mlp_bias: b.outputBias, pretraining_tp: 1 };
}

/** Per-layer entry of the fleetlm config. */
function layerEntry(b: BlockSpec, group: number): Record<string, unknown> {
  return {
    hidden_size: b.width,
    num_attention_heads: b.heads,
    num_key_value_heads: b.kvHeads,
    head_dim: b.headDim,
    intermediate_size: ffnWidthOf(b),
    norm: b.norm === 'rmsnorm' ? 'rms_norm' : 'layer_norm',
    hidden_act: b.mlp === 'swiglu' ? 'silu' : 'gelu',
    mlp: b.mlp,
    qkv_bias: b.qkvBias,
    output_bias: b.outputBias,
    weight_group: group,
  };
}

/**
 * `config.json` for the spec. GPT-2 shaped specs get `model_type: "gpt2"` (loadable by
 * GPT2LMHeadModel); single-block Llama-family specs get `model_type: "llama"` (LlamaForCausalLM)
 * or `"qwen2"` (Qwen2ForCausalLM: q/k/v biases without output biases). Others get
 * `model_type: "fleetlm"` with one entry per layer (hidden size, heads, K/V heads, FFN size, norm,
 * activation, biases, shared-weight group), positions and rope_theta, plus the FleetLM spec.
 */
export function toHuggingFaceConfig(spec: ArchSpec): HuggingFaceConfig {
  const eos = spec.vocabSize > GPT2_EOS ? GPT2_EOS : spec.vocabSize - 1;
  const common = {
    vocab_size: spec.vocabSize,
    layer_norm_epsilon: spec.layerNormEpsilon,
    bos_token_id: eos,
    eos_token_id: eos,
    tie_word_embeddings: spec.tiedHead,
    torch_dtype: 'float32',
  };
  if (isGpt2Shaped(spec)) {
    const b = spec.blocks[0]!;
    return {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      ...common,
      n_positions: spec.contextLength,
      n_ctx: spec.contextLength,
      n_embd: b.width,
      n_layer: b.layers,
      n_head: b.heads,
      n_inner: ffnWidthOf(b),
      activation_function: 'gelu',
      resid_pdrop: 0.1,
      embd_pdrop: 0.1,
      attn_pdrop: 0.1,
      initializer_range: 0.02,
    };
  }
  const cls = llamaFamilyClassOf(spec);
  if (cls) return llamaFamilyConfig(spec, cls, common);
  const layers: Array<Record<string, unknown>> = [];
  let group = 0;
  spec.blocks.forEach((b) => {
    for (let l = 0; l < b.layers; l++) {
      layers.push(layerEntry(b, group));
      if (!b.shareWeights) group++;
    }
    if (b.shareWeights) group++;
  });
  return {
    architectures: ['FleetLMForCausalLM'],
    model_type: 'fleetlm',
    ...common,
    max_position_embeddings: spec.contextLength,
    position_offset: spec.positionOffset,
    position_embedding_type: spec.positions === 'rotary' ? 'rotary' : 'learned',
    ...(spec.positions === 'rotary' ? { rope_theta: spec.ropeTheta } : {}),
    word_embed_proj_dim: embeddingWidthOf(spec),
    hidden_size: spec.blocks[spec.blocks.length - 1]!.width,
    num_hidden_layers: totalLayersOf(spec),
    activation_function: spec.blocks.every((b) => b.mlp === 'swiglu') ? 'silu' : 'gelu',
    do_layer_norm_before: true,
    layers,
    fleetlm_spec: spec,
  };
}
