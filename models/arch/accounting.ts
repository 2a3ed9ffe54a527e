// Exact parameter, FLOP, KV-cache and weight-byte accounting for an ArchSpec: the budgets the
// architecture search must meet, and the figures every report quotes (GPT-2/OPT and Llama family).
import {
  attentionWidthOf,
  embeddingWidthOf,
  ffnWidthOf,
  kvWidthOf,
  totalLayersOf,
  type ArchSpec,
  type BlockSpec,
  type Mlp,
  type Norm,
} from './spec.ts';
import { weightByteModel, type WeightByteModel, type WeightStorage } from './weight-storage.ts';

export type { StorageType, WeightStorage } from './weight-storage.ts';

/** MeRino counts FLOPs at this sequence length. */
export const DEFAULT_SEQ_LEN = 1024;

/**
 * What a layer has besides its widths. Every field defaults to the GPT-2 layer (K/V as wide as Q,
 * LayerNorm, GELU FFN, all biases), so old callers get old counts.
 */
export interface LayerShape {
  /** Width of K and V (kvHeads x headDim); default the attention width. */
  kvWidth?: number;
  norm?: Norm;
  mlp?: Mlp;
  qkvBias?: boolean;
  outputBias?: boolean;
}

/** The shape of a block's layers. */
export function layerShapeOf(block: BlockSpec): Required<LayerShape> {
  return { kvWidth: kvWidthOf(block), norm: block.norm, mlp: block.mlp, qkvBias: block.qkvBias, outputBias: block.outputBias };
}

/** Values in one norm's parameters: scale and bias for LayerNorm, scale only for RMSNorm. */
export function normParameters(width: number, norm: Norm = 'layernorm'): number {
  return norm === 'rmsnorm' ? width : 2 * width;
}

/** Counts values rather than bytes (every tensor at one "byte" per value). */
const VALUES: WeightByteModel = weightByteModel(1);

/**
 * Parameters of one pre-norm transformer layer of width E, attention width A, K/V width Akv, FFN F:
 * two norms (2E each for LayerNorm, E for RMSNorm) + Q (E x A) + K, V (E x Akv each) (+ A + 2 Akv
 * with qkvBias) + output (A x E, + E with outputBias) + FFN: GELU up E x F and down F x E (+ F + E
 * with outputBias), SwiGLU gate and up E x F and down F x E (+ 2F + E with outputBias).
 * With the default shape: 2E + 3(E A + A) + (A E + E) + 2E + (E F + F) + (F E + E), as before.
 */
export function layerParameters(width: number, attentionWidth: number, ffnWidth: number, shape: LayerShape = {}): number {
  // One layout of a layer's tensors serves both: counting values is weighing each at one byte.
  return layerWeightBytes(width, attentionWidth, ffnWidth, shape, VALUES);
}

/** Bytes of one layer's weights under a byte model (linear weights by it, norms and biases as float). */
export function layerWeightBytes(width: number, attentionWidth: number, ffnWidth: number, shape: LayerShape, bytes: WeightByteModel): number {
  const e = width;
  const a = attentionWidth;
  const kv = shape.kvWidth ?? a;
  const f = ffnWidth;
  const qkvBias = shape.qkvBias ?? true;
  const outBias = shape.outputBias ?? true;
  const swiglu = shape.mlp === 'swiglu';
  const linear = bytes.linear(e, a) + 2 * bytes.linear(e, kv) + bytes.linear(a, e) + (swiglu ? 2 : 1) * bytes.linear(e, f) + bytes.linear(f, e);
  const floats =
    2 * normParameters(e, shape.norm) + (qkvBias ? a + 2 * kv : 0) + (outBias ? e + (swiglu ? 2 * f : f) + e : 0);
  return linear + bytes.float(floats);
}

/** Parameters of a block: its layers' weights, counted once when the layers share them. */
export function blockParameters(block: BlockSpec): number {
  const perLayer = layerParameters(block.width, attentionWidthOf(block), ffnWidthOf(block), layerShapeOf(block));
  return perLayer * (block.shareWeights ? 1 : block.layers);
}

/** Itemised parameter count (each line is part of countParameters). */
export interface ParameterBreakdown {
  tokenEmbedding: number;
  /** Learned position table; 0 with rotary positions. */
  positionEmbedding: number;
  projectIn: number;
  blocks: number[];
  blockProjections: number;
  finalLayerNorm: number;
  projectOut: number;
  head: number;
  total: number;
}

/** Rows of the learned position table (0 with rotary positions). */
function positionRows(spec: ArchSpec): number {
  return spec.positions === 'rotary' ? 0 : spec.contextLength + spec.positionOffset;
}

/** Parameter count split by part; see countParameters for the conventions. */
export function parameterBreakdown(spec: ArchSpec): ParameterBreakdown {
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  const tokenEmbedding = spec.vocabSize * eEmb;
  const positionEmbedding = positionRows(spec) * eEmb;
  const projectIn = eEmb !== first.width ? eEmb * first.width : 0;
  const blocks = spec.blocks.map(blockParameters);
  let blockProjections = 0;
  for (let i = 1; i < spec.blocks.length; i++) {
    const p = spec.blocks[i - 1]!.width;
    const b = spec.blocks[i]!;
    if (p !== b.width) blockProjections += p * b.width + (b.outputBias ? b.width : 0);
  }
  const finalLayerNorm = normParameters(last.width, last.norm);
  const projectOut = spec.tiedHead && last.width !== eEmb ? last.width * eEmb : 0;
  const head = spec.tiedHead ? 0 : last.width * spec.vocabSize;
  const total =
    tokenEmbedding + positionEmbedding + projectIn + blocks.reduce((a, b) => a + b, 0) + blockProjections + finalLayerNorm + projectOut + head;
  return { tokenEmbedding, positionEmbedding, projectIn, blocks, blockProjections, finalLayerNorm, projectOut, head, total };
}

/**
 * Exact number of trainable parameters. Conventions: token embedding V x Eemb; learned positions
 * (contextLength + positionOffset) x Eemb, none with rotary positions; bias-free project_in when
 * Eemb differs from the first block; per layer as in layerParameters (norm kind, K/V at kvHeads,
 * SwiGLU's three matrices, bias flags), shared-weight blocks counted once; a linear between blocks
 * of different width (with a bias when the later block has outputBias); the final norm (of the last
 * block's kind); a tied head reuses the token embedding (bias-free project_out if the last width
 * differs), an untied head is E_last x V without bias.
 * Reproduces GPT-2 small (124,439,808), OPT-125m (125,239,296), SmolLM2-135M (134,515,008),
 * Qwen2.5-0.5B (494,032,768) and TinyLlama-1.1B (1,100,048,384).
 */
export function countParameters(spec: ArchSpec): number {
  return parameterBreakdown(spec).total;
}

/** Itemised forward FLOPs (each line is part of countForwardFlops). */
export interface FlopBreakdown {
  /** Q, K, V and output projections of every layer (K and V at the K/V width). */
  attentionProjections: number;
  /** Q K^T scores and scores x V of every layer. */
  attentionMatmuls: number;
  /** FFN projections: up and down (GELU), gate, up and down (SwiGLU). */
  ffn: number;
  /** Rotary rotation of Q and K (rotary positions only). */
  rotary: number;
  /** SwiGLU gating, silu(gate) x up (SwiGLU only). */
  gating: number;
  /** project_in, projections between blocks, project_out. */
  projections: number;
  head: number;
  total: number;
}

/** FLOPs to rotate one value of Q or K: x cos + rotate_half(x) sin, two multiplies and an add. */
export const ROTARY_FLOPS_PER_VALUE = 3;
/** FLOPs of SwiGLU's gating per hidden unit: silu's g x sigmoid(g) and the product with up (the sigmoid, like GELU, is not counted). */
export const SWIGLU_FLOPS_PER_UNIT = 2;

/** Forward FLOPs split by part; see countForwardFlops for what is counted. */
export function flopBreakdown(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN): FlopBreakdown {
  const s = seqLen;
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  const rotaryOn = spec.positions === 'rotary';
  let attentionProjections = 0;
  let attentionMatmuls = 0;
  let ffn = 0;
  let rotary = 0;
  let gating = 0;
  let projections = eEmb !== first.width ? 2 * s * eEmb * first.width : 0;
  spec.blocks.forEach((b, i) => {
    const e = b.width;
    const a = attentionWidthOf(b);
    const kv = kvWidthOf(b);
    const f = ffnWidthOf(b);
    // Shared weights save parameters, not compute: every layer still runs.
    attentionProjections += b.layers * 2 * s * (2 * e * a + 2 * e * kv);
    // Every query head scores against its group's keys: GQA shrinks the cache, not this work.
    attentionMatmuls += b.layers * 2 * (2 * s * s * a);
    ffn += b.layers * 2 * s * ((b.mlp === 'swiglu' ? 3 : 2) * e * f);
    if (rotaryOn) rotary += b.layers * ROTARY_FLOPS_PER_VALUE * s * (a + kv);
    if (b.mlp === 'swiglu') gating += b.layers * SWIGLU_FLOPS_PER_UNIT * s * f;
    if (i > 0 && spec.blocks[i - 1]!.width !== e) projections += 2 * s * spec.blocks[i - 1]!.width * e;
  });
  const headWidth = spec.tiedHead ? eEmb : last.width;
  if (spec.tiedHead && last.width !== eEmb) projections += 2 * s * last.width * eEmb;
  const head = 2 * s * headWidth * spec.vocabSize;
  const total = attentionProjections + attentionMatmuls + ffn + rotary + gating + projections + head;
  return { attentionProjections, attentionMatmuls, ffn, rotary, gating, projections, head, total };
}

/**
 * Forward FLOPs of one sequence of `seqLen` tokens at batch 1, a multiply-add counted as 2 FLOPs.
 * Counted: every matrix multiplication (Q, K, V, output and FFN projections of every layer,
 * shared or not, K and V at kvHeads x headDim, SwiGLU's three; the full S x S attention scores and
 * score-value products per layer over all query heads, causal masking not subtracted;
 * project_in/out and projections between blocks; the LM head on all S positions), and for the
 * Llama family the rotary rotation of Q and K (3 per value) and SwiGLU's gating (2 per hidden unit).
 * Not counted (MeRino's convention, unchanged for GPT-2/OPT): embedding lookups, bias adds, norms,
 * softmax, GELU, sigmoid and residual adds, which are O(S x E) and below 1% for the shapes searched.
 */
export function countForwardFlops(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN): number {
  return flopBreakdown(spec, seqLen).total;
}

/** Values the K/V cache holds per token: 2 x kvHeads x headDim per layer (every layer keeps its own, shared or not). */
export function kvCacheValuesPerToken(spec: ArchSpec): number {
  let values = 0;
  for (const b of spec.blocks) values += b.layers * 2 * kvWidthOf(b);
  return values;
}

/** Bytes of the K/V cache per token of context, at `bytesPerValue` (default float32). */
export function kvCacheBytesPerToken(spec: ArchSpec, bytesPerValue = 4): number {
  return kvCacheValuesPerToken(spec) * bytesPerValue;
}

/** Bytes of the K and V cache for `seqLen` tokens; grouped-query attention shrinks it by heads / kvHeads. */
export function kvCacheBytes(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN, bytesPerValue = 4): number {
  // Values first, then bytes: the same product the search's evaluator forms, to the last bit.
  return kvCacheValuesPerToken(spec) * seqLen * bytesPerValue;
}

/** Itemised bytes of the shipped weights (each line is part of weightBytes). */
export interface WeightBytesBreakdown {
  /** Token embedding (float unless the storage quantises it) plus a learned position table. */
  embeddings: number;
  /** Every layer's weights (shared blocks once): linear weights per the storage, norms and biases float. */
  blocks: number;
  /** project_in/out and projections between blocks (linear per the storage, biases float). */
  projections: number;
  finalNorm: number;
  /** Untied LM head (a tied head is the token embedding, already counted). */
  head: number;
  total: number;
}

/**
 * Bytes of the weights as they ship, tensor by tensor (models/arch/weight-storage.ts states which
 * tensors are quantised and the block layout). A number means every tensor at that many bytes per
 * value (then equal to countParameters x bytes).
 */
export function weightBytesBreakdown(spec: ArchSpec, storage: WeightStorage | number): WeightBytesBreakdown {
  const by = weightByteModel(storage);
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  const embeddings = by.embedding(spec.vocabSize, eEmb) + by.float(positionRows(spec) * eEmb);
  let blocks = 0;
  let projections = eEmb !== first.width ? by.linear(eEmb, first.width) : 0;
  spec.blocks.forEach((b, i) => {
    blocks += layerWeightBytes(b.width, attentionWidthOf(b), ffnWidthOf(b), layerShapeOf(b), by) * (b.shareWeights ? 1 : b.layers);
    const p = i > 0 ? spec.blocks[i - 1]!.width : b.width;
    if (p !== b.width) projections += by.linear(p, b.width) + (b.outputBias ? by.float(b.width) : 0);
  });
  if (spec.tiedHead && last.width !== eEmb) projections += by.linear(last.width, eEmb);
  const finalNorm = by.float(normParameters(last.width, last.norm));
  const head = spec.tiedHead ? 0 : by.linear(last.width, spec.vocabSize);
  return { embeddings, blocks, projections, finalNorm, head, total: embeddings + blocks + projections + finalNorm + head };
}

/** Bytes of the shipped weights in `storage` (or at a uniform bytes-per-value number). */
export function weightBytes(spec: ArchSpec, storage: WeightStorage | number): number {
  // A uniform width is parameters x bytes, formed as one product (as the search forms it).
  if (typeof storage === 'number') return countParameters(spec) * storage;
  return weightBytesBreakdown(spec, storage).total;
}

/**
 * Bytes per K/V cache value when weights ship in `storage`: 2 for fp16 models, else 4 (int8/int4
 * weights dequantise into float32 activations, and the cache is float32 as the ONNX graph's I/O).
 */
export function kvBytesPerValueOf(storage: WeightStorage): number {
  return storage.type === 'fp16' ? 2 : 4;
}

/**
 * Peak memory of one decode step at context `seqLen`: all weights plus the K/V cache of every layer
 * at `seqLen` tokens (at kvHeads). `weights` is a WeightStorage (exact shipped bytes; cache at
 * kvBytesPerValueOf) or a uniform bytes per weight (cache by default at the same width).
 * Activations of a single decode token are O(E + F + V) and not included.
 */
export function decodeMemoryBytes(
  spec: ArchSpec,
  seqLen: number = DEFAULT_SEQ_LEN,
  weights: WeightStorage | number = 4,
  kvBytesPerValue: number = typeof weights === 'number' ? weights : kvBytesPerValueOf(weights),
): number {
  return weightBytes(spec, weights) + kvCacheBytes(spec, seqLen, kvBytesPerValue);
}

/** All three budgets of a spec in one call. */
export interface ArchCosts {
  params: number;
  flops: number;
  decodeMemoryBytes: number;
  layers: number;
}

/** Parameters, forward FLOPs and decode memory at `seqLen`. */
export function archCosts(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN, weights: WeightStorage | number = 4): ArchCosts {
  return {
    params: countParameters(spec),
    flops: countForwardFlops(spec, seqLen),
    decodeMemoryBytes: decodeMemoryBytes(spec, seqLen, weights),
    layers: totalLayersOf(spec),
  };
}
