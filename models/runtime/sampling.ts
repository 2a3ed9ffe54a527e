// Next-token selection from a row of logits: greedy, temperature, top-k and top-p (nucleus) sampling
// with a seeded RNG. Used by the language model's decode loop; scratch buffers are reused per token.
import { mulberry32 } from '../random.ts';
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';
import { fastExp } from './fast-exp.ts';

/**
 * Tokens whose scaled logit (l - max) / T lies below this get weight 0 and skip the exp: each would
 * weigh under e^-87 < 1.7e-38 against the top token's 1, so even 10^7 of them change the total mass
 * by less than 2e-31 of it, far below float64 resolution, and none can be in a nucleus: the nucleus
 * mass topP is at most 1 - 2^-53 of the total and is reached before them.
 */
const EXP_CUTOFF = -87;
/** Index of the high 32-bit word of a float64 in a Uint32Array view: 1 on little-endian platforms, 0 on big-endian ones (s390x). */
const HI = new Uint32Array(Float64Array.of(1).buffer)[1] === 0x3ff00000 ? 1 : 0;
const LO = 1 - HI;
/** Boundary buckets at most this large are ordered by insertion sort; larger ones are refined further. */
const SMALL_BUCKET = 32;
/**
 * Bins per radix-select level over a weight's float64 bits: 1 = the exponent and the first 4 mantissa
 * bits (see firstBin), 2 = the high word's bits 15..8, 3 = bits 7..0, 4..6 = the low word's bits
 * 31..20, 19..8, 7..0.
 */
const DIGIT_BINS = [0, 2048, 256, 256, 4096, 4096, 256] as const;
/** The high word's leading 16 bits (sign, exponent, 4 mantissa bits) of firstBin's bin 0. */
const FIRST_BIN_BASE = 896 << 4;

/**
 * Level-1 bin of a weight from its high word: the low 7 bits of the exponent field and the first 4
 * mantissa bits. Positive weights lie in [e^-87, 1], exponent fields 897..1023, which this maps in
 * order onto bins 16..2047; weight 0 lands in bin 0 and adds no mass.
 */
function firstBin(hi: number): number {
  return (hi >>> 16) & 0x7ff;
}

/** How the next token is chosen. temperature 0 (the default) is greedy decoding. */
export const SamplingOptionsSchema = z
  .object({
    temperature: z.number().min(0).max(100).default(0),
    topK: z.number().int().min(0).default(0),
    topP: z.number().gt(0).max(1).default(1),
    seed: z.number().int().min(0).max(0xffffffff).optional(),
  })
  .strict();

export type SamplingOptions = z.output<typeof SamplingOptionsSchema>;
export type SamplingOptionsInput = z.input<typeof SamplingOptionsSchema>;

/** Validates sampling options from outside (CLI flags, HTTP bodies). */
export function parseSamplingOptions(value: unknown): SamplingOptions {
  return parseWith(SamplingOptionsSchema, value ?? {}, 'sampling options');
}

/** Index of the largest value in `logits[offset, offset+n)`, relative to `offset`; ties go to the lowest index. */
export function argmax(logits: Float32Array, offset = 0, n = logits.length - offset): number {
  let best = 0;
  let bestValue = logits[offset]!;
  for (let i = 1; i < n; i++) {
    const v = logits[offset + i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** The tokens a Sampler draws from for one row, in the order it scans them, with their probabilities. */
export interface SamplingDistribution {
  ids: Int32Array;
  probabilities: Float64Array;
}

/**
 * A sampler bound to one vocabulary size and one option set. Holds its own RNG and scratch
 * buffers, so a generation owns one and nothing is allocated per token.
 *
 * Stochastic sampling works on candidates in ascending token id order (all ids, or the top-k ids
 * sorted): weights e^((l - max) / T), then for top-p the nucleus of Holtzman et al. 2020 ("The
 * Curious Case of Neural Text Degeneration"): the shortest prefix of the candidates ordered by
 * probability (descending, ties by lowest id) whose mass reaches topP, renormalised. The nucleus is
 * found without sorting it (radix select over the float64 bits of the weights, see findNucleus), so
 * it is stored as a threshold: every candidate weighing more than `cutWeight`, and the `cutTies`
 * lowest ids weighing exactly `cutWeight`. The draw scans the candidates in id order.
 */
export class Sampler {
  readonly options: SamplingOptions;
  private readonly vocabSize: number;
  private readonly random: () => number;
  /** Candidates per token: the vocabulary, or the top-k. */
  private readonly n: number;
  private readonly useTopK: boolean;
  // Top-k: the kept ids (a heap while selecting, then ascending) and their logits in that order.
  private readonly ids: Int32Array;
  private readonly idsSorted: Int32Array;
  private readonly heapLogits: Float64Array;
  private readonly keptLogits: Float32Array;
  // Candidate weights e^((l - max) / T) and their bit patterns (non-negative float64s order like their bits).
  private readonly weights: Float64Array;
  private readonly words: Uint32Array;
  // Radix select: weight per level-1 bin, per digit, and the boundary bucket.
  private readonly massByBin = new Float64Array(DIGIT_BINS[1]);
  private readonly massByDigit: Float64Array;
  private readonly bucket: Int32Array;
  // The nucleus of the last row (see the class comment), and findNucleus' running mass.
  private cutWeight = 0;
  private cutTies = 0;
  private nucleusMass = 0;
  private massAbove = 0;

  constructor(vocabSize: number, options: SamplingOptionsInput = {}) {
    this.options = parseSamplingOptions(options);
    this.vocabSize = vocabSize;
    this.random = mulberry32(this.options.seed ?? ((Math.random() * 0x100000000) >>> 0));
    const { temperature, topK, topP } = this.options;
    this.useTopK = topK > 0 && topK < vocabSize;
    this.n = this.useTopK ? topK : vocabSize;
    const stochastic = temperature > 0 && topK !== 1;
    const n = stochastic ? this.n : 0;
    const k = stochastic && this.useTopK ? this.n : 0;
    this.ids = new Int32Array(k);
    // A fixed view: sorting it in place allocates nothing per token.
    this.idsSorted = this.ids.subarray(0, k);
    this.heapLogits = new Float64Array(k);
    this.keptLogits = new Float32Array(k);
    this.weights = new Float64Array(n);
    this.words = new Uint32Array(this.weights.buffer);
    const nucleus = stochastic && topP < 1;
    this.massByDigit = new Float64Array(nucleus ? 4096 : 0);
    this.bucket = new Int32Array(nucleus ? n : 0);
  }

  /** Picks the next token from `logits[offset, offset + vocabSize)`. */
  sample(logits: Float32Array, offset = 0): number {
    const { temperature, topK } = this.options;
    if (temperature === 0 || topK === 1) return argmax(logits, offset, this.vocabSize);
    const degenerate = this.prepare(logits, offset);
    if (degenerate >= 0) return degenerate;
    return this.draw();
  }

  /**
   * The tokens sample() would draw from for this row and their probabilities, in the order sample()
   * scans them (ascending id). Allocates: for tests and tools, not for the decode loop.
   */
  distribution(logits: Float32Array, offset = 0): SamplingDistribution {
    const { temperature, topK } = this.options;
    const single = (id: number): SamplingDistribution => ({ ids: Int32Array.of(id), probabilities: Float64Array.of(1) });
    if (temperature === 0 || topK === 1) return single(argmax(logits, offset, this.vocabSize));
    const degenerate = this.prepare(logits, offset);
    if (degenerate >= 0) return single(degenerate);
    const ids: number[] = [];
    const probabilities: number[] = [];
    let ties = this.cutTies;
    for (let i = 0; i < this.n; i++) {
      const w = this.weights[i]!;
      if (w < this.cutWeight) continue;
      if (w === this.cutWeight) {
        if (ties === 0) continue;
        ties--;
      }
      ids.push(this.idAt(i));
      probabilities.push(w / this.nucleusMass);
    }
    return { ids: Int32Array.from(ids), probabilities: Float64Array.from(probabilities) };
  }

  /**
   * Fills the weights and the nucleus threshold for one row. Returns the token to emit when the row
   * leaves nothing to draw (no finite logit: the first candidate), else -1.
   */
  private prepare(logits: Float32Array, offset: number): number {
    let source = logits;
    let base = offset;
    if (this.useTopK) {
      this.selectTopK(logits, offset);
      this.idsSorted.sort();
      for (let j = 0; j < this.n; j++) this.keptLogits[j] = logits[offset + this.ids[j]!]!;
      source = this.keptLogits;
      base = 0;
    }
    const n = this.n;
    let max = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = source[base + i]!;
      if (v > max) max = v;
    }
    if (max === -Infinity) return this.idAt(0);
    const total = max === Infinity ? this.weighInfinite(source, base) : this.weigh(source, base, max);
    const { topP } = this.options;
    if (topP < 1) {
      this.findNucleus(topP * total);
    } else {
      // Every candidate with a positive weight.
      this.cutWeight = Number.MIN_VALUE;
      this.cutTies = n;
      this.nucleusMass = total;
    }
    return -1;
  }

  /** weights[i] = e^((l_i - max) / T); returns their total. */
  private weigh(source: Float32Array, base: number, max: number): number {
    const w = this.weights;
    const invT = 1 / this.options.temperature;
    let total = 0;
    for (let i = 0; i < this.n; i++) {
      const x = (source[base + i]! - max) * invT;
      // Written so that NaN logits weigh 0 too.
      const v = x >= EXP_CUTOFF ? fastExp(x) : 0;
      w[i] = v;
      total += v;
    }
    return total;
  }

  /**
   * Fills massByBin with the weight per firstBin. A pass of its own: reading a weight's bits back in the
   * loop that writes it stalls on store forwarding (measured 2x slower).
   */
  private histogramFirstBins(): void {
    const w = this.weights;
    const words = this.words;
    const byBin = this.massByBin;
    byBin.fill(0);
    for (let i = 0; i < this.n; i++) byBin[firstBin(words[2 * i + HI]!)] += w[i]!;
  }

  /** The limit of softmax as logits go to +Infinity: the +Infinity candidates share the mass equally. */
  private weighInfinite(source: Float32Array, base: number): number {
    let total = 0;
    for (let i = 0; i < this.n; i++) {
      const v = source[base + i] === Infinity ? 1 : 0;
      this.weights[i] = v;
      total += v;
    }
    return total;
  }

  /** Draws one candidate of the nucleus with probability proportional to its weight, scanning in id order. */
  private draw(): number {
    const w = this.weights;
    const cut = this.cutWeight;
    let ties = this.cutTies;
    let u = this.random() * this.nucleusMass;
    let last = 0;
    for (let i = 0; i < this.n; i++) {
      const v = w[i]!;
      if (v < cut) continue;
      if (v === cut) {
        if (ties === 0) continue;
        ties--;
      }
      last = i;
      u -= v;
      if (u < 0) return this.idAt(i);
    }
    // nucleusMass was summed in another order than this scan; if rounding left u >= 0, the last member.
    return this.idAt(last);
  }

  private idAt(i: number): number {
    return this.useTopK ? this.ids[i]! : i;
  }

  /**
   * Finds the nucleus for an unnormalised mass `target` (topP times the total) without sorting: the
   * float64 bits of a non-negative weight order like the weight, so a histogram of mass per leading
   * bits (the exponent with 4 mantissa bits, then 8, 8, 12, 12 and 8 more bits) locates the bucket
   * where the descending cumulative mass crosses the target, each level after the first looking only
   * at the previous level's boundary bucket. Candidates strictly above the final bucket are all in the
   * nucleus; the final bucket (at most SMALL_BUCKET candidates, or ones of equal weight) is ordered by
   * weight, ties by id, and walked. Two light passes over all candidates (the histogram, collecting
   * the boundary bucket) whatever the shape of the row.
   */
  private findNucleus(target: number): void {
    const n = this.n;
    const w = this.weights;
    const words = this.words;
    const bucket = this.bucket;
    const byDigit = this.massByDigit;
    this.histogramFirstBins();
    // The boundary bucket: the candidates whose high word starts with the boundary bin's 16 bits.
    // Collected without branches (a candidate's membership is a coin toss on some rows).
    const prefix = FIRST_BIN_BASE + this.boundary(this.massByBin, DIGIT_BINS[1] - 1, 0, target);
    let c = 0;
    for (let i = 0; i < n; i++) {
      bucket[c] = i;
      c += (((words[2 * i + HI]! >>> 16) ^ prefix) - 1) >>> 31;
    }
    let level = 1;
    while (c > SMALL_BUCKET && level < 6 && !this.allEqual(c)) {
      level++;
      const bins = DIGIT_BINS[level]!;
      byDigit.fill(0, 0, bins);
      for (let j = 0; j < c; j++) {
        const i = bucket[j]!;
        byDigit[this.digitOf(i, level)] += w[i]!;
      }
      c = this.keepDigit(c, level, this.boundary(byDigit, bins - 1, this.massAbove, target));
    }
    // Order the small bucket by descending weight. Equal weights need no order among themselves: the
    // nucleus takes the lowest ids of the boundary weight by count (cutTies).
    if (c <= SMALL_BUCKET) {
      for (let j = 1; j < c; j++) {
        const i = bucket[j]!;
        const v = w[i]!;
        let k = j - 1;
        while (k >= 0 && w[bucket[k]!]! < v) {
          bucket[k + 1] = bucket[k]!;
          k--;
        }
        bucket[k + 1] = i;
      }
    }
    let mass = this.massAbove;
    let j = 0;
    for (; j < c; j++) {
      mass += w[bucket[j]!]!;
      if (mass >= target) break;
    }
    // Rounding can leave the whole mass a hair under the target (topP within float64 rounding of 1): all of it.
    if (j === c) j = c - 1;
    const cut = w[bucket[j]!]!;
    let ties = 1;
    while (j - ties >= 0 && w[bucket[j - ties]!] === cut) ties++;
    this.cutWeight = cut;
    this.cutTies = ties;
    this.nucleusMass = mass;
  }

  /**
   * The highest bin of `mass[0..top]` at which `above` plus the mass of the bins from `top` down
   * reaches `target`, or the lowest non-empty bin if it never does; sets massAbove to the mass above
   * that bin.
   */
  private boundary(mass: Float64Array, top: number, above: number, target: number): number {
    let acc = above;
    let found = 0;
    for (let b = top; b >= 0; b--) {
      const m = mass[b]!;
      if (m === 0) continue;
      found = b;
      this.massAbove = acc;
      acc += m;
      if (acc >= target) break;
    }
    return found;
  }

  /** Digit `level` (2..6) of candidate i's weight bits: see DIGIT_BINS. */
  private digitOf(i: number, level: number): number {
    switch (level) {
      case 2:
        return (this.words[2 * i + HI]! >>> 8) & 0xff;
      case 3:
        return this.words[2 * i + HI]! & 0xff;
      case 4:
        return this.words[2 * i + LO]! >>> 20;
      case 5:
        return (this.words[2 * i + LO]! >>> 8) & 0xfff;
      default:
        return this.words[2 * i + LO]! & 0xff;
    }
  }

  /** Keeps the bucket's candidates whose digit `level` is `digit` (in order); returns how many. */
  private keepDigit(c: number, level: number, digit: number): number {
    let kept = 0;
    for (let j = 0; j < c; j++) {
      const i = this.bucket[j]!;
      if (this.digitOf(i, level) === digit) this.bucket[kept++] = i;
    }
    return kept;
  }

  private allEqual(c: number): boolean {
    const v = this.weights[this.bucket[0]!]!;
    for (let j = 1; j < c; j++) if (this.weights[this.bucket[j]!] !== v) return false;
    return true;
  }

  /** Keeps the k largest logits in a min-heap (heapLogits[0] is the smallest kept); O(V log k). */
  private selectTopK(logits: Float32Array, offset: number): void {
    const k = this.n;
    const ids = this.ids;
    const w = this.heapLogits;
    for (let i = 0; i < k; i++) {
      ids[i] = i;
      w[i] = logits[offset + i]!;
      this.siftUp(i);
    }
    for (let i = k; i < this.vocabSize; i++) {
      const v = logits[offset + i]!;
      if (v > w[0]!) {
        w[0] = v;
        ids[0] = i;
        this.siftDown(0, k);
      }
    }
  }

  // Heap order: smaller logit first; on equal logits the larger id sits nearer the root so the
  // lowest id survives, matching argmax's tie rule.
  private less(a: number, b: number): boolean {
    const wa = this.heapLogits[a]!;
    const wb = this.heapLogits[b]!;
    return wa < wb || (wa === wb && this.ids[a]! > this.ids[b]!);
  }

  private swap(a: number, b: number): void {
    const id = this.ids[a]!;
    this.ids[a] = this.ids[b]!;
    this.ids[b] = id;
    const w = this.heapLogits[a]!;
    this.heapLogits[a] = this.heapLogits[b]!;
    this.heapLogits[b] = w;
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number, n: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < n && this.less(l, smallest)) smallest = l;
      if (r < n && this.less(r, smallest)) smallest = r;
      if (smallest === i) return;
      this.swap(i, smallest);
      i = smallest;
    }
  }
}
