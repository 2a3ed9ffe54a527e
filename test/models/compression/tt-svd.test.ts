// TT-SVD on typed arrays against a plainly written reference (nested arrays, one-sided Jacobi SVD).
import { mulberry32 } from '../../../models/random.ts';
import { describe, expect, it } from 'vitest';
import { ttReconstruct, ttStorage, ttSvd, maxTtRanks } from '../../../models/compression/tt-svd.ts';
import { EigenWorkspace, gramSvd, symmetricEigen } from '../../../models/compression/linalg.ts';

import { ValidationError } from '../../../common/errors.ts';

function randomVector(n: number, seed: number): Float64Array {
  const rnd = mulberry32(seed);
  return Float64Array.from({ length: n }, () => rnd() * 2 - 1);
}

/** Reference SVD: one-sided Jacobi (Hestenes 1958) on the columns of A (m x n, m >= n), nested arrays. */
function jacobiSvd(a: number[][]): { u: number[][]; s: number[]; v: number[][] } {
  const m = a.length;
  const n = a[0]!.length;
  const u = a.map((row) => [...row]);
  const v = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          alpha += u[i]![p]! ** 2;
          beta += u[i]![q]! ** 2;
          gamma += u[i]![p]! * u[i]![q]!;
        }
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        off = Math.max(off, Math.abs(gamma) / Math.sqrt(alpha * beta));
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (const mat of [u, v]) {
          for (const row of mat) {
            const x = row[p]!;
            const y = row[q]!;
            row[p] = c * x - s * y;
            row[q] = s * x + c * y;
          }
        }
      }
    if (off < 1e-14) break;
  }
  const s = Array.from({ length: n }, (_, j) => Math.sqrt(u.reduce((acc, row) => acc + row[j]! ** 2, 0)));
  const order = s.map((_, j) => j).sort((x, y) => s[y]! - s[x]!);
  return {
    s: order.map((j) => s[j]!),
    u: u.map((row) => order.map((j) => (s[j]! > 0 ? row[j]! / s[j]! : 0))),
    v: v.map((row) => order.map((j) => row[j]!)),
  };
}

/** Reference TT-SVD (Oseledets 2011, Alg. 1) at fixed max ranks, returning the reconstruction. */
function referenceTtSvd(x: Float64Array, shape: number[], maxRank: number): { ranks: number[]; recon: number[] } {
  let c: number[] = [...x];
  let rPrev = 1;
  const cores: number[][][][] = [];
  const ranks = [1];
  for (let k = 0; k < shape.length - 1; k++) {
    const m = rPrev * shape[k]!;
    const n = c.length / m;
    const mat = Array.from({ length: m }, (_, i) => c.slice(i * n, (i + 1) * n));
    // Jacobi wants tall matrices; decompose the transpose when wide.
    const tall = m >= n;
    const svd = jacobiSvd(tall ? mat : mat[0]!.map((_, j) => mat.map((row) => row[j]!)));
    const U = tall ? svd.u : svd.v;
    const Vm = tall ? svd.v : svd.u;
    const r = Math.min(maxRank, m, n);
    cores.push(Array.from({ length: rPrev }, (_, a) => Array.from({ length: shape[k]! }, (_, i) => U[a * shape[k]! + i]!.slice(0, r))));
    const next: number[] = [];
    for (let j = 0; j < r; j++) for (let q = 0; q < n; q++) next.push(svd.s[j]! * Vm[q]![j]!);
    c = next;
    rPrev = r;
    ranks.push(r);
  }
  ranks.push(1);
  // Contract: acc[p][a] with p over the leading modes.
  let acc: number[][] = cores[0]![0]!.map((row) => [...row]);
  for (let k = 1; k < shape.length; k++) {
    const I = shape[k]!;
    const rNext = ranks[k + 1]!;
    const coreAt = (a: number, i: number, b: number): number =>
      k < shape.length - 1 ? cores[k]![a]![i]![b]! : c[a * I + i]!;
    const out: number[][] = [];
    for (const row of acc)
      for (let i = 0; i < I; i++) {
        const o: number[] = [];
        for (let b = 0; b < rNext; b++) {
          let sum = 0;
          for (let a = 0; a < row.length; a++) sum += row[a]! * coreAt(a, i, b);
          o.push(sum);
        }
        out.push(o);
      }
    acc = out;
  }
  return { ranks, recon: acc.map((row) => row[0]!) };
}

function relError(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let e = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    e += (x[i]! - y[i]!) ** 2;
    n += x[i]! ** 2;
  }
  return Math.sqrt(e / n);
}

describe('symmetricEigen / gramSvd', () => {
  it('diagonalises a known matrix: [[2,1],[1,2]] has eigenvalues 3 and 1', () => {
    const ws = new EigenWorkspace();
    symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2, ws);
    expect(ws.values[0]).toBeCloseTo(3, 12);
    expect(ws.values[1]).toBeCloseTo(1, 12);
    expect(Math.abs(ws.vectors[0]!)).toBeCloseTo(Math.SQRT1_2, 12);
  });

  it('singular values match the Jacobi reference on wide and tall matrices', () => {
    for (const [m, n] of [
      [7, 30],
      [30, 7],
      [12, 12],
    ] as const) {
      const a = randomVector(m * n, m * 100 + n);
      const ours = gramSvd(a, m, n);
      const mat = Array.from({ length: m }, (_, i) => [...a.subarray(i * n, (i + 1) * n)]);
      const ref = jacobiSvd(m >= n ? mat : mat[0]!.map((_, j) => mat.map((row) => row[j]!)));
      for (let j = 0; j < Math.min(m, n); j++) expect(ours.s[j]).toBeCloseTo(ref.s[j]!, 9);
    }
  });
});

describe('ttSvd', () => {
  const shapes = [
    [8, 8, 12],
    [4, 8, 4, 6],
    [2, 3, 4, 4, 8],
    [5, 4, 5],
  ];

  it('reconstructs x to 1e-5 at full rank', () => {
    for (const shape of shapes) {
      const n = shape.reduce((p, v) => p * v, 1);
      const x = randomVector(n, n);
      const tt = ttSvd(x, shape);
      expect(tt.ranks.slice(1, -1)).toEqual(maxTtRanks(shape));
      expect(relError(x, ttReconstruct(tt))).toBeLessThan(1e-5);
    }
  });

  it('error decreases as the rank grows', () => {
    const x = randomVector(768, 11);
    let last = Infinity;
    for (const r of [1, 2, 3, 4, 6, 8, 12]) {
      const err = relError(x, ttReconstruct(ttSvd(x, [8, 8, 12], { maxRanks: r })));
      expect(err).toBeLessThan(last);
      last = err;
    }
    expect(last).toBeLessThan(1e-5);
  });

  it('matches the naive reference TT-SVD at truncated ranks', () => {
    for (const shape of [
      [8, 8, 12],
      [4, 6, 4],
      [3, 4, 2, 5],
    ]) {
      const n = shape.reduce((p, v) => p * v, 1);
      const x = randomVector(n, 3 * n);
      for (const r of [1, 2, 3]) {
        const ref = referenceTtSvd(x, shape, r);
        const ours = ttSvd(x, shape, { maxRanks: r });
        expect(ours.ranks).toEqual(ref.ranks);
        const y = ttReconstruct(ours);
        // Truncated TT-SVD is unique for distinct singular values, so the reconstructions agree.
        expect(relError(ref.recon, y)).toBeLessThan(1e-6);
        expect(relError(x, y)).toBeGreaterThan(0.05);
      }
    }
  });

  it('eps truncation meets its error bound and picks lower ranks for larger eps', () => {
    // A vector of TT rank 2 plus small noise: eps above the noise level finds rank 2.
    const shape = [6, 5, 4];
    const a = randomVector(6 * 2, 1);
    const b = randomVector(2 * 5 * 2, 2);
    const c = randomVector(2 * 4, 3);
    const x = ttReconstruct({ shape, ranks: [1, 2, 2, 1], cores: [a, b, c] });
    const noise = randomVector(x.length, 4);
    const nx = Math.sqrt(x.reduce((s, v) => s + v * v, 0));
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + (1e-4 * nx * noise[i]!) / Math.sqrt(x.length);
    const tt = ttSvd(x, shape, { eps: 1e-2 });
    expect(tt.ranks).toEqual([1, 2, 2, 1]);
    expect(relError(x, ttReconstruct(tt))).toBeLessThan(1e-2);
    const coarse = ttSvd(x, shape, { eps: 0.9 });
    expect(ttStorage(shape, coarse.ranks)).toBeLessThan(ttStorage(shape, tt.ranks));
  });

  it('rejects a shape that does not multiply to the vector length', () => {
    expect(() => ttSvd(new Float64Array(768), [8, 8, 13])).toThrow(ValidationError);
    expect(() => ttSvd(new Float64Array(768), [8, 8, 13])).toThrow(/8x8x13 multiplies to 832, but the vector has 768 elements/);
  });
});
