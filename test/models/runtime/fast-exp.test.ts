import { describe, it, expect } from 'vitest';
import { mulberry32 } from '../../../models/random.ts';
import { FAST_EXP_MIN, fastExp } from '../../../models/runtime/fast-exp.ts';

// Math.exp (V8's fdlibm port, < 1 ulp) is the reference; fastExp promises 2 ulp of it.
const EPS = Number.EPSILON;

function relativeError(x: number): number {
  const want = Math.exp(x);
  return Math.abs(fastExp(x) - want) / want;
}

describe('fastExp', () => {
  it('is exact at 0 and matches Math.exp to 2 ulp over [-708, 0]', () => {
    expect(fastExp(0)).toBe(1);
    expect(fastExp(-0)).toBe(1);
    const random = mulberry32(5);
    let worst = 0;
    for (let i = 0; i < 200_000; i++) worst = Math.max(worst, relativeError(FAST_EXP_MIN * random()));
    // Dense near 0, where the sampler's large weights live, and at the table's step boundaries.
    for (let i = 0; i < 100_000; i++) worst = Math.max(worst, relativeError(-random() * 2 ** -(i % 40)));
    for (let k = 0; k <= 256 * 30; k++) {
      const x = (-k * Math.LN2) / 256;
      for (const d of [-1e-12, 0, 1e-12]) if (x + d <= 0) worst = Math.max(worst, relativeError(x + d));
    }
    for (const x of [FAST_EXP_MIN, -87, -745 / 2, -1, -0.5, -Math.LN2, -1e-300, -Number.MIN_VALUE]) worst = Math.max(worst, relativeError(x));
    expect(worst).toBeLessThanOrEqual(2 * EPS);
    expect(worst).toBeGreaterThan(0);
  });

  it('decreases with x and never exceeds 1', () => {
    const random = mulberry32(6);
    for (let i = 0; i < 10_000; i++) {
      const x = -random() * 100;
      expect(fastExp(x)).toBeLessThanOrEqual(1);
      expect(fastExp(x - 1e-9)).toBeLessThanOrEqual(fastExp(x));
    }
  });
});
