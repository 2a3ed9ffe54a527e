// Reads a Hugging Face config.json (GPT-2, OPT, Llama, Qwen2, Mistral) into an ArchSpec, refusing by
// name every setting the FleetLM builder cannot honour. (models/arch/hf-config.ts writes the other way.)
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { formatIssues } from '../../common/validate.ts';
import { parseArchSpec, type ArchSpec, type ArchSpecInput } from '../arch/spec.ts';
import type { Activation } from '../arch/activation.ts';

/** transformers model classes `fleetlm import` reads, with the tensor naming each uses. */
export const HF_ARCHITECTURES = {
  GPT2LMHeadModel: 'gpt2',
  OPTForCausalLM: 'opt',
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'llama',
  MistralForCausalLM: 'llama',
} as const;
export type HfArchitecture = keyof typeof HF_ARCHITECTURES;
/** Tensor naming of a Hugging Face checkpoint (Qwen2 and Mistral use Llama's names). */
export type HfLayout = (typeof HF_ARCHITECTURES)[HfArchitecture];

const MODEL_TYPES: Readonly<Record<string, HfArchitecture>> = {
  gpt2: 'GPT2LMHeadModel',
  opt: 'OPTForCausalLM',
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  mistral: 'MistralForCausalLM',
};

/** What a config.json says about the model, in FleetLM terms. */
export interface HfModelConfig {
  architecture: HfArchitecture;
  layout: HfLayout;
  spec: ArchSpec;
  /** FFN activation of GELU-style blocks; undefined for SwiGLU blocks (their gate is always SiLU). */
  activation: Activation | undefined;
  /** `torch_dtype` (or `dtype`) as the config states it, informational: the tensors' own dtypes are what is read. */
  torchDtype: string | undefined;
  bosTokenId: number | undefined;
  /** End-of-sequence ids (config.json's eos_token_id, one or several). */
  eosTokenIds: number[];
}

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const tokenIds = z.union([nonNegInt, z.array(nonNegInt)]).nullish();

const CommonSchema = z.object({
  architectures: z.array(z.string()).nullish(),
  model_type: z.string().optional(),
  vocab_size: posInt,
  tie_word_embeddings: z.boolean().optional(),
  torch_dtype: z.string().nullish(),
  dtype: z.string().nullish(),
  bos_token_id: nonNegInt.nullish(),
  eos_token_id: tokenIds,
  quantization_config: z.unknown().optional(),
  is_encoder_decoder: z.boolean().optional(),
});

const Gpt2Schema = z.object({
  n_embd: posInt,
  n_layer: posInt,
  n_head: posInt,
  n_positions: posInt,
  n_inner: posInt.nullish(),
  activation_function: z.string().default('gelu_new'),
  layer_norm_epsilon: z.number().positive().default(1e-5),
  scale_attn_weights: z.boolean().default(true),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  add_cross_attention: z.boolean().default(false),
});

const OptSchema = z.object({
  hidden_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  ffn_dim: posInt,
  max_position_embeddings: posInt,
  word_embed_proj_dim: posInt.nullish(),
  activation_function: z.string().default('relu'),
  do_layer_norm_before: z.boolean().default(true),
  _remove_final_layer_norm: z.boolean().default(false),
  enable_bias: z.boolean().default(true),
  layer_norm_elementwise_affine: z.boolean().default(true),
});

const RopeParametersSchema = z.object({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
  partial_rotary_factor: z.number().optional(),
});

const LlamaFamilySchema = z.object({
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  hidden_act: z.string().default('silu'),
  max_position_embeddings: posInt.optional(),
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().optional(),
  rope_scaling: RopeParametersSchema.nullish(),
  // transformers 5 moves rope_theta and the scaling type here.
  rope_parameters: RopeParametersSchema.nullish(),
  partial_rotary_factor: z.number().optional(),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  sliding_window: posInt.nullish(),
  use_sliding_window: z.boolean().optional(),
  max_window_layers: nonNegInt.optional(),
  layer_types: z.array(z.string()).nullish(),
});

/** Transformers' defaults where a config omits a field (LlamaConfig, Qwen2Config, MistralConfig). */
const FAMILY_DEFAULTS = {
  LlamaForCausalLM: { maxPositions: 2048, tied: false, slidingWindow: null },
  Qwen2ForCausalLM: { maxPositions: 32768, tied: false, slidingWindow: 4096 },
  MistralForCausalLM: { maxPositions: 4096 * 32, tied: false, slidingWindow: 4096 },
} as const;

/** GELU-style activations the builder has, by transformers' ACT2FN name. */
const GELU_STYLE: Readonly<Record<string, Activation>> = {
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu: 'gelu',
  relu: 'relu',
};

function refuse(message: string): never {
  throw new ValidationError(`cannot import this Hugging Face model: ${message}`, { code: 'VALIDATION_HF_CONFIG' });
}

function parseSection<S extends z.ZodType>(schema: S, value: unknown, architecture: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) refuse(`config.json for ${architecture} is invalid: ${formatIssues(r.error.issues)}`);
  return r.data;
}

function architectureOf(raw: z.output<typeof CommonSchema>): HfArchitecture {
  const supported = Object.keys(HF_ARCHITECTURES).join(', ');
  const named = raw.architectures ?? [];
  if (named.length > 1) refuse(`config.json names several architectures (${named.join(', ')}); expected one of ${supported}`);
  if (named.length === 1) {
    const a = named[0]!;
    if (!(a in HF_ARCHITECTURES)) refuse(`unsupported architecture ${a} (model_type ${raw.model_type ?? 'unset'}); supported: ${supported}`);
    return a as HfArchitecture;
  }
  const byType = raw.model_type ? MODEL_TYPES[raw.model_type] : undefined;
  if (!byType) refuse(`config.json has no architectures entry and model_type ${raw.model_type ?? 'unset'} is not one of ${Object.keys(MODEL_TYPES).join(', ')}`);
  return byType;
}

function geluStyle(fn: string, architecture: string): Activation {
  const a = GELU_STYLE[fn];
  if (!a) refuse(`activation_function "${fn}" of ${architecture} is not supported; supported: ${Object.keys(GELU_STYLE).join(', ')}`);
  return a;
}

/** GPT-2/OPT FFN width as the presets write it: a whole ratio when there is one, else the width. */
function ffnOf(ffn: number, width: number): { ffnRatio: number } | { ffnHidden: number } {
  return ffn % width === 0 ? { ffnRatio: ffn / width } : { ffnHidden: ffn };
}

function divisible(width: number, heads: number, fields: string): number {
  if (width % heads !== 0) refuse(`${fields}: hidden size ${width} is not divisible by ${heads} attention heads`);
  return width / heads;
}

function gpt2Spec(raw: unknown, common: z.output<typeof CommonSchema>): { spec: ArchSpecInput; activation: Activation } {
  const c = parseSection(Gpt2Schema, raw, 'GPT2LMHeadModel');
  if (!c.scale_attn_weights) refuse('scale_attn_weights is false (unscaled attention scores); the builder scales by 1/sqrt(head_dim)');
  if (c.scale_attn_by_inverse_layer_idx) refuse('scale_attn_by_inverse_layer_idx is true; the builder scales every layer by 1/sqrt(head_dim) only');
  if (c.add_cross_attention) refuse('add_cross_attention is true; FleetLM builds decoder-only models');
  return {
    activation: geluStyle(c.activation_function, 'GPT2LMHeadModel'),
    spec: {
      vocabSize: common.vocab_size,
      contextLength: c.n_positions,
      layerNormEpsilon: c.layer_norm_epsilon,
      tiedHead: common.tie_word_embeddings ?? true,
      blocks: [{ width: c.n_embd, ...ffnOf(c.n_inner ?? 4 * c.n_embd, c.n_embd), layers: c.n_layer, heads: c.n_head, headDim: divisible(c.n_embd, c.n_head, 'n_embd/n_head') }],
    },
  };
}

function optSpec(raw: unknown, common: z.output<typeof CommonSchema>): { spec: ArchSpecInput; activation: Activation } {
  const c = parseSection(OptSchema, raw, 'OPTForCausalLM');
  if (!c.do_layer_norm_before) refuse('do_layer_norm_before is false (post-LayerNorm, as OPT-350m); the builder is pre-LayerNorm only');
  if (c._remove_final_layer_norm) refuse('_remove_final_layer_norm is true; the builder always applies a final LayerNorm');
  if (!c.enable_bias) refuse('enable_bias is false; the builder gives OPT projections biases');
  if (!c.layer_norm_elementwise_affine) refuse('layer_norm_elementwise_affine is false; the builder has LayerNorm gains and biases');
  const embed = c.word_embed_proj_dim ?? c.hidden_size;
  return {
    activation: geluStyle(c.activation_function, 'OPTForCausalLM'),
    spec: {
      vocabSize: common.vocab_size,
      contextLength: c.max_position_embeddings,
      // OPT's learned position table reserves 2 rows (OPTLearnedPositionalEmbedding's offset).
      positionOffset: 2,
      ...(embed !== c.hidden_size ? { embeddingWidth: embed } : {}),
      // transformers' OPT uses nn.LayerNorm's default epsilon.
      layerNormEpsilon: 1e-5,
      tiedHead: common.tie_word_embeddings ?? true,
      blocks: [
        { width: c.hidden_size, ...ffnOf(c.ffn_dim, c.hidden_size), layers: c.num_hidden_layers, heads: c.num_attention_heads, headDim: divisible(c.hidden_size, c.num_attention_heads, 'hidden_size/num_attention_heads') },
      ],
    },
  };
}

function ropeTypeOf(r: z.output<typeof RopeParametersSchema> | null | undefined): string | undefined {
  return r ? (r.rope_type ?? r.type) : undefined;
}

function llamaFamilySpec(architecture: keyof typeof FAMILY_DEFAULTS, raw: unknown, common: z.output<typeof CommonSchema>): ArchSpecInput {
  const c = parseSection(LlamaFamilySchema, raw, architecture);
  const defaults = FAMILY_DEFAULTS[architecture];
  if (c.hidden_act !== 'silu' && c.hidden_act !== 'swish') {
    refuse(`hidden_act "${c.hidden_act}" is not supported; the SwiGLU feed-forward the builder makes gates with silu`);
  }
  // Only unscaled rotary embeddings: linear/dynamic/yarn/llama3 scaling change the frequencies.
  for (const [field, r] of [['rope_scaling', c.rope_scaling], ['rope_parameters', c.rope_parameters]] as const) {
    const type = ropeTypeOf(r);
    if (r && type !== undefined && type !== 'default') refuse(`${field} has rope_type "${type}"; only unscaled rotary embeddings (rope_scaling null) are supported`);
    if (field === 'rope_scaling' && r && type === undefined) refuse(`rope_scaling is set (${JSON.stringify(r)}); only unscaled rotary embeddings (rope_scaling null) are supported`);
    if (r?.partial_rotary_factor !== undefined && r.partial_rotary_factor !== 1) {
      refuse(`${field}.partial_rotary_factor is ${r.partial_rotary_factor}; the builder rotates the full head dimension (factor 1)`);
    }
  }
  if (c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== 1) {
    refuse(`partial_rotary_factor is ${c.partial_rotary_factor}; the builder rotates the full head dimension (factor 1)`);
  }
  const maxPositions = c.max_position_embeddings ?? defaults.maxPositions;
  slidingWindowCheck(architecture, c, maxPositions, defaults.slidingWindow);

  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  if (heads % kvHeads !== 0) refuse(`num_key_value_heads ${kvHeads} does not divide num_attention_heads ${heads}`);
  // An explicit head_dim wins (Mistral-Nemo: 5120 / 32 heads but head_dim 128); else hidden / heads.
  const headDim = c.head_dim ?? divisible(c.hidden_size, heads, 'hidden_size/num_attention_heads');
  if (headDim % 2 !== 0) refuse(`head_dim ${headDim} is odd; rotary embeddings rotate pairs of dimensions`);

  let qkvBias: boolean;
  let outputBias: boolean;
  if (architecture === 'Qwen2ForCausalLM') {
    // Qwen2Attention: q/k/v projections with bias, o_proj and the MLP without.
    qkvBias = true;
    outputBias = false;
  } else {
    // LlamaAttention: attention_bias covers q, k, v and o_proj; mlp_bias covers the three MLP projections.
    if (c.attention_bias !== c.mlp_bias) {
      refuse(`attention_bias ${c.attention_bias} with mlp_bias ${c.mlp_bias}: the builder gives the attention output and the MLP the same bias setting`);
    }
    qkvBias = c.attention_bias;
    outputBias = c.attention_bias;
  }
  const ropeTheta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000;
  return {
    vocabSize: common.vocab_size,
    contextLength: maxPositions,
    positions: 'rotary',
    ropeTheta,
    layerNormEpsilon: c.rms_norm_eps,
    tiedHead: common.tie_word_embeddings ?? defaults.tied,
    blocks: [
      {
        width: c.hidden_size,
        ffnHidden: c.intermediate_size,
        layers: c.num_hidden_layers,
        heads,
        kvHeads,
        headDim,
        norm: 'rmsnorm',
        mlp: 'swiglu',
        qkvBias,
        outputBias,
      },
    ],
  };
}

/**
 * Sliding-window attention changes outputs only when the window is shorter than the sequences the
 * model may see; FleetLM builds full causal attention, so a window in effect is refused.
 */
function slidingWindowCheck(
  architecture: keyof typeof FAMILY_DEFAULTS,
  c: z.output<typeof LlamaFamilySchema>,
  maxPositions: number,
  defaultWindow: number | null,
): void {
  const window = c.sliding_window === undefined ? defaultWindow : c.sliding_window;
  if (window === null || window >= maxPositions) return;
  if (architecture === 'MistralForCausalLM') {
    refuse(`sliding_window ${window} is in effect (shorter than max_position_embeddings ${maxPositions}); the builder has full causal attention only`);
  }
  if (architecture === 'Qwen2ForCausalLM' && c.use_sliding_window === true) {
    // Qwen2 windows layers from max_window_layers on (or those layer_types marks "sliding_attention").
    const slidingLayers = c.layer_types
      ? c.layer_types.flatMap((t, i) => (t === 'sliding_attention' ? [i] : []))
      : Array.from({ length: c.num_hidden_layers }, (_, i) => i).filter((i) => i >= (c.max_window_layers ?? 28));
    if (slidingLayers.length > 0) {
      refuse(
        `use_sliding_window is true with sliding_window ${window} (shorter than max_position_embeddings ${maxPositions}) on layers ${slidingLayers.slice(0, 8).join(', ')}${slidingLayers.length > 8 ? ', ...' : ''}; the builder has full causal attention only`,
      );
    }
  }
}

function asIdList(v: number | number[] | null | undefined): number[] {
  if (v === null || v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/**
 * Maps a parsed config.json to a FleetLM spec. `name` becomes the spec's name. Throws
 * ValidationError (code VALIDATION_HF_CONFIG) naming the field for anything the builder cannot honour.
 */
export function specFromHfConfig(config: unknown, name?: string): HfModelConfig {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) refuse('config.json must hold a JSON object');
  const common = parseSection(CommonSchema, config, 'the model');
  const architecture = architectureOf(common);
  if (common.quantization_config !== undefined && common.quantization_config !== null) {
    const method = (common.quantization_config as { quant_method?: unknown }).quant_method;
    refuse(`config.json has a quantization_config${typeof method === 'string' ? ` (${method})` : ''}; only fp32/fp16/bf16 checkpoints can be imported`);
  }
  if (common.is_encoder_decoder === true) refuse('is_encoder_decoder is true; FleetLM builds decoder-only models');
  let spec: ArchSpecInput;
  let activation: Activation | undefined;
  if (architecture === 'GPT2LMHeadModel') ({ spec, activation } = gpt2Spec(config, common));
  else if (architecture === 'OPTForCausalLM') ({ spec, activation } = optSpec(config, common));
  else spec = llamaFamilySpec(architecture, config, common);
  const named = name ? { name: name.slice(0, 128) } : {};
  let parsed: ArchSpec;
  try {
    parsed = parseArchSpec({ ...named, ...spec });
  } catch (err) {
    refuse(`the config does not give a valid FleetLM spec: ${(err as Error).message}`);
  }
  return {
    architecture,
    layout: HF_ARCHITECTURES[architecture],
    spec: parsed,
    activation,
    torchDtype: common.torch_dtype ?? common.dtype ?? undefined,
    bosTokenId: common.bos_token_id ?? undefined,
    eosTokenIds: asIdList(common.eos_token_id),
  };
}
