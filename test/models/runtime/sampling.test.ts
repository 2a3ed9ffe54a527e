import { describe, it, expect } from 'vitest';
import { mulberry32 } from '../../../models/random.ts';
import { Sampler, argmax, parseSamplingOptions } from '../../../models/runtime/sampling.ts';
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
