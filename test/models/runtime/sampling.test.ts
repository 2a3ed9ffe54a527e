import { describe, it, expect } from 'vitest';
import { mulberry32 } from '../../../models/random.ts';
import { Sampler, argmax, parseSamplingOptions, type SamplingOptionsInput } from '../../../models/runtime/sampling.ts';
import { ValidationError } from '../../../common/errors.ts';

function randomLogits(n: number, seed: number, scale = 3): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (rng() - 0.5) * 2 * scale);
}

function softmax(logits: ArrayLike<number>, t: number): number[] {
  const m = Math.max(...Array.from(logits));
  const e = Array.from(logits, (v) => Math.exp((v - m) / t));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

/** Reference nucleus: ids sorted by probability (ties: lower id first), shortest prefix with mass >= p. */
function referenceNucleus(logits: Float32Array, t: number, p: number): Set<number> {
  const probs = softmax(logits, t);
  const order = probs.map((q, i) => [q, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const out = new Set<number>();
  let mass = 0;
  for (const [q, i] of order) {
    out.add(i);
    mass += q;
    if (mass >= p) break;
  }
  return out;
}

interface Reference {
  /** Candidates by probability, descending, ties by lowest id. */
  order: number[];
  /** Probability of each candidate before truncation, by id (0 for other ids). */
  prob: Float64Array;
  /** cumulative[k]: mass of order[0..k). */
  cumulative: number[];
  /** Nucleus size: the shortest prefix with mass >= topP (all candidates if rounding never gets there). */
  size: number;
}

/**
 * The sampling distribution written out plainly: top-k by a full sort of the logits (ties: lowest id),
 * softmax with Math.exp, a full sort by probability (ties: lowest id), the shortest prefix whose mass
 * reaches topP (Holtzman et al. 2020), renormalised by the caller.
 */
function reference(logits: Float32Array, o: { temperature: number; topK?: number; topP?: number }): Reference {
  const byLogit = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const topK = o.topK ?? 0;
  const candidates = topK > 0 ? byLogit.slice(0, topK) : byLogit;
  const max = logits[candidates[0]!]!;
  let total = 0;
  for (const id of candidates) total += Math.exp((logits[id]! - max) / o.temperature);
  const prob = new Float64Array(logits.length);
  for (const id of candidates) prob[id] = Math.exp((logits[id]! - max) / o.temperature) / total;
  const order = [...candidates].sort((a, b) => prob[b]! - prob[a]! || a - b);
  const cumulative = [0];
  for (const id of order) cumulative.push(cumulative.at(-1)! + prob[id]!);
  const topP = o.topP ?? 1;
  let size = order.length;
  for (let k = 1; k <= order.length; k++) {
    if (cumulative[k]! >= topP) {
      size = k;
      break;
    }
  }
  return { order, prob, cumulative, size };
}

/**
 * Checks Sampler.distribution against the reference: ascending ids (the documented scan order), the
 * same nucleus and the same renormalised probabilities to 1e-12. Where the reference's prefix mass lies
 * within 1e-12 of topP, float64 summation order decides the boundary, so a prefix one longer or shorter
 * is accepted; returns whether that was the case.
 */
function expectMatchesReference(sampler: Sampler, logits: Float32Array, o: { temperature: number; topK?: number; topP?: number }, label: string): boolean {
  const got = sampler.distribution(logits);
  const ref = reference(logits, o);
  const ids = Array.from(got.ids);
  expect(ids.every((id, j) => j === 0 || id > ids[j - 1]!), `${label}: ids ascending`).toBe(true);
  const topP = o.topP ?? 1;
  const near = topP < 1 && [ref.size - 1, ref.size].some((k) => Math.abs(ref.cumulative[k]! - topP) <= 1e-12);
  const sizes = near ? [ref.size - 1, ref.size, ref.size + 1] : [ref.size];
  // Tokens far below the top (e^-87 and less, cut to 0 by the sampler) are never in a nucleus.
  const member = (k: number) => ref.order.slice(0, k).filter((id) => ref.prob[id]! > 1e-30);
  const match = sizes.find((k) => k >= 1 && k <= ref.order.length && member(k).sort((a, b) => a - b).join() === ids.join());
  expect(match, `${label}: nucleus ${ids.length} ids vs reference ${ref.size}${near ? ' (near the boundary)' : ''}`).toBeDefined();
  const mass = ref.cumulative[match!]!;
  let worst = 0;
  got.ids.forEach((id, j) => {
    const want = ref.prob[id]! / mass;
    worst = Math.max(worst, Math.abs(got.probabilities[j]! - want) / want);
  });
  expect(worst, `${label}: largest relative probability error`).toBeLessThanOrEqual(1e-12);
  return near;
}

type Shape = (n: number, random: () => number) => Float32Array;

/** Logit rows of many shapes, each from a seeded generator. */
const SHAPES: Record<string, Shape> = {
  flat: (n, r) => Float32Array.from({ length: n }, () => (r() - 0.5) * 0.5),
  wide: (n, r) => Float32Array.from({ length: n }, () => (r() - 0.5) * 20),
  zipf: (n, r) => {
    const ranks = Array.from({ length: n }, (_, i) => i + 1).sort(() => r() - 0.5);
    return Float32Array.from(ranks, (k) => -Math.log(k));
  },
  steepZipf: (n, r) => Float32Array.from({ length: n }, () => -3 * Math.log(1 + Math.floor(r() * n))),
  peaked: (n, r) => {
    const row = Float32Array.from({ length: n }, () => (r() - 0.5) * 4);
    row[Math.floor(r() * n)] = 15;
    return row;
  },
  // Few distinct values: ties everywhere, including across the nucleus boundary.
  ties: (n, r) => Float32Array.from({ length: n }, () => Math.round((r() - 0.5) * 6) / 2),
  quantised: (n, r) => Float32Array.from({ length: n }, () => Math.round((r() - 0.5) * 32) / 8),
  equal: (n) => new Float32Array(n),
  // Distinct logits a float32 ulp apart: the boundary bucket stays large through every radix level.
  dense: (n, r) => {
    const start = Math.floor(r() * n);
    return Float32Array.from({ length: n }, (_, i) => 1 + (((i * 7919 + start) % n) * 2 ** -23));
  },
  negInfinity: (n, r) => {
    const row = Float32Array.from({ length: n }, () => (r() < 0.3 ? -Infinity : (r() - 0.5) * 8));
    row[Math.floor(r() * n)] = 1;
    return row;
  },
  oneFinite: (n, r) => {
    const row = new Float32Array(n).fill(-Infinity);
    row[Math.floor(r() * n)] = -3;
    return row;
  },
  // Most tokens far below the top: their weights are cut to 0.
  huge: (n, r) => Float32Array.from({ length: n }, () => (r() - 0.5) * 2000),
};

describe('argmax', () => {
  it('finds the largest value and breaks ties towards the lowest index', () => {
    expect(argmax(Float32Array.from([1, 5, 2, 5]))).toBe(1);
    expect(argmax(Float32Array.from([0, 0, 9, 1, 2, 9]), 3, 3)).toBe(2);
  });
});

describe('mulberry32', () => {
  it('is reproducible and roughly uniform', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 10000 }, () => a());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
  });
});

describe('Sampler', () => {
  it('is greedy at temperature 0 and with top-k 1', () => {
    for (const seed of [1, 2, 3]) {
      const logits = randomLogits(1000, seed);
      const best = argmax(logits);
      expect(new Sampler(1000).sample(logits)).toBe(best);
      expect(new Sampler(1000, { temperature: 1.5, topK: 1, seed }).sample(logits)).toBe(best);
    }
  });

  it('samples from offset rows', () => {
    const rows = new Float32Array(20);
    rows[10 + 7] = 10;
    expect(new Sampler(10).sample(rows, 10)).toBe(7);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const logits = randomLogits(500, 9, 1);
    const draw = (seed: number) => {
      const s = new Sampler(500, { temperature: 1, seed });
      return Array.from({ length: 50 }, () => s.sample(logits));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  it('matches softmax(logits / T) in distribution', () => {
    const logits = Float32Array.from([0, 1, 2, 0.5]);
    for (const t of [0.5, 1, 2]) {
      const s = new Sampler(4, { temperature: t, seed: 123 });
      const counts = [0, 0, 0, 0];
      const n = 40000;
      for (let i = 0; i < n; i++) counts[s.sample(logits)]!++;
      const expected = softmax(logits, t);
      counts.forEach((c, i) => expect(Math.abs(c / n - expected[i]!)).toBeLessThan(0.01));
    }
  });

  it('top-k draws only from the k largest, renormalised', () => {
    const logits = Float32Array.from([3, 0, 2.5, 1, 2.9, -1]);
    const s = new Sampler(6, { temperature: 1, topK: 3, seed: 5 });
    const counts = new Map<number, number>();
    const n = 30000;
    for (let i = 0; i < n; i++) {
      const t = s.sample(logits);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([0, 2, 4]);
    const expected = softmax([3, 2.5, 2.9], 1);
    [0, 2, 4].forEach((id, j) => expect(Math.abs(counts.get(id)! / n - expected[j]!)).toBeLessThan(0.012));
  });

  it('top-k keeps the lowest ids among equal logits, like argmax', () => {
    const logits = Float32Array.from([1, 2, 2, 2, 0]);
    const s = new Sampler(5, { temperature: 1, topK: 2, seed: 1 });
    const seen = new Set(Array.from({ length: 200 }, () => s.sample(logits)));
    expect([...seen].sort()).toEqual([1, 2]);
  });

  it('top-p draws exactly from the nucleus of a reference sort', () => {
    for (const seed of [11, 12, 13]) {
      const logits = randomLogits(300, seed, 4);
      for (const p of [0.3, 0.9]) {
        const nucleus = referenceNucleus(logits, 0.8, p);
        const s = new Sampler(300, { temperature: 0.8, topP: p, seed });
        const seen = new Set(Array.from({ length: 1500 }, () => s.sample(logits)));
        for (const t of seen) expect(nucleus.has(t)).toBe(true);
        // With thousands of draws every member of a small nucleus shows up.
        if (nucleus.size <= 8) expect(seen.size).toBe(nucleus.size);
      }
    }
  });

  it('combines top-k and top-p', () => {
    const logits = Float32Array.from([5, 4.9, 4.8, 0, 0, 0]);
    const s = new Sampler(6, { temperature: 1, topK: 4, topP: 0.5, seed: 3 });
    const seen = new Set(Array.from({ length: 500 }, () => s.sample(logits)));
    // Probabilities within the top 3 are ~0.35, 0.33, 0.30: the nucleus for 0.5 is {0, 1}.
    expect([...seen].sort()).toEqual([0, 1]);
  });

  it('rejects options outside their ranges', () => {
    expect(() => parseSamplingOptions({ temperature: -1 })).toThrow(ValidationError);
    expect(() => parseSamplingOptions({ topP: 0 })).toThrow(/topP/);
    expect(() => parseSamplingOptions({ topK: 1.5 })).toThrow(/topK/);
    expect(() => parseSamplingOptions({ bogus: 1 })).toThrow(ValidationError);
  });
});

describe('Sampler nucleus against the reference', () => {
  it('has the reference nucleus and probabilities on many rows, sizes 1 to 50k, with top-k', () => {
    const random = mulberry32(2024);
    let rows = 0;
    let nearRows = 0;
    for (const n of [1, 2, 3, 7, 64, 300, 1000, 4096, 50_000]) {
      for (const [shape, make] of Object.entries(SHAPES)) {
        const draws = n === 50_000 ? 1 : 3;
        for (let d = 0; d < draws; d++) {
          const temperature = [0.25, 0.8, 1, 1.7][Math.floor(random() * 4)]!;
          const topP = [0.5, 0.9, 0.95, 0.01 + 0.98 * random(), 0.01 + 0.98 * random()][Math.floor(random() * 5)]!;
          const topKs = [0, 0, 0, 2, 5, 40, n - 1, n + 3].filter((k) => k !== 1);
          const topK = topKs[Math.floor(random() * topKs.length)]!;
          const o = { temperature, topP, topK };
          const logits = make(n, random);
          const sampler = new Sampler(n, { ...o, seed: 1 });
          const label = `n=${n} ${shape} T=${temperature} topP=${topP} topK=${topK}`;
          if (nearRows < 100 && expectMatchesReference(sampler, logits, o, label)) nearRows++;
          // The sampler's scratch from this row must not leak into the next one.
          if (n < 50_000 && shape !== 'equal') expectMatchesReference(sampler, SHAPES.zipf!(n, random), o, `${label} (reused)`);
          rows++;
        }
      }
    }
    expect(rows).toBeGreaterThan(250);
    // Boundary coincidences come only from the exact ties of the equal/ties rows.
    expect(nearRows).toBeLessThan(rows / 10);
  });

  it('decides exact-mass boundaries and ties like the reference', () => {
    // Four equal tokens: 0.25 each, so topP 0.5 is reached exactly by the two lowest ids.
    expect(Array.from(new Sampler(4, { temperature: 1, topP: 0.5 }).distribution(new Float32Array(4)).ids)).toEqual([0, 1]);
    expect(Array.from(new Sampler(4, { temperature: 1, topP: 0.75 }).distribution(new Float32Array(4)).ids)).toEqual([0, 1, 2]);
    // Four tied leaders at ~0.2284: topP 0.6 needs three of them, the lowest ids.
    const tied = Float32Array.from([0, 1, 1, 0, 1, 1]);
    const d = new Sampler(6, { temperature: 1, topP: 0.6 }).distribution(tied);
    expect(Array.from(d.ids)).toEqual([1, 2, 4]);
    d.probabilities.forEach((p) => expect(p).toBeCloseTo(1 / 3, 14));
    // 1000 tied tokens on the boundary, more than any bucket the radix select sorts.
    const many = Float32Array.from({ length: 3000 }, (_, i) => (i % 3 === 1 ? 2 : 0));
    const m = new Sampler(3000, { temperature: 1, topP: 0.5 }).distribution(many);
    const share = Math.exp(2) / (1000 * Math.exp(2) + 2000);
    expect(m.ids.length).toBe(Math.ceil(0.5 / share));
    expect(Array.from(m.ids)).toEqual(Array.from({ length: m.ids.length }, (_, j) => 3 * j + 1));
  });

  it('orders weights a few float64 ulps apart (deep radix levels) like the reference', () => {
    const random = mulberry32(9);
    for (const n of [300, 4096, 50_000]) {
      for (const temperature of [1, 100]) {
        for (const topP of [0.5, 0.01 + 0.98 * random()]) {
          const o = { temperature, topP };
          expectMatchesReference(new Sampler(n, o), SHAPES.dense!(n, random), o, `dense n=${n} T=${temperature} topP=${topP}`);
        }
      }
    }
  });

  it('treats -Infinity and NaN logits as weight 0, +Infinity as the whole mass, and all -Infinity as the first candidate', () => {
    const s = new Sampler(5, { temperature: 1, topP: 0.99 });
    const d = s.distribution(Float32Array.from([-Infinity, 0, NaN, Math.log(3), -Infinity]));
    expect(Array.from(d.ids)).toEqual([1, 3]);
    expect(d.probabilities[0]).toBeCloseTo(1 / (1 + Math.exp(Math.fround(Math.log(3)))), 14);
    const inf = s.distribution(Float32Array.from([0, Infinity, 3, Infinity, -Infinity]));
    expect(Array.from(inf.ids)).toEqual([1, 3]);
    expect(Array.from(inf.probabilities)).toEqual([0.5, 0.5]);
    expect(s.sample(new Float32Array(5).fill(-Infinity))).toBe(0);
    expect(new Sampler(5, { temperature: 1, topK: 2 }).sample(new Float32Array(5).fill(-Infinity))).toBe(0);
  });

  it('never draws a token more than 87 T below the top (its probability is under 1.7e-38)', () => {
    const logits = Float32Array.from([0, -88, -86]);
    const all = new Sampler(3, { temperature: 1 }).distribution(logits);
    expect(Array.from(all.ids)).toEqual([0, 2]);
    expect(all.probabilities[1]).toBeCloseTo(Math.exp(-86), 50);
  });

  it('draws follow the reference distribution (chi-square, fixed seed)', () => {
    const random = mulberry32(77);
    const logits = Float32Array.from({ length: 200 }, () => (random() - 0.5) * 6);
    const o = { temperature: 0.9, topP: 0.8, topK: 0 };
    const ref = reference(logits, o);
    const members = ref.order.slice(0, ref.size);
    const mass = ref.cumulative[ref.size]!;
    const s = new Sampler(200, { ...o, seed: 31 });
    const draws = 200_000;
    const counts = new Map<number, number>();
    for (let i = 0; i < draws; i++) {
      const t = s.sample(logits);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].every((id) => members.includes(id))).toBe(true);
    const chiSquare = (p: (id: number) => number) => members.reduce((acc, id) => {
      const e = draws * p(id);
      return acc + (e > 0 ? ((counts.get(id) ?? 0) - e) ** 2 / e : Infinity);
    }, 0);
    // Wilson-Hilferty: the chi-square quantile for tail probability 1e-6 (z = 4.75).
    const df = members.length - 1;
    const critical = df * (1 - 2 / (9 * df) + 4.75 * Math.sqrt(2 / (9 * df))) ** 3;
    expect(chiSquare((id) => ref.prob[id]! / mass)).toBeLessThan(critical);
    // The test has power: the untruncated softmax (not renormalised to the nucleus) fails it.
    expect(chiSquare((id) => ref.prob[id]!)).toBeGreaterThan(critical);
  });
});
