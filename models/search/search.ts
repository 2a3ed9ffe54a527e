// MeRino's evolutionary architecture search (Zhao et al., AAAI 2025, Algorithm 1): maximise the
// network entropy of a block-wise decoder (GPT-2 or Llama family) subject to parameter, FLOP,
// decode-memory, latency and effectiveness budgets. The loop lives here; the evaluator
// (evaluator.ts), the population (population.ts) and the options (options.ts) are beside it.
// 100,000 mutate-evaluate-insert steps allocate nothing and take tens of milliseconds.
import { ValidationError } from '../../common/errors.ts';
import { formatBytes, formatCount } from '../../common/units.ts';
import type { ArchSpec } from '../arch/spec.ts';
import { countForwardFlops, countParameters, decodeMemoryBytes, weightBytes } from '../arch/accounting.ts';
import { networkEntropy } from '../entropy/network-entropy.ts';
import { SeededRandom as Rng } from '../random.ts';
import { resolveLatencyModel, type SearchDevice } from './device-latency.ts';
import { Evaluator, G, GENE_KV, GENE_SHARE, genomeToSpec } from './evaluator.ts';
import { predictLatencyMs } from './latency-model.ts';
import { resolveSearchOptions, settingsOf, DEFAULT_MIN_EMBEDDING_WIDTH, type ResolvedOptions, type SearchBudgets, type SearchOptions, type SearchSettings } from './options.ts';
import { Population } from './population.ts';
import { objectiveValue, type SearchObjective } from './objective.ts';

export {
  DEFAULT_FFN_RATIOS,
  DEFAULT_MIN_ATTENTION_RATIO,
  DEFAULT_MIN_EMBEDDING_WIDTH,
  DEFAULT_WIDTHS,
  SearchBudgetsSchema,
  SearchOptionsSchema,
  type SearchBudgets,
  type SearchOptions,
  type SearchSettings,
} from './options.ts';
export type { SearchDevice } from './device-latency.ts';
export { DEFAULT_OBJECTIVE, SEARCH_OBJECTIVES, type SearchObjective } from './objective.ts';

/** What the search found, with every figure recomputed from the spec by the accounting code. */
export interface SearchResult {
  format: 'fleetlm/search-result@1';
  spec: ArchSpec;
  params: number;
  flops: number;
  decodeMemoryBytes: number;
  /** Bytes of the weights as they ship (weightStorage, or parameters x bytesPerWeight). */
  weightBytes: number;
  /** What the search maximised (also settings.objective) and the design's value of it. */
  objective: SearchObjective;
  score: number;
  /** Network entropy in nats (models/entropy/README.md), whatever the objective. */
  entropy: number;
  entropyAttention: number;
  entropyFfn: number;
  rho: number;
  /** Predicted per-token decode latency at seqLen on the device; null without a device. */
  latencyMs: number | null;
  budgets: SearchBudgets & { rhoMax: number };
  device: SearchDevice | null;
  settings: SearchSettings;
  seed: number;
  stats: { evaluated: number; feasible: number; inserted: number; populationSize: number; elapsedMs: number };
}

const MAX_GENES = 4; // genes changed per step: 1, then each further one with probability MULTI_GENE_P
const MULTI_GENE_P = 0.6;

/** One line per budget the smallest design in the space already breaks, naming the smallest feasible value. */
function infeasibility(ev: Evaluator, o: ResolvedOptions, smallest: string): string[] {
  const b = o.budgets;
  const out: string[] = [];
  if (b.params !== undefined && ev.params > b.params) out.push(`params budget ${formatCount(b.params)} is below the smallest feasible value ${formatCount(ev.params)} (${ev.params} parameters)`);
  if (b.flops !== undefined && ev.flops > b.flops) out.push(`FLOPs budget ${formatCount(b.flops)} is below the smallest feasible value ${formatCount(ev.flops)} (${ev.flops} FLOPs)`);
  if (b.decodeMemoryBytes !== undefined && ev.memory > b.decodeMemoryBytes) {
    out.push(`decode memory budget ${formatBytes(b.decodeMemoryBytes)} is below the smallest feasible value ${formatBytes(ev.memory)} (${ev.memory} bytes)`);
  }
  if (b.latencyMs !== undefined && ev.latency > b.latencyMs) out.push(`latency budget ${b.latencyMs} ms is below the smallest feasible value ${ev.latency.toFixed(3)} ms`);
  if (ev.rho > o.rhoMax) out.push(`rhoMax ${o.rhoMax} is below the smallest feasible value ${ev.rho.toFixed(4)}`);
  if (!ev.attentionOk) {
    out.push(`minAttentionRatio ${o.minAttentionRatio} needs more than maxHeads ${o.maxHeads} heads of ${o.headDim} (or more than the block width) at the smallest width`);
  }
  return out.length > 0 ? [...out.slice(0, -1), `${out[out.length - 1]} (the smallest design in the search space is ${smallest})`] : out;
}

/**
 * Resolves the floor on the first block's width as an index into the width grid. With a fixed
 * embedding width there is none. A caller's floor is kept even if it makes the budgets unmeetable
 * (the caller then gets the infeasibility error); the default floor steps down the grid until the
 * smallest design at it meets every budget, so tight budgets (a 6M model with a 50k vocabulary)
 * still get a design. `smallestAt` evaluates the smallest design at a grid index into `ev`.
 */
function embeddingFloor(
  o: ResolvedOptions,
  ev: Evaluator,
  smallestAt: (w0: number) => void,
): { index: number; source: SearchSettings['minEmbeddingWidthSource'] } {
  if (o.embeddingWidth !== undefined) {
    if (o.minEmbeddingWidth !== undefined && o.embeddingWidth < o.minEmbeddingWidth) {
      throw new ValidationError(`embeddingWidth ${o.embeddingWidth} is below minEmbeddingWidth ${o.minEmbeddingWidth}; fix one or the other`);
    }
    return { index: 0, source: null };
  }
  const wanted = o.minEmbeddingWidth ?? DEFAULT_MIN_EMBEDDING_WIDTH;
  const index = o.widths.findIndex((w) => w >= wanted);
  if (o.minEmbeddingWidth !== undefined) {
    if (index < 0) {
      throw new ValidationError(`minEmbeddingWidth ${wanted} is above the widest width in the search space (${o.widths[o.widths.length - 1]})`);
    }
    return { index, source: 'option' };
  }
  // The default is a target (capped at the grid): take the widest grid width at or below it that the budgets allow.
  const top = index < 0 ? o.widths.length - 1 : index;
  for (let w = top; w > 0; w--) {
    smallestAt(w);
    if (ev.feasible()) return { index: w, source: w === top ? 'default' : 'lowered-to-fit' };
  }
  return { index: 0, source: top === 0 ? 'default' : 'lowered-to-fit' };
}

/**
 * Searches for the architecture with the highest value of the objective (default DEFAULT_OBJECTIVE) within the budgets. Synchronous and seeded: the
 * same options give the same result. Throws ValidationError (code VALIDATION_INFEASIBLE_BUDGET)
 * when even the smallest architecture breaks a budget, naming the smallest feasible value.
 */
export function searchArchitecture(options: SearchOptions = {}): SearchResult {
  const started = performance.now();
  const { onProgress, ...rest } = options;
  const o = resolveSearchOptions(rest);
  const seqLen = o.seqLen;
  const { model, device } = resolveLatencyModel(o, seqLen);
  const ev = new Evaluator(o, model);
  const nb = o.blocks;
  const share = o.weightSharing === 'always' ? 1 : 0;
  const GL = G * nb;
  const population = new Population(o.population, GL);
  const child = new Int32Array(GL);
  // The smallest design whose first block (and so every block) is at least `w0` wide.
  const smallestAt = (w0: number): void => {
    // One K/V head is the smallest choice (the gpt family ignores this gene).
    for (let b = 0; b < nb; b++) child.set([w0, 0, 1, ev.minHeadsFor[w0]!, share, 1], b * G);
    ev.evaluate(child, 0);
  };
  const floor = embeddingFloor(o, ev, smallestAt);
  const w0Min = floor.index;
  smallestAt(w0Min);
  if (!ev.feasible()) {
    const emb = o.embeddingWidth === undefined ? '' : `, embedding width ${o.embeddingWidth}`;
    const heads = ev.minHeadsFor[w0Min]!;
    const why = floor.source === 'option' ? ` (minEmbeddingWidth ${o.minEmbeddingWidth})` : '';
    const kvText = ev.llama ? ' (1 K/V head)' : '';
    const s = `${nb} block(s) of width ${o.widths[w0Min]}${why}, FFN ratio ${o.ffnRatios[0]}, 1 layer and ${heads} head${heads === 1 ? '' : 's'}${kvText} each${emb}, vocab ${o.vocabSize}, context ${o.contextLength}`;
    throw new ValidationError(`no architecture meets the budgets: ${infeasibility(ev, o, s).join('; ')}`, { code: 'VALIDATION_INFEASIBLE_BUDGET' });
  }
  population.insert(child, ev.score);

  const rng = new Rng(o.seed);
  // Genes a step may change: width, ratio, layers, heads, then K/V heads (llama), then sharing (when searched).
  const searchShare = o.weightSharing === 'search';
  const geneCodes = Int32Array.from([0, 1, 2, 3, ...(ev.llama ? [GENE_KV] : []), ...(searchShare ? [GENE_SHARE] : [])]);
  const geneCount = geneCodes.length;
  const maxL = o.maxLayersPerBlock;
  let evaluated = 1;
  let feasibleCount = 1;
  let inserted = 1;
  const progressEvery = 4096;

  // Small steps refine, uniform jumps explore; half of the mutations do each.
  const mutateInt = (cur: number, lo: number, hi: number): number => {
    if (lo >= hi) return lo;
    if (rng.next() < 0.5) {
      const step = 1 + rng.int(2);
      let v = cur + (rng.next() < 0.5 ? -step : step);
      if (v < lo) v = lo;
      if (v > hi) v = hi;
      return v;
    }
    return rng.range(lo, hi);
  };

  for (let it = 0; it < o.iterations; it++) {
    if (onProgress && it % progressEvery === 0) onProgress(it, o.iterations);
    const size = population.size;
    population.copyMember(rng.int(size < o.parentSetSize ? size : o.parentSetSize), child);
    const b = rng.int(nb);
    const p = b * G;
    // One block per step (as MeRino); sometimes several of its genes, so a width increase can
    // come with a depth cut that keeps a budget-tight design feasible.
    let genes = 1;
    while (genes < MAX_GENES && rng.next() < MULTI_GENE_P) genes++;
    for (let k = 0; k < genes; k++) {
      switch (geneCodes[rng.int(geneCount)]) {
        case 0: {
          const lo = b > 0 ? child[p - G]! : w0Min;
          const hi = b < nb - 1 ? child[p + G]! : ev.nw - 1;
          const w = mutateInt(child[p]!, lo, hi);
          child[p] = w;
          if (child[p + 3]! > ev.maxHeadsFor[w]!) child[p + 3] = ev.maxHeadsFor[w]!;
          if (child[p + 3]! < ev.minHeadsFor[w]!) child[p + 3] = ev.minHeadsFor[w]!;
          break;
        }
        case 1:
          child[p + 1] = mutateInt(child[p + 1]!, 0, ev.nr - 1);
          break;
        case 2:
          child[p + 2] = mutateInt(child[p + 2]!, 1, maxL);
          break;
        case 3:
          child[p + 3] = mutateInt(child[p + 3]!, ev.minHeadsFor[child[p]!]!, ev.maxHeadsFor[child[p]!]!);
          break;
        case GENE_KV: {
          // Among the divisors of the query heads, so every K/V head serves the same number of queries.
          const h = child[p + 3]!;
          // The heads may have changed earlier in this step: start from the nearest valid K/V count.
          const slot = mutateInt(ev.slot(h, ev.fitKv(h, child[p + 5]!)), 0, ev.divisorCount[h - 1]! - 1);
          child[p + 5] = ev.divisors[(h - 1) * ev.mkv + slot]!;
          break;
        }
        default:
          child[p + 4] = 1 - child[p + 4]!;
      }
    }
    // A one-layer block is the same design shared or not; keep one spelling so duplicates are caught.
    if (searchShare && child[p + 2] === 1) child[p + 4] = 0;
    // Query heads may have changed: keep K/V heads a divisor of them.
    if (ev.llama) child[p + 5] = ev.fitKv(child[p + 3]!, child[p + 5]!);
    ev.evaluate(child, 0);
    evaluated++;
    if (!ev.feasible()) continue;
    feasibleCount++;
    if (population.insert(child, ev.score)) inserted++;
  }
  onProgress?.(o.iterations, o.iterations);

  const best = population.genomes;
  const spec = genomeToSpec(best, 0, o, `fleetlm-search-seed${o.seed}`);
  const params = countParameters(spec);
  const flops = countForwardFlops(spec, seqLen);
  const weights = o.storage ?? o.bytesPerWeight;
  const memory = decodeMemoryBytes(spec, seqLen, weights, o.kvBytesPerValue);
  const shipped = weightBytes(spec, weights);
  const latencyMs = model ? predictLatencyMs(spec, model) : null;
  const ent = networkEntropy(spec, { sigma: o.sigma, eps: o.eps, alphaAttention: o.alphaAttention, alphaFfn: o.alphaFfn });
  // Cross-check: the evaluator's table-driven figures must equal the accounting code's for the winner.
  ev.evaluate(best, 0);
  if (params !== ev.params || flops !== ev.flops || memory !== ev.memory || shipped !== ev.weightBytes || (latencyMs !== null && latencyMs !== ev.latency) || ent.rho !== ev.rho) {
    throw new Error(`search evaluator disagrees with the accounting for ${JSON.stringify(spec)}`);
  }
  // The objective from the accounting and entropy code; entropies are summed in another order, so to 1e-9.
  const score = objectiveValue(spec, o.objective, { sigma: o.sigma, eps: o.eps, alphaAttention: o.alphaAttention, alphaFfn: o.alphaFfn, seqLen });
  if (!(Math.abs(score - ev.score) <= 1e-9 * Math.abs(score))) throw new Error(`search objective ${o.objective} disagrees with the accounting (${ev.score} vs ${score}) for ${JSON.stringify(spec)}`);
  if (!(ent.rho <= o.rhoMax) || !ev.attentionOk) throw new Error(`search returned a design outside rhoMax or the attention floor: ${JSON.stringify(spec)}`);
  return {
    format: 'fleetlm/search-result@1',
    spec,
    params,
    flops,
    decodeMemoryBytes: memory,
    weightBytes: shipped,
    objective: o.objective,
    score,
    entropy: ent.entropy,
    entropyAttention: ent.attention,
    entropyFfn: ent.ffn,
    rho: ent.rho,
    latencyMs,
    budgets: { ...o.budgets, rhoMax: o.rhoMax },
    device,
    settings: settingsOf(o, { width: floor.source === null ? null : o.widths[w0Min]!, source: floor.source }),
    seed: o.seed,
    stats: { evaluated, feasible: feasibleCount, inserted, populationSize: population.size, elapsedMs: performance.now() - started },
  };
}
