// Exact parameter, FLOP and decode-memory accounting for an ArchSpec: the three budgets the
// architecture search must meet, and the figures every report quotes.
import { attentionWidthOf, embeddingWidthOf, ffnWidthOf, totalLayersOf, type ArchSpec, type BlockSpec } from './spec.ts';

/** MeRino counts FLOPs at this sequence length. */
export const DEFAULT_SEQ_LEN = 1024;

/**
 * Parameters of one pre-LN transformer layer:
 * LN1 (2E) + Q,K,V (E x A + A each) + output (A x E + E) + LN2 (2E) + FFN up (E x F + F) + down (F x E + E).
 */
export function layerParameters(width: number, attentionWidth: number, ffnWidth: number): number {
  const e = width;
  const a = attentionWidth;
  const f = ffnWidth;
  return 2 * e + 3 * (e * a + a) + (a * e + e) + 2 * e + (e * f + f) + (f * e + e);
}

/** Parameters of a block: its layers' weights, counted once when the layers share them. */
export function blockParameters(block: BlockSpec): number {
  const perLayer = layerParameters(block.width, attentionWidthOf(block), ffnWidthOf(block));
  return perLayer * (block.shareWeights ? 1 : block.layers);
}

/** Itemised parameter count (each line is part of countParameters). */
export interface ParameterBreakdown {
  tokenEmbedding: number;
  positionEmbedding: number;
  projectIn: number;
  blocks: number[];
  blockProjections: number;
  finalLayerNorm: number;
  projectOut: number;
  head: number;
  total: number;
}

/** Parameter count split by part; see countParameters for the conventions. */
export function parameterBreakdown(spec: ArchSpec): ParameterBreakdown {
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  const tokenEmbedding = spec.vocabSize * eEmb;
  const positionEmbedding = (spec.contextLength + spec.positionOffset) * eEmb;
  const projectIn = eEmb !== first.width ? eEmb * first.width : 0;
  const blocks = spec.blocks.map(blockParameters);
  let blockProjections = 0;
  for (let i = 1; i < spec.blocks.length; i++) {
    const p = spec.blocks[i - 1]!.width;
    const n = spec.blocks[i]!.width;
    if (p !== n) blockProjections += p * n + n;
  }
  const finalLayerNorm = 2 * last.width;
  const projectOut = spec.tiedHead && last.width !== eEmb ? last.width * eEmb : 0;
  const head = spec.tiedHead ? 0 : last.width * spec.vocabSize;
  const total =
    tokenEmbedding + positionEmbedding + projectIn + blocks.reduce((a, b) => a + b, 0) + blockProjections + finalLayerNorm + projectOut + head;
  return { tokenEmbedding, positionEmbedding, projectIn, blocks, blockProjections, finalLayerNorm, projectOut, head, total };
}

/**
 * Exact number of trainable parameters. Conventions: token embedding V x Eemb; learned positions
 * (contextLength + positionOffset) x Eemb; bias-free project_in when Eemb differs from the first
 * block; per layer as in layerParameters, shared-weight blocks counted once; a linear with bias
 * between blocks of different width; final LayerNorm; a tied head reuses the token embedding
 * (bias-free project_out if the last width differs), an untied head is E_last x V without bias.
 * Reproduces GPT-2 small (124,439,808) and OPT-125m (125,239,296).
 */
export function countParameters(spec: ArchSpec): number {
  return parameterBreakdown(spec).total;
}

/** Itemised forward FLOPs (each line is part of countForwardFlops). */
export interface FlopBreakdown {
  /** Q, K, V and output projections of every layer. */
  attentionProjections: number;
  /** Q K^T scores and scores x V of every layer. */
  attentionMatmuls: number;
  ffn: number;
  /** project_in, projections between blocks, project_out. */
  projections: number;
  head: number;
  total: number;
}

/** Forward FLOPs split by part; see countForwardFlops for what is counted. */
export function flopBreakdown(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN): FlopBreakdown {
  const s = seqLen;
  const eEmb = embeddingWidthOf(spec);
  const first = spec.blocks[0]!;
  const last = spec.blocks[spec.blocks.length - 1]!;
  let attentionProjections = 0;
  let attentionMatmuls = 0;
  let ffn = 0;
  let projections = eEmb !== first.width ? 2 * s * eEmb * first.width : 0;
  spec.blocks.forEach((b, i) => {
    const e = b.width;
    const a = attentionWidthOf(b);
    const f = ffnWidthOf(b);
    // Shared weights save parameters, not compute: every layer still runs.
    attentionProjections += b.layers * 2 * s * (4 * e * a);
    attentionMatmuls += b.layers * 2 * (2 * s * s * a);
    ffn += b.layers * 2 * s * (2 * e * f);
    if (i > 0 && spec.blocks[i - 1]!.width !== e) projections += 2 * s * spec.blocks[i - 1]!.width * e;
  });
  const headWidth = spec.tiedHead ? eEmb : last.width;
  if (spec.tiedHead && last.width !== eEmb) projections += 2 * s * last.width * eEmb;
  const head = 2 * s * headWidth * spec.vocabSize;
  const total = attentionProjections + attentionMatmuls + ffn + projections + head;
  return { attentionProjections, attentionMatmuls, ffn, projections, head, total };
}

/**
 * Forward FLOPs of one sequence of `seqLen` tokens at batch 1, a multiply-add counted as 2 FLOPs.
 * Counted: every matrix multiplication (Q, K, V, output and FFN projections of every layer,
 * shared or not; the full S x S attention scores and score-value products per layer, causal
 * masking not subtracted; project_in/out and projections between blocks; the LM head on all S
 * positions). Not counted: embedding lookups, bias adds, LayerNorm, softmax, GELU and residual
 * adds, which are O(S x E) and below 1% for the shapes searched.
 */
export function countForwardFlops(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN): number {
  return flopBreakdown(spec, seqLen).total;
}

/** Bytes of the K and V cache for `seqLen` tokens (every layer keeps its own, shared or not). */
export function kvCacheBytes(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN, bytesPerValue = 4): number {
  let values = 0;
  for (const b of spec.blocks) values += b.layers * 2 * seqLen * attentionWidthOf(b);
  return values * bytesPerValue;
}

/**
 * Peak memory of one decode step at context `seqLen`: all weights at `bytesPerWeight` plus the
 * K/V cache of every layer at `seqLen` tokens (cache stored at `kvBytesPerValue`, by default the
 * weight width). Activations of a single decode token are O(E + F + V) and not included.
 */
export function decodeMemoryBytes(
  spec: ArchSpec,
  seqLen: number = DEFAULT_SEQ_LEN,
  bytesPerWeight = 4,
  kvBytesPerValue: number = bytesPerWeight,
): number {
  return countParameters(spec) * bytesPerWeight + kvCacheBytes(spec, seqLen, kvBytesPerValue);
}

/** All three budgets of a spec in one call. */
export interface ArchCosts {
  params: number;
  flops: number;
  decodeMemoryBytes: number;
  layers: number;
}

/** Parameters, forward FLOPs and decode memory at `seqLen`. */
export function archCosts(spec: ArchSpec, seqLen: number = DEFAULT_SEQ_LEN, bytesPerWeight = 4): ArchCosts {
  return {
    params: countParameters(spec),
    flops: countForwardFlops(spec, seqLen),
    decodeMemoryBytes: decodeMemoryBytes(spec, seqLen, bytesPerWeight),
    layers: totalLayersOf(spec),
  };
}
