// What the search maximises within the budgets: MeRino's entropy or one of the zero-cost baselines
// it was measured against (bench/entropy-quality.ts; docs/search.md "Which objective").
import type { ArchSpec } from '../arch/spec.ts';
import { countForwardFlops, parameterBreakdown } from '../arch/accounting.ts';
import { embeddingHeadEntropy, networkEntropy, type EntropyOptions } from '../entropy/network-entropy.ts';

/**
 * - `entropy`: MeRino's network entropy of the layers (models/entropy/README.md).
 * - `entropy-embedding`: that plus the entropy of the token embedding and the LM head.
 * - `params`: all parameters (embedding included).
 * - `decoder-params`: parameters without the token and position embeddings (LiteTransformerSearch's proxy).
 * - `flops`: forward FLOPs at the search's seqLen.
 */
export const SEARCH_OBJECTIVES = ['entropy', 'entropy-embedding', 'params', 'decoder-params', 'flops'] as const;
export type SearchObjective = (typeof SEARCH_OBJECTIVES)[number];

/**
 * The default objective. bench/entropy-quality.ts trained 14 designs x 3 seeds at 480k parameters:
 * see docs/search.md for the figures behind this choice.
 */
export const DEFAULT_OBJECTIVE: SearchObjective = 'params';

/** Parameters other than the token and position tables. */
export function decoderParameters(spec: ArchSpec): number {
  const b = parameterBreakdown(spec);
  return b.total - b.tokenEmbedding - b.positionEmbedding;
}

/** The objective's value for a spec, from the accounting and entropy code (the search's cross-check). */
export function objectiveValue(spec: ArchSpec, objective: SearchObjective, options: EntropyOptions & { seqLen: number }): number {
  switch (objective) {
    case 'entropy':
      return networkEntropy(spec, options).entropy;
    case 'entropy-embedding':
      return networkEntropy(spec, options).entropy + embeddingHeadEntropy(spec, options);
    case 'params':
      return parameterBreakdown(spec).total;
    case 'decoder-params':
      return decoderParameters(spec);
    case 'flops':
      return countForwardFlops(spec, options.seqLen);
  }
}
