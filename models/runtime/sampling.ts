// Next-token selection from a row of logits: greedy, temperature, top-k and top-p (nucleus) sampling
// with a seeded RNG. Used by the language model's decode loop; scratch buffers are reused per token.
import { mulberry32 } from '../random.ts';
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';

// Token ids packed into the low mantissa bits of a float64 sort key (vocabularies up to 2^29).
const ID_MASK = 0x1fffffff;

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

/**
 * A sampler bound to one vocabulary size and one option set. Holds its own RNG and scratch
 * buffers, so a generation owns one and nothing is allocated per token.
 */
export class Sampler {
  readonly options: SamplingOptions;
  private readonly vocabSize: number;
  private readonly random: () => number;
  // Candidate token ids and their unnormalised probabilities.
  private readonly ids: Int32Array;
  private readonly weights: Float64Array;
  // Sort keys for top-p: the float64 bit pattern of a float32 probability has 29 zero low bits,
  // so the token id is packed into the low word and a native (comparator-free) sort orders both.
  private readonly keys: Float64Array;
  private readonly keyWords: Uint32Array;
  // float32 probabilities and their bit patterns, and probability mass per float32 exponent.
  private readonly probs: Float32Array;
  private readonly probBits: Uint32Array;
  private readonly massByExponent = new Float64Array(256);

  constructor(vocabSize: number, options: SamplingOptionsInput = {}) {
    this.options = parseSamplingOptions(options);
    this.vocabSize = vocabSize;
    this.random = mulberry32(this.options.seed ?? ((Math.random() * 0x100000000) >>> 0));
    const k = this.options.topK > 0 ? Math.min(this.options.topK, vocabSize) : vocabSize;
    const stochastic = this.options.temperature > 0;
    this.ids = new Int32Array(stochastic ? k : 0);
    this.weights = new Float64Array(stochastic ? k : 0);
    const needKeys = stochastic && this.options.topP < 1;
    this.keys = new Float64Array(needKeys ? k : 0);
    this.keyWords = new Uint32Array(this.keys.buffer);
    this.probs = new Float32Array(needKeys ? k : 0);
    this.probBits = new Uint32Array(this.probs.buffer);
  }

  /** Picks the next token from `logits[offset, offset + vocabSize)`. */
  sample(logits: Float32Array, offset = 0): number {
    const { temperature, topK, topP } = this.options;
    if (temperature === 0 || topK === 1) return argmax(logits, offset, this.vocabSize);
    const n = topK > 0 ? this.selectTopK(logits, offset, Math.min(topK, this.vocabSize)) : this.selectAll(logits, offset);
    // Softmax over the candidates, shifted by the max for stability.
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, this.weights[i]!);
    if (max === -Infinity) return this.ids[0]!;
    const invT = 1 / temperature;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const w = Math.exp((this.weights[i]! - max) * invT);
      this.weights[i] = w;
      total += w;
    }
    let m = n;
    if (topP < 1) {
      m = this.nucleus(n, total, topP);
      total = 0;
      for (let i = 0; i < m; i++) total += this.weights[i]!;
    }
    let u = this.random() * total;
    for (let i = 0; i < m; i++) {
      u -= this.weights[i]!;
      if (u < 0) return this.ids[i]!;
    }
    return this.ids[m - 1]!;
  }

  private selectAll(logits: Float32Array, offset: number): number {
    for (let i = 0; i < this.vocabSize; i++) {
      this.ids[i] = i;
      this.weights[i] = logits[offset + i]!;
    }
    return this.vocabSize;
  }

  /** Keeps the k largest logits in a min-heap (weights[0] is the smallest kept); O(V log k). */
  private selectTopK(logits: Float32Array, offset: number, k: number): number {
    const ids = this.ids;
    const w = this.weights;
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
    return k;
  }

  // Heap order: smaller logit first; on equal logits the larger id sits nearer the root so the
  // lowest id survives, matching argmax's tie rule.
  private less(a: number, b: number): boolean {
    const wa = this.weights[a]!;
    const wb = this.weights[b]!;
    return wa < wb || (wa === wb && this.ids[a]! > this.ids[b]!);
  }

  private swap(a: number, b: number): void {
    const id = this.ids[a]!;
    this.ids[a] = this.ids[b]!;
    this.ids[b] = id;
    const w = this.weights[a]!;
    this.weights[a] = this.weights[b]!;
    this.weights[b] = w;
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

  /**
   * Reorders the candidates by probability (descending, ties by id) and returns how many form the
   * nucleus: the smallest prefix whose mass reaches topP (Holtzman et al. 2020, "The Curious Case of
   * Neural Text Degeneration"). Sorting all 50k ids per token costs ~10 ms, so a histogram over the
   * float32 exponent first finds the power-of-two threshold above which the mass already reaches
   * topP; only those candidates (a prefix of the sorted order) are sorted.
   */
  private nucleus(n: number, total: number, topP: number): number {
    const probs = this.probs;
    const bits = this.probBits;
    const massByExponent = this.massByExponent;
    massByExponent.fill(0);
    const scale = 1 / total;
    for (let i = 0; i < n; i++) {
      probs[i] = this.weights[i]! * scale;
      massByExponent[bits[i]! >>> 23] += probs[i]!;
    }
    let cut = 0;
    let acc = 0;
    for (let e = 255; e >= 0; e--) {
      acc += massByExponent[e]!;
      if (acc >= topP) {
        cut = e;
        break;
      }
    }
    const keys = this.keys;
    const words = this.keyWords;
    let c = 0;
    for (let i = 0; i < n; i++) {
      if (bits[i]! >>> 23 < cut) continue;
      keys[c] = probs[i]!;
      // The low 29 bits are zero for a float32 value widened to float64; they take the complement
      // of the id so that, among equal probabilities, the lowest id sorts last (= first when read backwards).
      words[2 * c] = (words[2 * c]! & ~ID_MASK) | (~this.ids[i]! & ID_MASK);
      c++;
    }
    const sorted = keys.subarray(0, c).sort();
    let mass = 0;
    let m = 0;
    for (let j = c - 1; j >= 0; j--) {
      const id = ~words[2 * j]! & ID_MASK;
      words[2 * j] = words[2 * j]! & ~ID_MASK;
      const p = sorted[j]!;
      this.ids[m] = id;
      this.weights[m] = p;
      m++;
      mass += p;
      if (mass >= topP) break;
    }
    return m;
  }
}
