// Hugging Face style config.json for an ArchSpec, so a team can train a searched design in its own
// stack: a plain GPT-2 config when the design is GPT-2 shaped, otherwise per-layer lists.
import { attentionWidthOf, embeddingWidthOf, ffnWidthOf, totalLayersOf, type ArchSpec } from './spec.ts';

/** GPT-2's end-of-text token, used as BOS/EOS when the vocabulary is GPT-2's. */
const GPT2_EOS = 50256;

/** A JSON object in the shape of transformers' PretrainedConfig. */
export type HuggingFaceConfig = Record<string, unknown>;

/** True when transformers' GPT2LMHeadModel can hold the spec without changes. */
export function isGpt2Shaped(spec: ArchSpec): boolean {
  if (spec.blocks.length !== 1 || !spec.tiedHead || spec.positionOffset !== 0) return false;
  const b = spec.blocks[0]!;
  return !b.shareWeights && embeddingWidthOf(spec) === b.width && attentionWidthOf(b) === b.width;
}

/**
 * `config.json` for the spec. GPT-2 shaped specs get `model_type: "gpt2"` (loadable by
 * GPT2LMHeadModel). Others get `model_type: "fleetlm"` with one entry per layer (hidden size,
 * heads, FFN size, shared-weight group) and the projections between them, plus the FleetLM spec.
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
  const layers: Array<{ hidden_size: number; num_attention_heads: number; head_dim: number; intermediate_size: number; weight_group: number }> = [];
  let group = 0;
  spec.blocks.forEach((b) => {
    for (let l = 0; l < b.layers; l++) {
      layers.push({ hidden_size: b.width, num_attention_heads: b.heads, head_dim: b.headDim, intermediate_size: ffnWidthOf(b), weight_group: group });
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
    word_embed_proj_dim: embeddingWidthOf(spec),
    hidden_size: spec.blocks[spec.blocks.length - 1]!.width,
    num_hidden_layers: totalLayersOf(spec),
    activation_function: 'gelu',
    do_layer_norm_before: true,
    layers,
    fleetlm_spec: spec,
  };
}
