// Builds an ONNX decoder-only transformer (pre-LN, causal MHA, GELU FFN) from an ArchSpec and its
// weights, with a KV cache under Hugging Face Optimum's text-generation-with-past names.
// The plain graph uses only standard ONNX ops (opset 17); the fused graph uses onnxruntime's
// com.microsoft operators (MultiHeadAttention, SkipLayerNormalization, BiasGelu) and packed QKV
// weights, the compiler-aware "fewer, fused operators" idea of MeRino (Zhao et al. 2024).
import { ModelError } from '../../common/errors.ts';
import { embeddingWidthOf, type ArchSpec } from '../arch/spec.ts';
import type { Activation } from '../arch/activation.ts';
import { DataType, type ModelProto } from './proto.ts';
import { GraphBuilder, float } from './graph-builder.ts';
import { layerPlan, validateWeights, type DecoderWeights, type LayerPlan } from '../arch/weights.ts';

/** ONNX opset of the default domain (LayerNormalization needs 17). */
export const DECODER_OPSET = 17;
/** Version of the com.microsoft contrib domain the fused graph imports. */
export const MS_OPSET = 1;
/** Value a masked attention score is replaced with (plain) or offset by (fused). */
export const MASK_VALUE = -1e9;

/** Dimension names of the graph I/O (Optimum's). */
export const DIMS = {
  batch: 'batch_size',
  seq: 'sequence_length',
  past: 'past_sequence_length',
  total: 'past_sequence_length + sequence_length',
} as const;

export interface BuildOptions {
  /** Use onnxruntime contrib operators (com.microsoft) for a faster graph with the same outputs. */
  fused?: boolean;
  /** FFN activation (default exact GELU). */
  activation?: Activation;
}

export { ACTIVATIONS, type Activation } from '../arch/activation.ts';

/** Names of the ONNX graph inputs and outputs for layer i. */
export function cacheNames(i: number): { pastKey: string; pastValue: string; presentKey: string; presentValue: string } {
  return {
    pastKey: `past_key_values.${i}.key`,
    pastValue: `past_key_values.${i}.value`,
    presentKey: `present.${i}.key`,
    presentValue: `present.${i}.value`,
  };
}

/** Metadata keys written into model.metadata_props. */
export const METADATA_KEYS = { arch: 'fleetlm.arch', variant: 'fleetlm.variant', format: 'fleetlm.format', activation: 'fleetlm.activation' } as const;

interface Pending {
  value: string;
  bias?: string;
}

/**
 * Builds the decoder graph. Weights are referenced, not copied, so keep them alive until the
 * model is saved. Throws ModelError when the weights do not match the spec.
 */
export function buildDecoderModel(spec: ArchSpec, weights: DecoderWeights, options: BuildOptions = {}): ModelProto {
  validateWeights(spec, weights);
  const fused = options.fused === true;
  const activation = options.activation ?? 'gelu';
  const g = new GraphBuilder();
  const plan = layerPlan(spec);
  const V = spec.vocabSize;
  const eEmb = embeddingWidthOf(spec);

  const added = new Set<string>();
  /** Adds a native weight as an initializer once, however many layers use it. */
  const w = (name: string): string => {
    if (!added.has(name)) {
      const t = weights.get(name);
      if (!t) throw new ModelError(`weight "${name}" missing`);
      g.initFloat(name, t.data, t.shape);
      added.add(name);
    }
    return name;
  };
  /** Concatenates q, k, v weights (or biases) along the last axis once per weight set. */
  const packedQkv = (prefix: string, kind: 'weight' | 'bias'): string => {
    const name = `${prefix}.attn.qkv.${kind}`;
    if (added.has(name)) return name;
    const parts = ['q', 'k', 'v'].map((x) => weights.get(`${prefix}.attn.${x}.${kind}`)!);
    const shape = parts[0]!.shape;
    if (kind === 'bias') {
      const out = new Float32Array(shape[0]! * 3);
      parts.forEach((p, i) => out.set(p.data, i * shape[0]!));
      g.initFloat(name, out, [shape[0]! * 3]);
    } else {
      const [rows, cols] = [shape[0]!, shape[1]!];
      const out = new Float32Array(rows * cols * 3);
      for (let r = 0; r < rows; r++) {
        parts.forEach((p, i) => out.set(p.data.subarray(r * cols, (r + 1) * cols), r * cols * 3 + i * cols));
      }
      g.initFloat(name, out, [rows, cols * 3]);
    }
    added.add(name);
    return name;
  };

  // Inputs.
  const inputIds = g.input('input_ids', DataType.INT64, [DIMS.batch, DIMS.seq]);
  const attentionMask = g.input('attention_mask', DataType.INT64, [DIMS.batch, DIMS.total]);
  const positionIds = g.input('position_ids', DataType.INT64, [DIMS.batch, DIMS.seq]);
  for (const layer of plan) {
    const n = cacheNames(layer.index);
    g.input(n.pastKey, DataType.FLOAT, [DIMS.batch, layer.heads, DIMS.past, layer.headDim]);
    g.input(n.pastValue, DataType.FLOAT, [DIMS.batch, layer.heads, DIMS.past, layer.headDim]);
  }

  // Embeddings: the token lookup is one Gather on embed_tokens.weight (compression replaces it).
  const tok = g.op('Gather', [w('embed_tokens.weight'), inputIds], { axis: 0 }, 'embed_tokens_out');
  const posIndex = spec.positionOffset > 0 ? g.op('Add', [positionIds, g.constInt64([spec.positionOffset], [])]) : positionIds;
  const pos = g.op('Gather', [w('embed_positions.weight'), posIndex], { axis: 0 }, 'embed_positions_out');

  // Attention mask shared by all layers: query at absolute position past+i may see key j <= past+i
  // whose attention_mask entry is 1. allowed has shape [batch, 1, seq, total].
  const total = g.op('Shape', [attentionMask], { start: 1, end: 2 });
  const seqLen = g.op('Shape', [inputIds], { start: 1, end: 2 });
  const pastLen = g.op('Sub', [total, seqLen]);
  const totalScalar = g.op('Squeeze', [total, g.constInt64([0])]);
  const pastScalar = g.op('Squeeze', [pastLen, g.constInt64([0])]);
  const zero = g.constInt64([0], []);
  const one = g.constInt64([1], []);
  const keyIdx = g.op('Unsqueeze', [g.op('Range', [zero, totalScalar, one]), g.constInt64([0])]);
  const queryIdx = g.op('Unsqueeze', [g.op('Range', [pastScalar, totalScalar, one]), g.constInt64([1])]);
  const causal = g.op('LessOrEqual', [keyIdx, queryIdx]);
  const padding = g.op('Unsqueeze', [g.op('Cast', [attentionMask], { to: DataType.BOOL }), g.constInt64([1, 2])]);
  const allowed = g.op('And', [causal, padding], {}, 'attention_allowed');
  const maskBias = fused
    ? g.op('Where', [allowed, g.constFloat([0]), g.constFloat([MASK_VALUE])], {}, 'attention_bias')
    : '';

  const ln = (x: string, prefix: string): string =>
    g.op('LayerNormalization', [x, w(`${prefix}.weight`), w(`${prefix}.bias`)], { axis: -1, epsilon: float(spec.layerNormEpsilon) });
  const linear = (x: string, weight: string, bias?: string): string => {
    const y = g.op('MatMul', [x, w(weight)]);
    return bias ? g.op('Add', [y, w(bias)]) : y;
  };

  let h: string;
  let pending: Pending | undefined;
  if (eEmb !== spec.blocks[0]!.width) {
    h = linear(g.op('Add', [tok, pos]), 'project_in.weight');
  } else if (fused) {
    h = tok;
    pending = { value: pos };
  } else {
    h = g.op('Add', [tok, pos]);
  }

  /** Normalises the residual stream; in the fused graph folds the pending residual add in. */
  const norm = (prefix: string): string => {
    if (!fused || !pending) return ln(h, prefix);
    const inputs = [h, pending.value, w(`${prefix}.weight`), w(`${prefix}.bias`)];
    if (pending.bias) inputs.push(pending.bias);
    const [out, , , sum] = g.node('SkipLayerNormalization', inputs, [g.fresh('skip_ln'), '', '', g.fresh('residual')], { epsilon: float(spec.layerNormEpsilon) }, 'com.microsoft');
    h = sum!;
    pending = undefined;
    return out!;
  };
  /** Materialises the pending residual add (fused graph) before h is used directly. */
  const settle = (): void => {
    if (!pending) return;
    h = g.op('Add', [h, pending.value]);
    if (pending.bias) h = g.op('Add', [h, pending.bias]);
    pending = undefined;
  };

  let prevBlock = 0;
  for (const layer of plan) {
    if (layer.block !== prevBlock) {
      prevBlock = layer.block;
      const projName = `block_proj.${layer.block}`;
      if (weights.has(`${projName}.weight`)) {
        settle();
        h = linear(h, `${projName}.weight`, `${projName}.bias`);
      }
    }
    if (fused) fusedLayer(layer);
    else plainLayer(layer);
  }

  function plainLayer(layer: LayerPlan): void {
    const p = layer.prefix;
    const { heads: H, headDim: D } = layer;
    const A = H * D;
    const n = cacheNames(layer.index);
    const x = ln(h, `${p}.ln1`);
    const heads = (t: string): string => g.op('Transpose', [g.op('Reshape', [t, g.constInt64([0, 0, H, D])])], { perm: [0, 2, 1, 3] });
    const q = g.op('Mul', [heads(linear(x, `${p}.attn.q.weight`, `${p}.attn.q.bias`)), g.constFloat([1 / Math.sqrt(D)])]);
    const k = heads(linear(x, `${p}.attn.k.weight`, `${p}.attn.k.bias`));
    const v = heads(linear(x, `${p}.attn.v.weight`, `${p}.attn.v.bias`));
    const presentK = g.op('Concat', [n.pastKey, k], { axis: 2 }, n.presentKey);
    const presentV = g.op('Concat', [n.pastValue, v], { axis: 2 }, n.presentValue);
    const scores = g.op('MatMul', [q, g.op('Transpose', [presentK], { perm: [0, 1, 3, 2] })]);
    const masked = g.op('Where', [allowed, scores, g.constFloat([MASK_VALUE])]);
    const probs = g.op('Softmax', [masked], { axis: -1 });
    const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, presentV])], { perm: [0, 2, 1, 3] }), g.constInt64([0, 0, A])]);
    h = g.op('Add', [h, linear(ctx, `${p}.attn.out.weight`, `${p}.attn.out.bias`)]);
    const y = ln(h, `${p}.ln2`);
    const up = linear(y, `${p}.ffn.up.weight`, `${p}.ffn.up.bias`);
    let act: string;
    if (activation === 'relu') act = g.op('Relu', [up]);
    else if (activation === 'gelu_tanh') {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const cube = g.op('Mul', [up, g.op('Mul', [up, up])]);
      const inner = g.op('Mul', [g.op('Add', [up, g.op('Mul', [cube, g.constFloat([0.044715])])]), g.constFloat([Math.sqrt(2 / Math.PI)])]);
      act = g.op('Mul', [g.op('Mul', [up, g.constFloat([0.5])]), g.op('Add', [g.op('Tanh', [inner]), g.constFloat([1])])]);
    } else {
      // Exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))), the pattern onnxruntime fuses into Gelu.
      const erf = g.op('Erf', [g.op('Div', [up, g.constFloat([Math.SQRT2])])]);
      act = g.op('Mul', [g.op('Mul', [up, g.op('Add', [erf, g.constFloat([1])])]), g.constFloat([0.5])]);
    }
    h = g.op('Add', [h, linear(act, `${p}.ffn.down.weight`, `${p}.ffn.down.bias`)]);
  }

  function fusedLayer(layer: LayerPlan): void {
    const p = layer.prefix;
    const n = cacheNames(layer.index);
    const x = norm(`${p}.ln1`);
    const qkv = g.op('MatMul', [x, packedQkv(p, 'weight')]);
    const A = layer.heads * layer.headDim;
    const [q, k, v] = g.node('Split', [qkv, g.constInt64([A, A, A])], 3, { axis: -1 });
    const [attn] = g.node(
      'MultiHeadAttention',
      [q!, k!, v!, packedQkv(p, 'bias'), '', maskBias, n.pastKey, n.pastValue],
      [g.fresh('mha'), n.presentKey, n.presentValue],
      { num_heads: layer.heads, mask_filter_value: float(MASK_VALUE) },
      'com.microsoft',
    );
    pending = { value: g.op('MatMul', [attn!, w(`${p}.attn.out.weight`)]), bias: w(`${p}.attn.out.bias`) };
    const y = norm(`${p}.ln2`);
    const up = g.op('MatMul', [y, w(`${p}.ffn.up.weight`)]);
    const bias = w(`${p}.ffn.up.bias`);
    const act =
      activation === 'relu'
        ? g.op('Relu', [g.op('Add', [up, bias])])
        : activation === 'gelu_tanh'
          ? g.op('FastGelu', [up, bias], {}, undefined, 'com.microsoft')
          : g.op('BiasGelu', [up, bias], {}, undefined, 'com.microsoft');
    pending = { value: g.op('MatMul', [act, w(`${p}.ffn.down.weight`)]), bias: w(`${p}.ffn.down.bias`) };
  }

  let out = norm('final_ln');
  let logits: string;
  if (spec.tiedHead) {
    if (weights.has('project_out.weight')) out = g.op('MatMul', [out, w('project_out.weight')]);
    // Tied head: logits = out @ embed_tokens.weight^T via Gemm(transB), on [batch*seq, Eemb].
    const flat = g.op('Reshape', [out, g.constInt64([-1, eEmb])]);
    const gemm = g.op('Gemm', [flat, w('embed_tokens.weight')], { transB: 1 });
    const outShape = g.op('Concat', [g.op('Shape', [inputIds]), g.constInt64([V])], { axis: 0 });
    logits = g.op('Reshape', [gemm, outShape], {}, 'logits');
  } else {
    logits = g.op('MatMul', [out, w('lm_head.weight')], {}, 'logits');
  }

  g.output(logits, DataType.FLOAT, [DIMS.batch, DIMS.seq, V]);
  for (const layer of plan) {
    const n = cacheNames(layer.index);
    g.output(n.presentKey, DataType.FLOAT, [DIMS.batch, layer.heads, DIMS.total, layer.headDim]);
    g.output(n.presentValue, DataType.FLOAT, [DIMS.batch, layer.heads, DIMS.total, layer.headDim]);
  }

  const opsets: Record<string, number> = { '': DECODER_OPSET };
  if (fused) opsets['com.microsoft'] = MS_OPSET;
  return g.toModel({
    graphName: spec.name ?? 'fleetlm-decoder',
    opsets,
    docString: `FleetLM decoder (${fused ? 'fused' : 'plain'}), ${plan.length} layers`,
    metadata: {
      [METADATA_KEYS.format]: 'fleetlm/decoder@1',
      [METADATA_KEYS.variant]: fused ? 'fused' : 'plain',
      [METADATA_KEYS.activation]: activation,
      [METADATA_KEYS.arch]: JSON.stringify(spec),
    },
  });
}

/** Initializers holding model parameters (everything except graph-plumbing constants). */
export function parameterInitializerNames(model: ModelProto): string[] {
  return (model.graph?.initializer ?? [])
    .map((t) => t.name ?? '')
    .filter((name) => !name.startsWith('const_'));
}
