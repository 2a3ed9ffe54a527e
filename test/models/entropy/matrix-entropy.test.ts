import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../../models/random.ts';
import { marchenkoPasturShannon, matrixEntropy } from '../../../models/entropy/matrix-entropy.ts';
import { effectiveness, networkEffectiveness } from '../../../models/entropy/effectiveness.ts';
import { networkEntropy } from '../../../models/entropy/network-entropy.ts';
import { GPT2_SMALL, TINY } from '../../../models/arch/presets.ts';

// Reference: seeded Gaussian matrices, eigenvalues of W^T W by cyclic Jacobi rotations
// (Golub & Van Loan, Matrix Computations, 4th ed., section 8.5), which are the squared singular values.

function gaussianMatrix(m: number, n: number, sigma: number, rand: () => number): Float64Array {
  const w = new Float64Array(m * n);
  for (let i = 0; i < w.length; i += 2) {
    const u = 1 - rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    w[i] = sigma * r * Math.cos(2 * Math.PI * v);
    if (i + 1 < w.length) w[i + 1] = sigma * r * Math.sin(2 * Math.PI * v);
  }
  return w;
}

/** Eigenvalues of the symmetric n x n matrix a (destroyed), by cyclic Jacobi. */
function jacobiEigenvalues(a: Float64Array, n: number): Float64Array {
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = a[i * n + i]!;
  return out;
}

/** Mean over `samples` matrices of sum_j log(1 + s_j^2 / eps^2). */
function monteCarloEntropy(m: number, n: number, sigma: number, eps: number, samples: number, seed: number): number {
  const rand = mulberry32(seed);
  const p = Math.min(m, n);
  const q = Math.max(m, n);
  let total = 0;
  for (let k = 0; k < samples; k++) {
    const w = gaussianMatrix(q, p, sigma, rand); // q x p, row-major
    const gram = new Float64Array(p * p);
    for (let i = 0; i < p; i++) {
      for (let j = i; j < p; j++) {
        let acc = 0;
        for (let r = 0; r < q; r++) acc += w[r * p + i]! * w[r * p + j]!;
        gram[i * p + j] = acc;
        gram[j * p + i] = acc;
      }
    }
    for (const lambda of jacobiEigenvalues(gram, p)) total += Math.log(1 + Math.max(lambda, 0) / (eps * eps));
  }
  return total / samples;
}

describe('matrixEntropy (Marchenko-Pastur closed form)', () => {
  it.each([
    [64, 64, 1, 1],
    [64, 256, 1, 1],
    [256, 64, 1, 1],
    [48, 192, 1, 1],
    [96, 100, 1, 1],
    [128, 32, 1, 1],
    [64, 128, 0.02, 0.02],
    [64, 256, 0.05, 1],
  ])('matches Monte-Carlo SVD of %i x %i (sigma %f, eps %f) within one percent', (m, n, sigma, eps) => {
    const mc = monteCarloEntropy(m, n, sigma, eps, 6, 1234 + m + n);
    const closed = matrixEntropy(m, n, { sigma, eps });
    expect(Math.abs(closed - mc) / mc).toBeLessThan(0.01);
  });

  it('equals the integral of log(1 + gamma x) over the Marchenko-Pastur density', () => {
    for (const [gamma, beta] of [
      [1, 1],
      [10, 0.25],
      [256, 1],
      [1000, 0.1],
      [0.5, 0.5],
    ] as const) {
      const a = (1 - Math.sqrt(beta)) ** 2;
      const c = (1 + Math.sqrt(beta)) ** 2;
      const steps = 20000;
      let integral = 0;
      for (let i = 0; i < steps; i++) {
        // x = a + (c - a)(1 - cos t)/2 removes the square-root endpoints.
        const t = ((i + 0.5) / steps) * Math.PI;
        const x = a + ((c - a) * (1 - Math.cos(t))) / 2;
        const dx = (((c - a) * Math.sin(t)) / 2) * (Math.PI / steps);
        const density = Math.sqrt(Math.max(0, (c - x) * (x - a))) / (2 * Math.PI * beta * x);
        integral += density * Math.log(1 + gamma * x) * dx;
      }
      expect(marchenkoPasturShannon(gamma, beta)).toBeCloseTo(integral, 6);
    }
  });

  it('is symmetric in m and n and grows with both', () => {
    expect(matrixEntropy(64, 256)).toBe(matrixEntropy(256, 64));
    expect(matrixEntropy(64, 512)).toBeGreaterThan(matrixEntropy(64, 256));
    expect(matrixEntropy(128, 256)).toBeGreaterThan(matrixEntropy(64, 256));
  });
});

describe('effectiveness rho', () => {
  it("reproduces MeRino Table 1's values", () => {
    expect(Number(effectiveness(1, 256).toFixed(3))).toBe(0.008);
    expect(effectiveness(24, 64)).toBe(0.25);
  });

  it('uses all layers and the layer-averaged width of a multi-block network', () => {
    expect(networkEffectiveness([{ width: 256, layers: 1 }])).toBe(effectiveness(1, 256));
    expect(networkEffectiveness([
      { width: 64, layers: 2 },
      { width: 128, layers: 2 },
    ])).toBe(4 / (16 * Math.log2(96)));
  });
});

describe('networkEntropy', () => {
  it('sums weighted attention and FFN entropy over every layer', () => {
    const h = networkEntropy(GPT2_SMALL);
    expect(h.attention).toBeCloseTo(12 * 4 * matrixEntropy(768, 768), 6);
    expect(h.ffn).toBeCloseTo(12 * 2 * matrixEntropy(768, 3072), 6);
    expect(h.entropy).toBeCloseTo(h.attention + h.ffn, 6);
    const weighted = networkEntropy(GPT2_SMALL, { alphaAttention: 0.25, alphaFfn: 2 });
    expect(weighted.entropy).toBeCloseTo(0.25 * h.attention + 2 * h.ffn, 6);
    expect(h.rho).toBeCloseTo(12 / (16 * Math.log2(768)), 12);
  });

  it('counts the layers of a shared-weight block', () => {
    const h = networkEntropy(TINY);
    expect(h.ffn).toBeCloseTo(2 * matrixEntropy(16, 32) + 2 * 2 * matrixEntropy(24, 48), 9);
  });
});
