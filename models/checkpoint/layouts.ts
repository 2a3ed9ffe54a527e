// Maps checkpoint tensor names and layouts to FleetLM's native weights and back: FleetLM native,
// Hugging Face GPT-2 (GPT2LMHeadModel; Conv1D weights stored [in, out], fused c_attn) and
// Hugging Face OPT (OPTForCausalLM; nn.Linear weights stored [out, in], 2 reserved position rows).
import { ModelError } from '../../common/errors.ts';
import { embeddingWidthOf, type ArchSpec } from '../arch/spec.ts';
import { expectedWeightShapes, layerPlan, validateWeights, type DecoderWeights, type WeightTensor } from '../arch/weights.ts';
import { tensorToFloat32, type SafetensorsFile } from './safetensors.ts';
import type { Activation } from '../arch/activation.ts';

export const CHECKPOINT_LAYOUTS = ['fleetlm', 'gpt2', 'opt'] as const;
export type CheckpointLayout = (typeof CHECKPOINT_LAYOUTS)[number];

/** The FFN activation each layout's models were trained with (OPT: ReLU; GPT-2: `gelu_new`, the tanh GELU). */
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

/** One checkpoint tensor: its name, and how it maps to native weights in both directions. */
interface Rule {
  name: string;
  toNative(t: WeightTensor, out: DecoderWeights): void;
  fromNative(w: DecoderWeights): WeightTensor;
}

const same = (ckpt: string, native: string): Rule => ({
  name: ckpt,
  toNative: (t, out) => void out.set(native, t),
  fromNative: (w) => w.get(native)!,
});
const transposed = (ckpt: string, native: string): Rule => ({
  name: ckpt,
  toNative: (t, out) => {
    if (t.shape.length !== 2) throw new ModelError(`checkpoint tensor "${ckpt}" has shape [${t.shape.join(', ')}]; expected a matrix`, { code: 'MODEL_CHECKPOINT' });
    out.set(native, transpose2d(t));
  },
  fromNative: (w) => transpose2d(w.get(native)!),
});
/** GPT-2's c_attn: q, k, v concatenated along the last axis (weight [E, 3A], bias [3A]). */
const splitQkv = (ckpt: string, prefix: string, kind: 'weight' | 'bias'): Rule => ({
  name: ckpt,
  toNative: (t, out) => {
    const last = t.shape[t.shape.length - 1]!;
    if (last % 3 !== 0) throw new ModelError(`checkpoint tensor "${ckpt}" has last dimension ${last}, not divisible into q, k, v`, { code: 'MODEL_CHECKPOINT' });
    const a = last / 3;
    const rows = t.data.length / last;
    ['q', 'k', 'v'].forEach((x, i) => {
      const part = new Float32Array(rows * a);
      for (let r = 0; r < rows; r++) part.set(t.data.subarray(r * last + i * a, r * last + (i + 1) * a), r * a);
      out.set(`${prefix}.attn.${x}.${kind}`, { data: part, shape: kind === 'weight' ? [rows, a] : [a] });
    });
  },
  fromNative: (w) => {
    const parts = ['q', 'k', 'v'].map((x) => w.get(`${prefix}.attn.${x}.${kind}`)!);
    const a = parts[0]!.shape[parts[0]!.shape.length - 1]!;
    const rows = parts[0]!.data.length / a;
    const data = new Float32Array(rows * a * 3);
    for (let r = 0; r < rows; r++) parts.forEach((p, i) => data.set(p.data.subarray(r * a, (r + 1) * a), r * a * 3 + i * a));
    return { data, shape: kind === 'weight' ? [rows, 3 * a] : [3 * a] };
  },
});

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
  const rules: Rule[] = [same(`${prefix}wte.weight`, 'embed_tokens.weight'), same(`${prefix}wpe.weight`, 'embed_positions.weight')];
  for (const l of layerPlan(spec)) {
    const h = `${prefix}h.${l.index}`;
    const p = l.prefix;
    rules.push(
      same(`${h}.ln_1.weight`, `${p}.ln1.weight`),
      same(`${h}.ln_1.bias`, `${p}.ln1.bias`),
      splitQkv(`${h}.attn.c_attn.weight`, p, 'weight'),
      splitQkv(`${h}.attn.c_attn.bias`, p, 'bias'),
      same(`${h}.attn.c_proj.weight`, `${p}.attn.out.weight`),
      same(`${h}.attn.c_proj.bias`, `${p}.attn.out.bias`),
      same(`${h}.ln_2.weight`, `${p}.ln2.weight`),
      same(`${h}.ln_2.bias`, `${p}.ln2.bias`),
      same(`${h}.mlp.c_fc.weight`, `${p}.ffn.up.weight`),
      same(`${h}.mlp.c_fc.bias`, `${p}.ffn.up.bias`),
      same(`${h}.mlp.c_proj.weight`, `${p}.ffn.down.weight`),
      same(`${h}.mlp.c_proj.bias`, `${p}.ffn.down.bias`),
    );
  }
  rules.push(same(`${prefix}ln_f.weight`, 'final_ln.weight'), same(`${prefix}ln_f.bias`, 'final_ln.bias'));
  if (!spec.tiedHead) rules.push(transposed('lm_head.weight', 'lm_head.weight'));
  return rules;
}

function optRules(spec: ArchSpec, prefix: string): Rule[] {
  requireSingleWidth(spec, 'opt');
  const rules: Rule[] = [same(`${prefix}embed_tokens.weight`, 'embed_tokens.weight'), same(`${prefix}embed_positions.weight`, 'embed_positions.weight')];
  const shapes = expectedWeightShapes(spec);
  if (shapes.has('project_in.weight')) rules.push(transposed(`${prefix}project_in.weight`, 'project_in.weight'));
  for (const l of layerPlan(spec)) {
    const h = `${prefix}layers.${l.index}`;
    const p = l.prefix;
    rules.push(
      same(`${h}.self_attn_layer_norm.weight`, `${p}.ln1.weight`),
      same(`${h}.self_attn_layer_norm.bias`, `${p}.ln1.bias`),
      transposed(`${h}.self_attn.q_proj.weight`, `${p}.attn.q.weight`),
      same(`${h}.self_attn.q_proj.bias`, `${p}.attn.q.bias`),
      transposed(`${h}.self_attn.k_proj.weight`, `${p}.attn.k.weight`),
      same(`${h}.self_attn.k_proj.bias`, `${p}.attn.k.bias`),
      transposed(`${h}.self_attn.v_proj.weight`, `${p}.attn.v.weight`),
      same(`${h}.self_attn.v_proj.bias`, `${p}.attn.v.bias`),
      transposed(`${h}.self_attn.out_proj.weight`, `${p}.attn.out.weight`),
      same(`${h}.self_attn.out_proj.bias`, `${p}.attn.out.bias`),
      same(`${h}.final_layer_norm.weight`, `${p}.ln2.weight`),
      same(`${h}.final_layer_norm.bias`, `${p}.ln2.bias`),
      transposed(`${h}.fc1.weight`, `${p}.ffn.up.weight`),
      same(`${h}.fc1.bias`, `${p}.ffn.up.bias`),
      transposed(`${h}.fc2.weight`, `${p}.ffn.down.weight`),
      same(`${h}.fc2.bias`, `${p}.ffn.down.bias`),
    );
  }
  rules.push(same(`${prefix}final_layer_norm.weight`, 'final_ln.weight'), same(`${prefix}final_layer_norm.bias`, 'final_ln.bias'));
  if (shapes.has('project_out.weight')) rules.push(transposed(`${prefix}project_out.weight`, 'project_out.weight'));
  if (!spec.tiedHead) rules.push(transposed('lm_head.weight', 'lm_head.weight'));
  return rules;
}

function fleetlmRules(spec: ArchSpec): Rule[] {
  return [...expectedWeightShapes(spec).keys()].map((n) => same(n, n));
}

/** Tensors a layout may carry that are not parameters (attention-mask buffers, a tied head copy). */
function ignorable(layout: CheckpointLayout, spec: ArchSpec, name: string): boolean {
  if (layout === 'gpt2' && /(^|\.)h\.\d+\.attn\.(masked_)?bias$/.test(name)) return true;
  if (layout !== 'fleetlm' && spec.tiedHead && name === 'lm_head.weight') return true;
  return false;
}

/** The name prefix a checkpoint uses (HF saves with or without the wrapper module's prefix). */
function detectPrefix(layout: CheckpointLayout, names: Set<string>): string {
  const candidates = layout === 'gpt2' ? ['transformer.', ''] : layout === 'opt' ? ['model.decoder.', 'decoder.', ''] : [''];
  const probe = layout === 'gpt2' ? 'wte.weight' : 'embed_tokens.weight';
  return candidates.find((c) => names.has(`${c}${probe}`)) ?? candidates[0]!;
}

function rulesFor(spec: ArchSpec, layout: CheckpointLayout, prefix: string): Rule[] {
  if (layout === 'gpt2') return gpt2Rules(spec, prefix);
  if (layout === 'opt') return optRules(spec, prefix);
  return fleetlmRules(spec);
}

/** Converts a checkpoint's tensors in `layout` to native weights, checking every name and shape against the spec. */
export function weightsFromCheckpoint(spec: ArchSpec, checkpoint: SafetensorsFile | Map<string, WeightTensor>, layout: CheckpointLayout): DecoderWeights {
  const isFile = (c: SafetensorsFile | Map<string, WeightTensor>): c is SafetensorsFile => !(c instanceof Map);
  const names = new Set(isFile(checkpoint) ? checkpoint.tensors.keys() : checkpoint.keys());
  const fetch = (name: string): WeightTensor | undefined => {
    if (!isFile(checkpoint)) return checkpoint.get(name);
    const t = checkpoint.tensors.get(name);
    return t ? tensorToFloat32(name, t) : undefined;
  };
  const prefix = detectPrefix(layout, names);
  const rules = rulesFor(spec, layout, prefix);
  const known = new Set(rules.map((r) => r.name));
  for (const name of names) {
    if (!known.has(name) && !ignorable(layout, spec, name)) {
      throw new ModelError(`checkpoint tensor "${name}" has no place in the spec under the ${layout} layout (expected names like ${rules.slice(0, 3).map((r) => r.name).join(', ')})`, { code: 'MODEL_CHECKPOINT' });
    }
  }
  const out: DecoderWeights = new Map();
  for (const rule of rules) {
    const t = fetch(rule.name);
    if (!t) throw new ModelError(`checkpoint (${layout} layout) is missing tensor "${rule.name}" that the spec needs`, { code: 'MODEL_CHECKPOINT' });
    rule.toNative(t, out);
  }
  validateWeights(spec, out);
  return out;
}

/** Converts native weights to the tensor names and layouts of `layout` (tests write HF-style checkpoints with it). */
export function weightsToCheckpoint(spec: ArchSpec, weights: DecoderWeights, layout: CheckpointLayout, prefix?: string): Map<string, WeightTensor> {
  validateWeights(spec, weights);
  const p = prefix ?? (layout === 'gpt2' ? 'transformer.' : layout === 'opt' ? 'model.decoder.' : '');
  const out = new Map<string, WeightTensor>();
  for (const rule of rulesFor(spec, layout, p)) out.set(rule.name, rule.fromNative(weights));
  return out;
}
