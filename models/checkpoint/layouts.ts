// Maps checkpoint tensor names and layouts to FleetLM's native weights and back: FleetLM native,
// Hugging Face GPT-2 (GPT2LMHeadModel; Conv1D weights stored [in, out], fused c_attn) and
// Hugging Face OPT (OPTForCausalLM; nn.Linear weights stored [out, in], 2 reserved position rows) and
// Hugging Face Llama (LlamaForCausalLM, also Qwen2 and Mistral; nn.Linear [out, in]).
import { ModelError } from '../../common/errors.ts';
import { embeddingWidthOf, type ArchSpec } from '../arch/spec.ts';
import { expectedWeightShapes, layerPlan, validateWeights, type DecoderWeights, type WeightTensor } from '../arch/weights.ts';
import { tensorToFloat32, type SafetensorsFile } from './safetensors.ts';
import type { Activation } from '../arch/activation.ts';
import { validateWeightSource, type WeightSource } from '../arch/weight-source.ts';

export const CHECKPOINT_LAYOUTS = ['fleetlm', 'gpt2', 'opt', 'llama'] as const;
export type CheckpointLayout = (typeof CHECKPOINT_LAYOUTS)[number];

/** The FFN activation each layout's models were trained with (OPT: ReLU; GPT-2: `gelu_new`, the tanh GELU; Llama's SwiGLU ignores it). */
export function activationOfLayout(layout: CheckpointLayout): Activation {
  return layout === 'opt' ? 'relu' : layout === 'gpt2' ? 'gelu_tanh' : 'gelu';
}

/** Row-major transpose of a [rows, cols] matrix. */
export function transpose2d(t: WeightTensor): WeightTensor {
  const [rows, cols] = t.shape as [number, number];
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const ro = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[ro + c]!;
  }
  return { data: out, shape: [cols, rows] };
}

/**
 * One checkpoint tensor: its name, the shape the spec implies for it, the native tensors it holds
 * and how it maps to them and back.
 */
interface Rule {
  name: string;
  shape: number[];
  natives: string[];
  /** The native tensors (in `natives` order) held by checkpoint tensor `t`. */
  toNative(t: WeightTensor): WeightTensor[];
  fromNative(w: DecoderWeights): WeightTensor;
}

type Shapes = ReadonlyMap<string, number[]>;

function shapeOf(shapes: Shapes, native: string): number[] {
  const s = shapes.get(native);
  if (!s) throw new ModelError(`the spec has no native tensor "${native}"`, { code: 'MODEL_CHECKPOINT' });
  return s;
}

const same = (shapes: Shapes, ckpt: string, native: string): Rule => ({
  name: ckpt,
  shape: shapeOf(shapes, native),
  natives: [native],
  toNative: (t) => [t],
  fromNative: (w) => w.get(native)!,
});
/** nn.Linear stores [out, in]; native weights are [in, out]. */
const transposed = (shapes: Shapes, ckpt: string, native: string): Rule => ({
  name: ckpt,
  shape: [...shapeOf(shapes, native)].reverse(),
  natives: [native],
  toNative: (t) => {
    if (t.shape.length !== 2) throw new ModelError(`checkpoint tensor "${ckpt}" has shape [${t.shape.join(', ')}]; expected a matrix`, { code: 'MODEL_CHECKPOINT' });
    return [transpose2d(t)];
  },
  fromNative: (w) => transpose2d(w.get(native)!),
});
/** GPT-2's c_attn: q, k, v concatenated along the last axis (weight [E, 3A], bias [3A]). */
const splitQkv = (shapes: Shapes, ckpt: string, prefix: string, kind: 'weight' | 'bias'): Rule => {
  const natives = ['q', 'k', 'v'].map((x) => `${prefix}.attn.${x}.${kind}`);
  const q = shapeOf(shapes, natives[0]!);
  return {
    name: ckpt,
    shape: [...q.slice(0, -1), 3 * q[q.length - 1]!],
    natives,
    toNative: (t) => {
      const last = t.shape[t.shape.length - 1]!;
      if (last % 3 !== 0) throw new ModelError(`checkpoint tensor "${ckpt}" has last dimension ${last}, not divisible into q, k, v`, { code: 'MODEL_CHECKPOINT' });
      const a = last / 3;
      const rows = t.data.length / last;
      return [0, 1, 2].map((i) => {
        const part = new Float32Array(rows * a);
        for (let r = 0; r < rows; r++) part.set(t.data.subarray(r * last + i * a, r * last + (i + 1) * a), r * a);
        return { data: part, shape: kind === 'weight' ? [rows, a] : [a] };
      });
    },
    fromNative: (w) => {
      const parts = natives.map((n) => w.get(n)!);
      const a = parts[0]!.shape[parts[0]!.shape.length - 1]!;
      const rows = parts[0]!.data.length / a;
      const data = new Float32Array(rows * a * 3);
      for (let r = 0; r < rows; r++) parts.forEach((p, i) => data.set(p.data.subarray(r * a, (r + 1) * a), r * a * 3 + i * a));
      return { data, shape: kind === 'weight' ? [rows, 3 * a] : [3 * a] };
    },
  };
};

function requireSingleWidth(spec: ArchSpec, layout: CheckpointLayout): void {
  const widths = new Set(spec.blocks.map((b) => b.width));
  if (widths.size !== 1) {
    throw new ModelError(`the ${layout} layout has one layer width; the spec has widths ${[...widths].join(', ')}`, { code: 'MODEL_CHECKPOINT' });
  }
  const shared = spec.blocks.find((b) => b.shareWeights && b.layers > 1);
  if (shared) throw new ModelError(`the ${layout} layout stores every layer; the spec shares weights across layers`, { code: 'MODEL_CHECKPOINT' });
}

function gpt2Rules(spec: ArchSpec, prefix: string): Rule[] {
  requireSingleWidth(spec, 'gpt2');
  if (embeddingWidthOf(spec) !== spec.blocks[0]!.width) {
    throw new ModelError('the gpt2 layout has no project_in/project_out; the spec has embeddingWidth != block width', { code: 'MODEL_CHECKPOINT' });
  }
  const s = expectedWeightShapes(spec);
  const rules: Rule[] = [same(s, `${prefix}wte.weight`, 'embed_tokens.weight'), same(s, `${prefix}wpe.weight`, 'embed_positions.weight')];
  for (const l of layerPlan(spec)) {
    const h = `${prefix}h.${l.index}`;
    const p = l.prefix;
    rules.push(
      same(s, `${h}.ln_1.weight`, `${p}.ln1.weight`),
      same(s, `${h}.ln_1.bias`, `${p}.ln1.bias`),
      splitQkv(s, `${h}.attn.c_attn.weight`, p, 'weight'),
      splitQkv(s, `${h}.attn.c_attn.bias`, p, 'bias'),
      same(s, `${h}.attn.c_proj.weight`, `${p}.attn.out.weight`),
      same(s, `${h}.attn.c_proj.bias`, `${p}.attn.out.bias`),
      same(s, `${h}.ln_2.weight`, `${p}.ln2.weight`),
      same(s, `${h}.ln_2.bias`, `${p}.ln2.bias`),
      same(s, `${h}.mlp.c_fc.weight`, `${p}.ffn.up.weight`),
      same(s, `${h}.mlp.c_fc.bias`, `${p}.ffn.up.bias`),
      same(s, `${h}.mlp.c_proj.weight`, `${p}.ffn.down.weight`),
      same(s, `${h}.mlp.c_proj.bias`, `${p}.ffn.down.bias`),
    );
  }
  rules.push(same(s, `${prefix}ln_f.weight`, 'final_ln.weight'), same(s, `${prefix}ln_f.bias`, 'final_ln.bias'));
  if (!spec.tiedHead) rules.push(transposed(s, 'lm_head.weight', 'lm_head.weight'));
  return rules;
}

function optRules(spec: ArchSpec, prefix: string): Rule[] {
  requireSingleWidth(spec, 'opt');
  const s = expectedWeightShapes(spec);
  const rules: Rule[] = [same(s, `${prefix}embed_tokens.weight`, 'embed_tokens.weight'), same(s, `${prefix}embed_positions.weight`, 'embed_positions.weight')];
  if (s.has('project_in.weight')) rules.push(transposed(s, `${prefix}project_in.weight`, 'project_in.weight'));
  for (const l of layerPlan(spec)) {
    const h = `${prefix}layers.${l.index}`;
    const p = l.prefix;
    rules.push(
      same(s, `${h}.self_attn_layer_norm.weight`, `${p}.ln1.weight`),
      same(s, `${h}.self_attn_layer_norm.bias`, `${p}.ln1.bias`),
      transposed(s, `${h}.self_attn.q_proj.weight`, `${p}.attn.q.weight`),
      same(s, `${h}.self_attn.q_proj.bias`, `${p}.attn.q.bias`),
      transposed(s, `${h}.self_attn.k_proj.weight`, `${p}.attn.k.weight`),
      same(s, `${h}.self_attn.k_proj.bias`, `${p}.attn.k.bias`),
      transposed(s, `${h}.self_attn.v_proj.weight`, `${p}.attn.v.weight`),
      same(s, `${h}.self_attn.v_proj.bias`, `${p}.attn.v.bias`),
      transposed(s, `${h}.self_attn.out_proj.weight`, `${p}.attn.out.weight`),
      same(s, `${h}.self_attn.out_proj.bias`, `${p}.attn.out.bias`),
      same(s, `${h}.final_layer_norm.weight`, `${p}.ln2.weight`),
      same(s, `${h}.final_layer_norm.bias`, `${p}.ln2.bias`),
      transposed(s, `${h}.fc1.weight`, `${p}.ffn.up.weight`),
      same(s, `${h}.fc1.bias`, `${p}.ffn.up.bias`),
      transposed(s, `${h}.fc2.weight`, `${p}.ffn.down.weight`),
      same(s, `${h}.fc2.bias`, `${p}.ffn.down.bias`),
    );
  }
  rules.push(same(s, `${prefix}final_layer_norm.weight`, 'final_ln.weight'), same(s, `${prefix}final_layer_norm.bias`, 'final_ln.bias'));
  if (s.has('project_out.weight')) rules.push(transposed(s, `${prefix}project_out.weight`, 'project_out.weight'));
  if (!spec.tiedHead) rules.push(transposed(s, 'lm_head.weight', 'lm_head.weight'));
  return rules;
}

/** Native layer-tensor name -> Hugging Face LlamaDecoderLayer (and Qwen2/Mistral) module path. */
const LLAMA_LAYER_NAMES: Readonly<Record<string, string>> = {
  'ln1': 'input_layernorm',
  'ln2': 'post_attention_layernorm',
  'attn.q': 'self_attn.q_proj',
  'attn.k': 'self_attn.k_proj',
  'attn.v': 'self_attn.v_proj',
  'attn.out': 'self_attn.o_proj',
  'ffn.gate': 'mlp.gate_proj',
  'ffn.up': 'mlp.up_proj',
  'ffn.down': 'mlp.down_proj',
};

/**
 * LlamaForCausalLM names (Qwen2 and Mistral use the same): model.embed_tokens, model.layers.N.*,
 * model.norm, lm_head; nn.Linear weights [out, in]. Which biases exist follows the spec's
 * expected native tensors, so Qwen2's q/k/v biases come from qkvBias alone.
 */
function llamaRules(spec: ArchSpec, prefix: string): Rule[] {
  requireSingleWidth(spec, 'llama');
  const s = expectedWeightShapes(spec);
  const rules: Rule[] = [];
  for (const native of s.keys()) {
    if (native === 'embed_tokens.weight') rules.push(same(s, `${prefix}embed_tokens.weight`, native));
    else if (native === 'final_ln.weight') rules.push(same(s, `${prefix}norm.weight`, native));
    else if (native === 'lm_head.weight') rules.push(transposed(s, 'lm_head.weight', native));
    else {
      const m = /^layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(native);
      const hf = m ? LLAMA_LAYER_NAMES[m[2]!] : undefined;
      if (!m || !hf) throw new ModelError(`the llama layout has no tensor for native "${native}" that the spec needs`, { code: 'MODEL_CHECKPOINT' });
      const name = `${prefix}layers.${m[1]}.${hf}.${m[3]}`;
      const matrix = m[3] === 'weight' && !m[2]!.startsWith('ln');
      rules.push(matrix ? transposed(s, name, native) : same(s, name, native));
    }
  }
  return rules;
}

function fleetlmRules(spec: ArchSpec): Rule[] {
  const s = expectedWeightShapes(spec);
  return [...s.keys()].map((n) => same(s, n, n));
}

/** Tensors a layout may carry that are not parameters (attention-mask and rotary buffers, a tied head copy). */
function ignorable(layout: CheckpointLayout, spec: ArchSpec, name: string): boolean {
  if (layout === 'gpt2' && /(^|\.)h\.\d+\.attn\.(masked_)?bias$/.test(name)) return true;
  // Older transformers saved the rotary inverse frequencies, which follow from rope_theta.
  if (layout === 'llama' && /(^|\.)rotary_emb\.inv_freq$/.test(name)) return true;
  if (layout !== 'fleetlm' && spec.tiedHead && name === 'lm_head.weight') return true;
  return false;
}

/** The name prefix a checkpoint uses (HF saves with or without the wrapper module's prefix). */
function detectPrefix(layout: CheckpointLayout, names: ReadonlySet<string> | ReadonlyMap<string, unknown>): string {
  const candidates =
    layout === 'gpt2' ? ['transformer.', ''] : layout === 'opt' ? ['model.decoder.', 'decoder.', ''] : layout === 'llama' ? ['model.', ''] : [''];
  const probe = layout === 'gpt2' ? 'wte.weight' : 'embed_tokens.weight';
  return candidates.find((c) => names.has(`${c}${probe}`)) ?? candidates[0]!;
}

function rulesFor(spec: ArchSpec, layout: CheckpointLayout, prefix: string): Rule[] {
  if (layout === 'gpt2') return gpt2Rules(spec, prefix);
  if (layout === 'opt') return optRules(spec, prefix);
  if (layout === 'llama') return llamaRules(spec, prefix);
  return fleetlmRules(spec);
}

/**
 * Checks checkpoint tensor names and shapes (headers only) against the spec under `layout`: every
 * expected tensor present with the implied shape, nothing else but known buffers. Returns the rules.
 */
function checkTensors(spec: ArchSpec, layout: CheckpointLayout, shapes: ReadonlyMap<string, readonly number[]>): Rule[] {
  const rules = rulesFor(spec, layout, detectPrefix(layout, shapes));
  const known = new Set(rules.map((r) => r.name));
  for (const name of shapes.keys()) {
    if (!known.has(name) && !ignorable(layout, spec, name)) {
      throw new ModelError(`checkpoint tensor "${name}" has no place in the spec under the ${layout} layout (expected names like ${rules.slice(0, 3).map((r) => r.name).join(', ')})`, { code: 'MODEL_CHECKPOINT' });
    }
  }
  for (const rule of rules) {
    const got = shapes.get(rule.name);
    if (!got) {
      const why = rule.name === 'lm_head.weight' ? ' (the config does not tie the head to the embeddings)' : '';
      throw new ModelError(`checkpoint (${layout} layout) is missing tensor "${rule.name}" that the spec needs${why}`, { code: 'MODEL_CHECKPOINT' });
    }
    if (got.length !== rule.shape.length || got.some((d, i) => d !== rule.shape[i])) {
      throw new ModelError(`checkpoint tensor "${rule.name}" has shape [${got.join(', ')}]; the spec needs [${rule.shape.join(', ')}]`, { code: 'MODEL_CHECKPOINT' });
    }
  }
  return rules;
}

/** Converts a checkpoint's tensors in `layout` to native weights, checking every name and shape against the spec. */
export function weightsFromCheckpoint(spec: ArchSpec, checkpoint: SafetensorsFile | Map<string, WeightTensor>, layout: CheckpointLayout): DecoderWeights {
  const isFile = (c: SafetensorsFile | Map<string, WeightTensor>): c is SafetensorsFile => !(c instanceof Map);
  const shapes = new Map<string, number[]>();
  if (isFile(checkpoint)) for (const [n, t] of checkpoint.tensors) shapes.set(n, t.shape);
  else for (const [n, t] of checkpoint) shapes.set(n, t.shape);
  const rules = checkTensors(spec, layout, shapes);
  const fetch = (name: string): WeightTensor => (isFile(checkpoint) ? tensorToFloat32(name, checkpoint.tensors.get(name)!) : checkpoint.get(name)!);
  const out: DecoderWeights = new Map();
  for (const rule of rules) rule.toNative(fetch(rule.name)).forEach((t, i) => out.set(rule.natives[i]!, t));
  validateWeights(spec, out);
  return out;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/** Tensor-at-a-time access to checkpoint tensors by checkpoint name. */
export interface CheckpointTensors {
  /** Shape and stored dtype (safetensors names: F32, F16, BF16, ...) of every tensor. */
  readonly tensors: ReadonlyMap<string, { shape: number[]; dtype?: string }>;
  read(name: string): WeightTensor;
}

/**
 * Native weights of a checkpoint that stay on disk: names and shapes are checked now (headers
 * only), each native tensor is read, converted and laid out when loaded. A fused checkpoint tensor
 * (GPT-2's c_attn) is read once per native tensor it holds.
 */
export function checkpointWeightSource(spec: ArchSpec, checkpoint: CheckpointTensors, layout: CheckpointLayout): WeightSource {
  const ckptShapes = new Map<string, number[]>();
  for (const [n, t] of checkpoint.tensors) ckptShapes.set(n, t.shape);
  const rules = checkTensors(spec, layout, ckptShapes);
  // Refuse integer or boolean weights now, before anything is written, rather than mid-save.
  for (const rule of rules) {
    const dtype = checkpoint.tensors.get(rule.name)!.dtype;
    if (dtype !== undefined && !FLOAT_DTYPES.has(dtype)) {
      throw new ModelError(`checkpoint tensor "${rule.name}" is stored as ${dtype}; weights must be F32, F16, BF16 or F64`, { code: 'MODEL_CHECKPOINT' });
    }
  }
  const byNative = new Map<string, { rule: Rule; index: number }>();
  rules.forEach((rule) => rule.natives.forEach((n, index) => byNative.set(n, { rule, index })));
  const expected = expectedWeightShapes(spec);
  const shapes = new Map<string, readonly number[]>([...expected].filter(([n]) => byNative.has(n)));
  const source: WeightSource = {
    shapes,
    load(name) {
      const at = byNative.get(name);
      if (!at) throw new ModelError(`weight "${name}" is not in the checkpoint`, { code: 'MODEL_CHECKPOINT' });
      return at.rule.toNative(checkpoint.read(at.rule.name))[at.index]!.data;
    },
  };
  validateWeightSource(spec, source);
  return source;
}

/** The checkpoint name prefix `layout` uses in `names` (e.g. "model." for Llama), as the loaders detect it. */
export function checkpointPrefix(layout: CheckpointLayout, names: ReadonlyMap<string, unknown>): string {
  return detectPrefix(layout, names);
}

/** Converts native weights to the tensor names and layouts of `layout` (tests write HF-style checkpoints with it). */
export function weightsToCheckpoint(spec: ArchSpec, weights: DecoderWeights, layout: CheckpointLayout, prefix?: string): Map<string, WeightTensor> {
  validateWeights(spec, weights);
  const p = prefix ?? (layout === 'gpt2' ? 'transformer.' : layout === 'opt' ? 'model.decoder.' : layout === 'llama' ? 'model.' : '');
  const out = new Map<string, WeightTensor>();
  for (const rule of rulesFor(spec, layout, p)) out.set(rule.name, rule.fromNative(weights));
  return out;
}
