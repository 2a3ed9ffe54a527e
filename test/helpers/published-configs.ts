// Published config.json files of real models on the Hugging Face hub, as tests and benchmarks need them.

/** HuggingFaceTB/SmolLM2-135M config.json (the fields FleetLM reads, with their published values). */
export const SMOLLM2_135M_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  hidden_act: 'silu',
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  rope_scaling: null,
  attention_bias: false,
  mlp_bias: false,
  pretraining_tp: 1,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  bos_token_id: 0,
  eos_token_id: 0,
};
