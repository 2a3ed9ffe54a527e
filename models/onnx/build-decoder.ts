// Builds an ONNX decoder-only transformer from an ArchSpec and its weights, with a KV cache under
// Hugging Face Optimum's text-generation-with-past names: GPT-2/OPT (pre-LN, learned positions,
// GELU FFN) and the Llama family (RMSNorm, rotary positions, grouped-query attention, SwiGLU), each
// option independent. The plain graph uses only standard ONNX ops (opset 17); the fused graph uses
// onnxruntime's com.microsoft operators and packed projection weights, the compiler-aware "fewer,
// fused operators" idea of MeRino (Zhao et al. 2024).
import { ModelError } from '../../common/errors.ts';
import { embeddingWidthOf, type ArchSpec, type BlockSpec } from '../arch/spec.ts';
import type { Activation } from '../arch/activation.ts';
import { DataType, type ModelProto } from './proto.ts';
import { GraphBuilder, float } from './graph-builder.ts';
import { expectedWeightShapes, layerPlan, validateWeights, type DecoderWeights, type LayerPlan } from '../arch/weights.ts';
import { isWeightSource, validateWeightSource, type WeightSource } from '../arch/weight-source.ts';

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

/** A residual add the fused graph has not materialised yet (folded into the next Skip*Normalization). */
interface Pending {
  value: string;
  bias?: string;
}

/**
 * Builds the decoder graph. In-memory weights are referenced, not copied, so keep them alive until
 * the model is saved; a WeightSource is read only when the model is saved, one tensor at a time.
 * Throws ModelError when the weights do not match the spec.
 */
export function buildDecoderModel(spec: ArchSpec, weights: DecoderWeights | WeightSource, options: BuildOptions = {}): ModelProto {
  const source = isWeightSource(weights) ? weights : undefined;
  const memory = isWeightSource(weights) ? undefined : weights;
  if (source) validateWeightSource(spec, source);
  else validateWeights(spec, memory!);
  const fused = options.fused === true;
  const activation = options.activation ?? 'gelu';
  const g = new GraphBuilder();
  const plan = layerPlan(spec);
  const V = spec.vocabSize;
  const eEmb = embeddingWidthOf(spec);
  const rotary = spec.positions === 'rotary';
  // Which tensors exist follows from the spec alone, so no weight data is touched to decide.
  const shapes = expectedWeightShapes(spec);
  const has = (name: string): boolean => shapes.has(name);

  const added = new Set<string>();
  /** Shape of a native weight, known without reading its data. */
  const shapeOf = (name: string): readonly number[] => {
    const shape = source ? source.shapes.get(name) : memory!.get(name)?.shape;
    if (!shape) throw new ModelError(`weight "${name}" missing`);
    return shape;
  };
  /** The one place weight data is read (w and packed go through it): from memory, or from the source while the file is written. */
  const read = (name: string): Float32Array => (source ? source.load(name) : memory!.get(name)!.data);
  /** Adds an initializer whose data `make` gives: now for in-memory weights, at save time (then dropped) for a source. */
  const init = (name: string, dims: number[], make: () => Float32Array): void => {
    if (source) g.initFloatLazy(name, dims, make);
    else g.initFloat(name, make(), dims);
  };
  /** Adds a native weight as an initializer once, however many layers use it. */
  const w = (name: string): string => {
    if (!added.has(name)) {
      init(name, [...shapeOf(name)], () => read(name));
      added.add(name);
    }
    return name;
  };
  /**
   * The one packing helper: concatenates native weights (2-D [rows, cols_i]) or biases (1-D)
   * along their last axis into a new initializer `name`, once.
   */
  const packed = (name: string, parts: readonly string[]): string => {
    if (added.has(name)) return name;
    const partShapes = parts.map(shapeOf);
    const rows = partShapes[0]!.length === 2 ? partShapes[0]![0]! : 1;
    const widths = partShapes.map((shape) => shape[shape.length - 1]!);
    const cols = widths.reduce((a, b) => a + b, 0);
    init(name, partShapes[0]!.length === 2 ? [rows, cols] : [cols], () => {
      const tensors = parts.map(read);
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        let at = r * cols;
        tensors.forEach((t, i) => {
          out.set(t.subarray(r * widths[i]!, (r + 1) * widths[i]!), at);
          at += widths[i]!;
        });
      }
      return out;
    });
    added.add(name);
    return name;
  };

  // Inputs.
  const inputIds = g.input('input_ids', DataType.INT64, [DIMS.batch, DIMS.seq]);
  const attentionMask = g.input('attention_mask', DataType.INT64, [DIMS.batch, DIMS.total]);
  const positionIds = g.input('position_ids', DataType.INT64, [DIMS.batch, DIMS.seq]);
  for (const layer of plan) {
    const n = cacheNames(layer.index);
    g.input(n.pastKey, DataType.FLOAT, [DIMS.batch, layer.kvHeads, DIMS.past, layer.headDim]);
    g.input(n.pastValue, DataType.FLOAT, [DIMS.batch, layer.kvHeads, DIMS.past, layer.headDim]);
  }

  // Embeddings: the token lookup is one Gather on embed_tokens.weight (compression replaces it).
  const tok = g.op('Gather', [w('embed_tokens.weight'), inputIds], { axis: 0 }, 'embed_tokens_out');
  let pos: string | undefined;
  if (!rotary) {
    const posIndex = spec.positionOffset > 0 ? g.op('Add', [positionIds, g.constInt64([spec.positionOffset], [])]) : positionIds;
    pos = g.op('Gather', [w('embed_positions.weight'), posIndex], { axis: 0 }, 'embed_positions_out');
  }

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
  /** The mask for grouped-query scores [batch, kvHeads, group*seq, total]: rows repeat per group. */
  const groupedMasks = new Map<number, string>();
  const groupedMask = (group: number): string => {
    let m = groupedMasks.get(group);
    if (!m) {
      m = g.op('Tile', [allowed, g.constInt64([1, 1, group, 1])]);
      groupedMasks.set(group, m);
    }
    return m;
  };

  // Rotary angles, computed once from position_ids in float32 as transformers' LlamaRotaryEmbedding
  // does: angle[b, s, i] = position_ids[b, s] * theta^(-2i/D), i < D/2. One set per head width.
  const angleCache = new Map<number, string>();
  const anglesOf = (D: number): string => {
    let a = angleCache.get(D);
    if (!a) {
      const invFreq = Array.from({ length: D / 2 }, (_, i) => Math.pow(spec.ropeTheta, (-2 * i) / D));
      const posF = g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: DataType.FLOAT }), g.constInt64([2])]);
      a = g.op('Mul', [posF, g.constFloat(invFreq, [D / 2])]);
      angleCache.set(D, a);
    }
    return a;
  };
  /** Plain graph: cos and sin of the angles repeated twice along D, as [batch, 1, seq, D]. */
  const plainRotaryCache = new Map<number, [string, string]>();
  const plainCosSin = (D: number): [string, string] => {
    let cs = plainRotaryCache.get(D);
    if (!cs) {
      const emb = g.op('Unsqueeze', [g.op('Concat', [anglesOf(D), anglesOf(D)], { axis: -1 }), g.constInt64([1])]);
      cs = [g.op('Cos', [emb]), g.op('Sin', [emb])];
      plainRotaryCache.set(D, cs);
    }
    return cs;
  };
  /**
   * Fused graph: com.microsoft RotaryEmbedding looks cos/sin up by position in a [n, D/2] cache.
   * The cache holds exactly this step's tokens (n = batch*seq) and the lookup index is their flat
   * row, so no position table bounds the sequence.
   */
  const fusedRotaryCache = new Map<number, { cos: string; sin: string; index: string }>();
  const fusedRotary = (D: number): { cos: string; sin: string; index: string } => {
    let r = fusedRotaryCache.get(D);
    if (!r) {
      const flat = g.op('Reshape', [anglesOf(D), g.constInt64([-1, D / 2])]);
      const count = g.op('Squeeze', [g.op('Shape', [flat], { start: 0, end: 1 }), g.constInt64([0])]);
      const index = g.op('Reshape', [g.op('Range', [zero, count, one]), g.op('Shape', [positionIds])]);
      r = { cos: g.op('Cos', [flat]), sin: g.op('Sin', [flat]), index };
      fusedRotaryCache.set(D, r);
    }
    return r;
  };

  const layerNorm = (x: string, prefix: string): string =>
    g.op('LayerNormalization', [x, w(`${prefix}.weight`), w(`${prefix}.bias`)], { axis: -1, epsilon: float(spec.layerNormEpsilon) });
  /** RMSNorm from standard ops (opset 17 has no RMSNormalization): x / sqrt(mean(x^2) + eps) * gamma. */
  const rmsNorm = (x: string, prefix: string): string => {
    // Pow(x, 2) rather than Mul(x, x): the Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul chain is the
    // pattern onnxruntime's optimizer fuses into its own RMSNorm kernel.
    const meanSquare = g.op('ReduceMean', [g.op('Pow', [x, g.constFloat([2])])], { axes: [-1], keepdims: 1 });
    const rms = g.op('Sqrt', [g.op('Add', [meanSquare, g.constFloat([spec.layerNormEpsilon])])]);
    return g.op('Mul', [g.op('Div', [x, rms]), w(`${prefix}.weight`)]);
  };
  const plainNorm = (x: string, prefix: string, kind: BlockSpec['norm']): string => (kind === 'rmsnorm' ? rmsNorm(x, prefix) : layerNorm(x, prefix));
  const linear = (x: string, weight: string, bias?: string): string => {
    const y = g.op('MatMul', [x, w(weight)]);
    return bias && has(bias) ? g.op('Add', [y, w(bias)]) : y;
  };

  let h: string;
  let pending: Pending | undefined;
  const embedded = pos ? (fused ? undefined : g.op('Add', [tok, pos])) : tok;
  if (eEmb !== spec.blocks[0]!.width) {
    h = linear(embedded ?? g.op('Add', [tok, pos!]), 'project_in.weight');
  } else if (embedded) {
    h = embedded;
  } else {
    h = tok;
    pending = { value: pos! };
  }

  /** Normalises the residual stream; in the fused graph folds the pending residual add in. */
  const norm = (prefix: string, kind: BlockSpec['norm']): string => {
    if (!fused) return plainNorm(h, prefix, kind);
    const eps = float(spec.layerNormEpsilon);
    if (!pending) {
      // SimplifiedLayerNormalization is onnxruntime's RMSNorm kernel, registered in the default domain.
      return kind === 'rmsnorm' ? g.op('SimplifiedLayerNormalization', [h, w(`${prefix}.weight`)], { axis: -1, epsilon: eps }) : layerNorm(h, prefix);
    }
    const inputs =
      kind === 'rmsnorm' ? [h, pending.value, w(`${prefix}.weight`)] : [h, pending.value, w(`${prefix}.weight`), w(`${prefix}.bias`)];
    if (pending.bias) inputs.push(pending.bias);
    const op = kind === 'rmsnorm' ? 'SkipSimplifiedLayerNormalization' : 'SkipLayerNormalization';
    const [out, , , sum] = g.node(op, inputs, [g.fresh('skip_norm'), '', '', g.fresh('residual')], { epsilon: eps }, 'com.microsoft');
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

  /** GELU-family activation of the plain graph on `up` (already biased). */
  const plainActivation = (up: string): string => {
    if (activation === 'relu') return g.op('Relu', [up]);
    if (activation === 'gelu_tanh') {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const cube = g.op('Mul', [up, g.op('Mul', [up, up])]);
      const inner = g.op('Mul', [g.op('Add', [up, g.op('Mul', [cube, g.constFloat([0.044715])])]), g.constFloat([Math.sqrt(2 / Math.PI)])]);
      return g.op('Mul', [g.op('Mul', [up, g.constFloat([0.5])]), g.op('Add', [g.op('Tanh', [inner]), g.constFloat([1])])]);
    }
    // Exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))), the pattern onnxruntime fuses into Gelu.
    const erf = g.op('Erf', [g.op('Div', [up, g.constFloat([Math.SQRT2])])]);
    return g.op('Mul', [g.op('Mul', [up, g.op('Add', [erf, g.constFloat([1])])]), g.constFloat([0.5])]);
  };
  /** SiLU(gate) * up, transformers' LlamaMLP act_fn(gate_proj(x)) * up_proj(x). */
  const swiglu = (gate: string, up: string): string => g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);

  /**
   * Causal attention from standard ops on heads-first q [B, H, S, D] (already scaled) and the
   * layer's whole cache k, v [B, KV, T, D]. Grouped-query attention reshapes q to
   * [B, KV, group*S, D] instead of repeating K and V (query head h reads KV head floor(h / group),
   * transformers' repeat_kv), so the cache is never copied. Returns [B, S, H*D].
   */
  const attention = (q: string, k: string, v: string, H: number, KV: number, D: number): string => {
    const group = H / KV;
    const qg = group === 1 ? q : g.op('Reshape', [q, g.constInt64([0, KV, -1, D])]);
    const scores = g.op('MatMul', [qg, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })]);
    const masked = g.op('Where', [group === 1 ? allowed : groupedMask(group), scores, g.constFloat([MASK_VALUE])]);
    const probs = g.op('Softmax', [masked], { axis: -1 });
    let ctx = g.op('MatMul', [probs, v]);
    if (group !== 1) ctx = g.op('Reshape', [ctx, g.constInt64([0, H, -1, D])]);
    return g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.constInt64([0, 0, H * D])]);
  };

  let prevBlock = 0;
  for (const layer of plan) {
    if (layer.block !== prevBlock) {
      prevBlock = layer.block;
      const projName = `block_proj.${layer.block}`;
      if (has(`${projName}.weight`)) {
        settle();
        h = linear(h, `${projName}.weight`, `${projName}.bias`);
      }
    }
    if (fused) fusedLayer(layer, spec.blocks[layer.block]!);
    else plainLayer(layer, spec.blocks[layer.block]!);
  }

  function plainLayer(layer: LayerPlan, block: BlockSpec): void {
    const p = layer.prefix;
    const { heads: H, kvHeads: KV, headDim: D } = layer;
    const n = cacheNames(layer.index);
    const x = plainNorm(h, `${p}.ln1`, block.norm);
    const heads = (t: string, count: number): string =>
      g.op('Transpose', [g.op('Reshape', [t, g.constInt64([0, 0, count, D])])], { perm: [0, 2, 1, 3] });
    let q = heads(linear(x, `${p}.attn.q.weight`, `${p}.attn.q.bias`), H);
    let k = heads(linear(x, `${p}.attn.k.weight`, `${p}.attn.k.bias`), KV);
    const v = heads(linear(x, `${p}.attn.v.weight`, `${p}.attn.v.bias`), KV);
    if (rotary) {
      // x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x[D/2:], x[:D/2]).
      const [cos, sin] = plainCosSin(D);
      const rotate = (t: string): string => {
        const [lo, hi] = g.node('Split', [t, g.constInt64([D / 2, D / 2])], 2, { axis: -1 });
        const half = g.op('Concat', [g.op('Neg', [hi!]), lo!], { axis: -1 });
        return g.op('Add', [g.op('Mul', [t, cos]), g.op('Mul', [half, sin])]);
      };
      q = rotate(q);
      k = rotate(k);
    }
    q = g.op('Mul', [q, g.constFloat([1 / Math.sqrt(D)])]);
    const presentK = g.op('Concat', [n.pastKey, k], { axis: 2 }, n.presentKey);
    const presentV = g.op('Concat', [n.pastValue, v], { axis: 2 }, n.presentValue);
    const ctx = attention(q, presentK, presentV, H, KV, D);
    h = g.op('Add', [h, linear(ctx, `${p}.attn.out.weight`, `${p}.attn.out.bias`)]);
    const y = plainNorm(h, `${p}.ln2`, block.norm);
    const up = linear(y, `${p}.ffn.up.weight`, `${p}.ffn.up.bias`);
    const act = block.mlp === 'swiglu' ? swiglu(linear(y, `${p}.ffn.gate.weight`, `${p}.ffn.gate.bias`), up) : plainActivation(up);
    h = g.op('Add', [h, linear(act, `${p}.ffn.down.weight`, `${p}.ffn.down.bias`)]);
  }

  function fusedLayer(layer: LayerPlan, block: BlockSpec): void {
    const p = layer.prefix;
    const { heads: H, kvHeads: KV, headDim: D } = layer;
    const A = H * D;
    const Akv = KV * D;
    const n = cacheNames(layer.index);
    const x = norm(`${p}.ln1`, block.norm);
    const qkvNames = ['q', 'k', 'v'].map((t) => `${p}.attn.${t}`);
    let qkv = g.op('MatMul', [x, packed(`${p}.attn.qkv.weight`, qkvNames.map((t) => `${t}.weight`))]);
    const qkvBias = block.qkvBias ? packed(`${p}.attn.qkv.bias`, qkvNames.map((t) => `${t}.bias`)) : undefined;
    // MultiHeadAttention adds the packed bias itself; rotary needs it added before the rotation.
    const mhaTakesBias = !rotary && KV === H;
    if (qkvBias && !mhaTakesBias) qkv = g.op('Add', [qkv, qkvBias]);
    let [q, k, v] = g.node('Split', [qkv, g.constInt64([A, Akv, Akv])], 3, { axis: -1 });
    if (rotary) {
      const r = fusedRotary(D);
      q = g.op('RotaryEmbedding', [q!, r.index, r.cos, r.sin], { interleaved: 0 }, undefined, 'com.microsoft');
      k = g.op('RotaryEmbedding', [k!, r.index, r.cos, r.sin], { interleaved: 0 }, undefined, 'com.microsoft');
    }
    let attn: string;
    if (KV === H) {
      [attn] = g.node(
        'MultiHeadAttention',
        [q!, k!, v!, mhaTakesBias && qkvBias ? qkvBias : '', '', maskBias, n.pastKey, n.pastValue],
        [g.fresh('mha'), n.presentKey, n.presentValue],
        { num_heads: H, mask_filter_value: float(MASK_VALUE) },
        'com.microsoft',
      ) as [string];
    } else {
      attn = groupedAttention(q!, k!, v!, layer);
    }
    pending = { value: g.op('MatMul', [attn, w(`${p}.attn.out.weight`)]), ...(has(`${p}.attn.out.bias`) ? { bias: w(`${p}.attn.out.bias`) } : {}) };
    const y = norm(`${p}.ln2`, block.norm);
    let act: string;
    if (block.mlp === 'swiglu') {
      const F = layer.ffn;
      const names = [`${p}.ffn.gate`, `${p}.ffn.up`];
      let gu = g.op('MatMul', [y, packed(`${p}.ffn.gate_up.weight`, names.map((t) => `${t}.weight`))]);
      if (block.outputBias) gu = g.op('Add', [gu, packed(`${p}.ffn.gate_up.bias`, names.map((t) => `${t}.bias`))]);
      const [gate, up] = g.node('Split', [gu, g.constInt64([F, F])], 2, { axis: -1 });
      act = swiglu(gate!, up!);
    } else {
      const up = g.op('MatMul', [y, w(`${p}.ffn.up.weight`)]);
      const bias = has(`${p}.ffn.up.bias`) ? w(`${p}.ffn.up.bias`) : undefined;
      if (activation === 'relu') act = g.op('Relu', [bias ? g.op('Add', [up, bias]) : up]);
      else if (bias) act = g.op(activation === 'gelu_tanh' ? 'FastGelu' : 'BiasGelu', [up, bias], {}, undefined, 'com.microsoft');
      else act = g.op(activation === 'gelu_tanh' ? 'FastGelu' : 'Gelu', [up], {}, undefined, 'com.microsoft');
    }
    pending = { value: g.op('MatMul', [act, w(`${p}.ffn.down.weight`)]), ...(has(`${p}.ffn.down.bias`) ? { bias: w(`${p}.ffn.down.bias`) } : {}) };
  }

  /**
   * Grouped-query attention of the fused graph on q [B, S, H*D], k and v [B, S, KV*D], from standard
   * ops like the plain graph. MultiHeadAttention needs as many KV heads as query heads (repeating
   * K and V would grow the cache contract), and com.microsoft GroupQueryAttention in onnxruntime
   * 1.30 CPU requires headDim % 8 == 0, refuses a multi-token step after a past at batch > 1, and
   * measured no faster on this CPU (docs/onnx.md).
   */
  function groupedAttention(q: string, k: string, v: string, layer: LayerPlan): string {
    const { heads: H, kvHeads: KV, headDim: D } = layer;
    const n = cacheNames(layer.index);
    const heads = (t: string, count: number): string =>
      g.op('Transpose', [g.op('Reshape', [t, g.constInt64([0, 0, count, D])])], { perm: [0, 2, 1, 3] });
    const presentK = g.op('Concat', [n.pastKey, heads(k, KV)], { axis: 2 }, n.presentKey);
    const presentV = g.op('Concat', [n.pastValue, heads(v, KV)], { axis: 2 }, n.presentValue);
    const qs = g.op('Mul', [heads(q, H), g.constFloat([1 / Math.sqrt(D)])]);
    return attention(qs, presentK, presentV, H, KV, D);
  }

  const lastNorm = spec.blocks[spec.blocks.length - 1]!.norm;
  let out = norm('final_ln', lastNorm);
  let logits: string;
  if (spec.tiedHead) {
    if (has('project_out.weight')) out = g.op('MatMul', [out, w('project_out.weight')]);
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
    g.output(n.presentKey, DataType.FLOAT, [DIMS.batch, layer.kvHeads, DIMS.total, layer.headDim]);
    g.output(n.presentValue, DataType.FLOAT, [DIMS.batch, layer.kvHeads, DIMS.total, layer.headDim]);
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
