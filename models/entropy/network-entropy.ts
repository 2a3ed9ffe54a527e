// Entropy of a whole decoder: alpha_att * H_attention + alpha_ffn * H_ffn summed over every layer,
// the objective the architecture search maximises (models/entropy/README.md explains it).
import { attentionWidthOf, embeddingWidthOf, ffnWidthOf, kvWidthOf, type ArchSpec, type Mlp } from '../arch/spec.ts';
import { matrixEntropy, type MatrixEntropyOptions } from './matrix-entropy.ts';
import { networkEffectiveness } from './effectiveness.ts';

/** Weights of the two parts of a layer and the matrix entropy's scale. */
export interface EntropyOptions extends MatrixEntropyOptions {
  /** Weight of the attention entropy (default 1). */
  alphaAttention?: number;
  /** Weight of the FFN entropy (default 1). */
  alphaFfn?: number;
}

/**
 * Entropy of one layer's attention: Q (E x A) and output (A x E) projections, and K and V
 * (E x Akv each, Akv = kvHeads x headDim; default A, i.e. no grouped-query attention).
 */
export function attentionEntropy(width: number, attentionWidth: number, options: MatrixEntropyOptions = {}, kvWidth: number = attentionWidth): number {
  // Same expression as before GQA existed when K/V are full width, so old figures stay bit-identical.
  if (kvWidth === attentionWidth) return 4 * matrixEntropy(width, attentionWidth, options);
  return 2 * matrixEntropy(width, attentionWidth, options) + 2 * matrixEntropy(width, kvWidth, options);
}

/** Entropy of one layer's FFN: up (E x F) and down (F x E) projections, plus gate (E x F) for SwiGLU. */
export function ffnEntropy(width: number, ffnWidth: number, options: MatrixEntropyOptions = {}, mlp: Mlp = 'gelu'): number {
  return (mlp === 'swiglu' ? 3 : 2) * matrixEntropy(width, ffnWidth, options);
}

/** Network entropy and its parts, plus rho. */
export interface NetworkEntropy {
  /** alphaAttention * attention + alphaFfn * ffn, in nats. */
  entropy: number;
  attention: number;
  ffn: number;
  rho: number;
}

/**
 * Network entropy of a spec. Every layer counts, including the layers of a shared-weight block:
 * each still applies its transform to the signal, which is what the entropy measures.
 */
export function networkEntropy(spec: ArchSpec, options: EntropyOptions = {}): NetworkEntropy {
  let attention = 0;
  let ffn = 0;
  for (const b of spec.blocks) {
    attention += b.layers * attentionEntropy(b.width, attentionWidthOf(b), options, kvWidthOf(b));
    ffn += b.layers * ffnEntropy(b.width, ffnWidthOf(b), options, b.mlp);
  }
  const entropy = (options.alphaAttention ?? 1) * attention + (options.alphaFfn ?? 1) * ffn;
  return { entropy, attention, ffn, rho: networkEffectiveness(spec.blocks) };
}

/**
 * Entropy of the token embedding (V x Eemb) and the LM head: a tied head is the same matrix applied
 * a second time and counts again (as each layer of a shared-weight block does); an untied head is
 * E_last x V. Not part of MeRino's objective; the `entropy-embedding` search objective adds it.
 */
export function embeddingHeadEntropy(spec: ArchSpec, options: MatrixEntropyOptions = {}): number {
  const eEmb = embeddingWidthOf(spec);
  const embedding = matrixEntropy(spec.vocabSize, eEmb, options);
  if (spec.tiedHead) return 2 * embedding;
  return embedding + matrixEntropy(spec.blocks[spec.blocks.length - 1]!.width, spec.vocabSize, options);
}
