// Test fixtures: small random Hugging Face checkpoint folders written with transformers' exact tensor
// names and layouts (nn.Linear [out, in], GPT-2 Conv1D [in, out]), in F32/F16/BF16, single-file or
// sharded with model.safetensors.index.json, plus the native weights the reference forward pass needs.
// Names and shapes are spelled out here from the transformers modeling code, independently of
// models/checkpoint/layouts.ts, so a naming or transpose mistake there cannot cancel out.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DecoderWeights, WeightTensor } from '../../../models/arch/weights.ts';
import type { ArchSpecInput } from '../../../models/arch/spec.ts';

export type StoredDtype = 'F32' | 'F16' | 'BF16';

/** Seeded uniform numbers in [-0.5, 0.5) (an LCG: fixtures only need reproducible variety). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even. */
function toBf16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  return ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) & 0xffff;
}
function fromBf16(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}
/** float32 -> IEEE half bits for the normal range the fixtures use (|x| in [2^-14, 65504]) or 0. */
function toF16(x: number): number {
  if (x === 0 || Math.abs(x) < 2 ** -14) return x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  let m = Math.round((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  return sign | ((e + 15) << 10) | m;
}
function fromF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  return e === 0 ? sign * 2 ** -14 * (m / 1024) : sign * 2 ** (e - 15) * (1 + m / 1024);
}

/** Rounds values in place to what `dtype` can hold, so the reference sees exactly the stored weights. */
export function roundTo(data: Float32Array, dtype: StoredDtype): void {
  if (dtype === 'BF16') for (let i = 0; i < data.length; i++) data[i] = fromBf16(toBf16(data[i]!));
  if (dtype === 'F16') for (let i = 0; i < data.length; i++) data[i] = fromF16(toF16(data[i]!));
}

function encodeTensor(t: WeightTensor, dtype: StoredDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
  const out = new Uint8Array(t.data.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < t.data.length; i++) view.setUint16(i * 2, dtype === 'BF16' ? toBf16(t.data[i]!) : toF16(t.data[i]!), true);
  return out;
}

/** safetensors bytes of `tensors` (in the given order) stored as `dtype`. */
export function encodeSafetensorsAs(tensors: ReadonlyArray<[string, WeightTensor]>, dtype: StoredDtype): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const bodies: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const body = encodeTensor(t, dtype);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + body.length] };
    bodies.push(body);
    offset += body.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const b of bodies) {
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

export interface HfFolderOptions {
  config: Record<string, unknown>;
  tensors: ReadonlyArray<[string, WeightTensor]>;
  dtype: StoredDtype;
  /** 1: model.safetensors; n > 1: model-0000i-of-0000n.safetensors + model.safetensors.index.json. */
  shards?: number;
  tokenizer?: boolean;
  generationConfig?: Record<string, unknown>;
}

/** Writes a checkpoint folder as transformers' save_pretrained lays it out. */
export function writeHfFolder(dir: string, o: HfFolderOptions): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(o.config, null, 2));
  const shards = o.shards ?? 1;
  if (shards === 1) {
    writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensorsAs(o.tensors, o.dtype));
  } else {
    const per = Math.ceil(o.tensors.length / shards);
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = o.tensors.slice(s * per, (s + 1) * per);
      const bytes = encodeSafetensorsAs(part, o.dtype);
      writeFileSync(path.join(dir, name), bytes);
      for (const [n] of part) weightMap[n] = name;
      total += bytes.length;
    }
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  if (o.tokenizer !== false) {
    // A small but loadable byte-level BPE tokenizer.json (GPT-2/Qwen style); import copies it byte for byte.
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyByteLevelTokenizer()));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 32, eos_token: 'b' }));
  }
  if (o.generationConfig) writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(o.generationConfig));
}

/** A random checkpoint: Hugging Face tensors in save order, and the same weights under native names. */
export interface Fixture {
  config: Record<string, unknown>;
  tensors: Array<[string, WeightTensor]>;
  native: DecoderWeights;
  activation: 'gelu' | 'gelu_tanh' | 'relu' | undefined;
  /** The FleetLM spec the config describes, written out by hand (the reference runs on it). */
  spec: ArchSpecInput;
}

class Maker {
  readonly tensors: Array<[string, WeightTensor]> = [];
  readonly native: DecoderWeights = new Map();
  private readonly rand: () => number;
  constructor(
    seed: number,
    private readonly dtype: StoredDtype,
  ) {
    this.rand = lcg(seed);
  }
  private random(shape: number[], kind: 'matrix' | 'gain' | 'bias'): WeightTensor {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    // Large enough that every part of the network moves the logits well past the 1e-4 tolerance.
    for (let i = 0; i < data.length; i++) data[i] = kind === 'gain' ? 1 + 0.3 * this.rand() : kind === 'bias' ? 0.3 * this.rand() : 0.5 * this.rand();
    roundTo(data, this.dtype);
    return { data, shape };
  }
  /** A tensor stored as is under both names. */
  same(hf: string, native: string, shape: number[], kind: 'matrix' | 'gain' | 'bias'): WeightTensor {
    const t = this.random(shape, kind);
    this.tensors.push([hf, t]);
    if (native) this.native.set(native, t);
    return t;
  }
  /** An nn.Linear weight [out, in]; native holds its transpose [in, out]. */
  linear(hf: string, native: string, out: number, inDim: number): void {
    const t = this.random([out, inDim], 'matrix');
    this.tensors.push([hf, t]);
    const tr = new Float32Array(out * inDim);
    for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) tr[i * out + o] = t.data[o * inDim + i]!;
    this.native.set(native, { data: tr, shape: [inDim, out] });
  }
}

export interface LlamaShape {
  architecture: 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'MistralForCausalLM';
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim?: number;
  tied: boolean;
  dtype: StoredDtype;
  seed: number;
  extraConfig?: Record<string, unknown>;
}

/** LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM (modeling_llama.py names). */
export function llamaFixture(s: LlamaShape): Fixture {
  const m = new Maker(s.seed, s.dtype);
  const D = s.headDim ?? s.hidden / s.heads;
  const qkvBias = s.architecture === 'Qwen2ForCausalLM';
  const { hidden: E, intermediate: F, vocab: V } = s;
  m.same('model.embed_tokens.weight', 'embed_tokens.weight', [V, E], 'matrix');
  for (let l = 0; l < s.layers; l++) {
    const h = `model.layers.${l}`;
    const n = `layers.${l}`;
    m.same(`${h}.input_layernorm.weight`, `${n}.ln1.weight`, [E], 'gain');
    m.linear(`${h}.self_attn.q_proj.weight`, `${n}.attn.q.weight`, s.heads * D, E);
    m.linear(`${h}.self_attn.k_proj.weight`, `${n}.attn.k.weight`, s.kvHeads * D, E);
    m.linear(`${h}.self_attn.v_proj.weight`, `${n}.attn.v.weight`, s.kvHeads * D, E);
    if (qkvBias) {
      m.same(`${h}.self_attn.q_proj.bias`, `${n}.attn.q.bias`, [s.heads * D], 'bias');
      m.same(`${h}.self_attn.k_proj.bias`, `${n}.attn.k.bias`, [s.kvHeads * D], 'bias');
      m.same(`${h}.self_attn.v_proj.bias`, `${n}.attn.v.bias`, [s.kvHeads * D], 'bias');
    }
    m.linear(`${h}.self_attn.o_proj.weight`, `${n}.attn.out.weight`, E, s.heads * D);
    m.same(`${h}.post_attention_layernorm.weight`, `${n}.ln2.weight`, [E], 'gain');
    m.linear(`${h}.mlp.gate_proj.weight`, `${n}.ffn.gate.weight`, F, E);
    m.linear(`${h}.mlp.up_proj.weight`, `${n}.ffn.up.weight`, F, E);
    m.linear(`${h}.mlp.down_proj.weight`, `${n}.ffn.down.weight`, E, F);
  }
  m.same('model.norm.weight', 'final_ln.weight', [E], 'gain');
  if (!s.tied) m.linear('lm_head.weight', 'lm_head.weight', V, E);
  const modelType = { LlamaForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', MistralForCausalLM: 'mistral' }[s.architecture];
  const config: Record<string, unknown> = {
    architectures: [s.architecture],
    model_type: modelType,
    vocab_size: V,
    hidden_size: E,
    intermediate_size: F,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    ...(s.headDim ? { head_dim: s.headDim } : {}),
    hidden_act: 'silu',
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 500,
    rope_scaling: null,
    tie_word_embeddings: s.tied,
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[s.dtype],
    bos_token_id: 1,
    eos_token_id: 2,
    ...(s.architecture === 'Qwen2ForCausalLM' ? { use_sliding_window: false, sliding_window: 32, max_window_layers: 1 } : {}),
    ...(s.architecture === 'MistralForCausalLM' ? { sliding_window: null } : {}),
    ...s.extraConfig,
  };
  const spec: ArchSpecInput = {
    vocabSize: V,
    contextLength: 64,
    positions: 'rotary',
    ropeTheta: 500,
    layerNormEpsilon: 1e-5,
    tiedHead: s.tied,
    blocks: [{ width: E, ffnHidden: F, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads, headDim: D, norm: 'rmsnorm', mlp: 'swiglu', qkvBias, outputBias: false }],
  };
  return { config, tensors: m.tensors, native: m.native, activation: undefined, spec };
}

/** GPT2LMHeadModel (modeling_gpt2.py: Conv1D weights [in, out], fused c_attn, causal-mask buffers). */
export function gpt2Fixture(s: { vocab: number; positions: number; hidden: number; layers: number; heads: number; dtype: StoredDtype; seed: number; maskBuffers?: boolean }): Fixture {
  const m = new Maker(s.seed, s.dtype);
  const E = s.hidden;
  m.same('transformer.wte.weight', 'embed_tokens.weight', [s.vocab, E], 'matrix');
  m.same('transformer.wpe.weight', 'embed_positions.weight', [s.positions, E], 'matrix');
  for (let l = 0; l < s.layers; l++) {
    const h = `transformer.h.${l}`;
    const n = `layers.${l}`;
    m.same(`${h}.ln_1.weight`, `${n}.ln1.weight`, [E], 'gain');
    m.same(`${h}.ln_1.bias`, `${n}.ln1.bias`, [E], 'bias');
    if (s.maskBuffers) m.same(`${h}.attn.bias`, '', [1, 1, s.positions, s.positions], 'gain');
    // c_attn [E, 3E]: columns q | k | v.
    for (const kind of ['weight', 'bias'] as const) {
      const t = m.same(`${h}.attn.c_attn.${kind}`, '', kind === 'weight' ? [E, 3 * E] : [3 * E], kind === 'weight' ? 'matrix' : 'bias');
      const rows = kind === 'weight' ? E : 1;
      ['q', 'k', 'v'].forEach((x, i) => {
        const part = new Float32Array(rows * E);
        for (let r = 0; r < rows; r++) for (let c = 0; c < E; c++) part[r * E + c] = t.data[r * 3 * E + i * E + c]!;
        m.native.set(`${n}.attn.${x}.${kind}`, { data: part, shape: kind === 'weight' ? [E, E] : [E] });
      });
    }
    m.same(`${h}.attn.c_proj.weight`, `${n}.attn.out.weight`, [E, E], 'matrix');
    m.same(`${h}.attn.c_proj.bias`, `${n}.attn.out.bias`, [E], 'bias');
    m.same(`${h}.ln_2.weight`, `${n}.ln2.weight`, [E], 'gain');
    m.same(`${h}.ln_2.bias`, `${n}.ln2.bias`, [E], 'bias');
    m.same(`${h}.mlp.c_fc.weight`, `${n}.ffn.up.weight`, [E, 4 * E], 'matrix');
    m.same(`${h}.mlp.c_fc.bias`, `${n}.ffn.up.bias`, [4 * E], 'bias');
    m.same(`${h}.mlp.c_proj.weight`, `${n}.ffn.down.weight`, [4 * E, E], 'matrix');
    m.same(`${h}.mlp.c_proj.bias`, `${n}.ffn.down.bias`, [E], 'bias');
  }
  m.same('transformer.ln_f.weight', 'final_ln.weight', [E], 'gain');
  m.same('transformer.ln_f.bias', 'final_ln.bias', [E], 'bias');
  const config = {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: s.vocab,
    n_positions: s.positions,
    n_ctx: s.positions,
    n_embd: E,
    n_layer: s.layers,
    n_head: s.heads,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    bos_token_id: 0,
    eos_token_id: 0,
  };
  const spec: ArchSpecInput = {
    vocabSize: s.vocab,
    contextLength: s.positions,
    layerNormEpsilon: 1e-5,
    tiedHead: true,
    blocks: [{ width: E, ffnRatio: 4, layers: s.layers, heads: s.heads, headDim: E / s.heads }],
  };
  return { config, tensors: m.tensors, native: m.native, activation: 'gelu_tanh', spec };
}

/** OPTForCausalLM (modeling_opt.py: model.decoder.*, nn.Linear [out, in], 2 offset position rows, project_in/out). */
export function optFixture(s: { vocab: number; positions: number; embed: number; hidden: number; ffn: number; layers: number; heads: number; dtype: StoredDtype; seed: number }): Fixture {
  const m = new Maker(s.seed, s.dtype);
  const E = s.hidden;
  const d = 'model.decoder';
  m.same(`${d}.embed_tokens.weight`, 'embed_tokens.weight', [s.vocab, s.embed], 'matrix');
  m.same(`${d}.embed_positions.weight`, 'embed_positions.weight', [s.positions + 2, s.embed], 'matrix');
  if (s.embed !== E) m.linear(`${d}.project_in.weight`, 'project_in.weight', E, s.embed);
  for (let l = 0; l < s.layers; l++) {
    const h = `${d}.layers.${l}`;
    const n = `layers.${l}`;
    for (const [x, nx] of [['q_proj', 'q'], ['k_proj', 'k'], ['v_proj', 'v'], ['out_proj', 'out']] as const) {
      m.linear(`${h}.self_attn.${x}.weight`, `${n}.attn.${nx}.weight`, E, E);
      m.same(`${h}.self_attn.${x}.bias`, `${n}.attn.${nx}.bias`, [E], 'bias');
    }
    m.same(`${h}.self_attn_layer_norm.weight`, `${n}.ln1.weight`, [E], 'gain');
    m.same(`${h}.self_attn_layer_norm.bias`, `${n}.ln1.bias`, [E], 'bias');
    m.linear(`${h}.fc1.weight`, `${n}.ffn.up.weight`, s.ffn, E);
    m.same(`${h}.fc1.bias`, `${n}.ffn.up.bias`, [s.ffn], 'bias');
    m.linear(`${h}.fc2.weight`, `${n}.ffn.down.weight`, E, s.ffn);
    m.same(`${h}.fc2.bias`, `${n}.ffn.down.bias`, [E], 'bias');
    m.same(`${h}.final_layer_norm.weight`, `${n}.ln2.weight`, [E], 'gain');
    m.same(`${h}.final_layer_norm.bias`, `${n}.ln2.bias`, [E], 'bias');
  }
  m.same(`${d}.final_layer_norm.weight`, 'final_ln.weight', [E], 'gain');
  m.same(`${d}.final_layer_norm.bias`, 'final_ln.bias', [E], 'bias');
  if (s.embed !== E) m.linear(`${d}.project_out.weight`, 'project_out.weight', s.embed, E);
  const config = {
    architectures: ['OPTForCausalLM'],
    model_type: 'opt',
    vocab_size: s.vocab,
    hidden_size: E,
    word_embed_proj_dim: s.embed,
    ffn_dim: s.ffn,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    max_position_embeddings: s.positions,
    do_layer_norm_before: true,
    activation_function: 'relu',
    enable_bias: true,
    bos_token_id: 2,
    eos_token_id: 2,
  };
  const spec: ArchSpecInput = {
    vocabSize: s.vocab,
    contextLength: s.positions,
    positionOffset: 2,
    ...(s.embed !== E ? { embeddingWidth: s.embed } : {}),
    layerNormEpsilon: 1e-5,
    tiedHead: true,
    blocks: [{ width: E, ...(s.ffn % E === 0 ? { ffnRatio: s.ffn / E } : { ffnHidden: s.ffn }), layers: s.layers, heads: s.heads, headDim: E / s.heads }],
  };
  return { config, tensors: m.tensors, native: m.native, activation: 'relu', spec };
}

/** A valid Hugging Face tokenizer.json: byte-level BPE over the printable ASCII letters a-z and space (Ġ), no merges. */
export function tinyByteLevelTokenizer(): Record<string, unknown> {
  const vocab: Record<string, number> = { '<|endoftext|>': 0, 'Ġ': 1 };
  for (let c = 97; c <= 122; c++) vocab[String.fromCharCode(c)] = Object.keys(vocab).length;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}
