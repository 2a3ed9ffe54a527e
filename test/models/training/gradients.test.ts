// Gradients of every layer kind and of whole decoders against central finite differences, all in
// float64 so that differences of 1e-6 are meaningful.
import { describe, expect, it } from 'vitest';
import { parseArchSpec, type ArchSpecInput } from '../../../models/arch/spec.ts';
import { initWeights } from '../../../models/arch/weights.ts';
import { mulberry32 } from '../../../models/random.ts';
import {
  Scratch,
  attentionBackward,
  attentionForward,
  erf,
  geluBackward,
  geluForward,
  layerNormBackward,
  layerNormForward,
  linearBackward,
  linearForward,
  softmaxCrossEntropy,
} from '../../../models/training/layers.ts';
import { gemmNT, gemmNTScalar, transpose } from '../../../models/training/kernels.ts';
import { wasmGemm } from '../../../models/training/wasm-gemm.ts';
import { TrainableDecoder } from '../../../models/training/model.ts';

const rand = mulberry32(1234);
const randn = (n: number, scale = 1): Float64Array => Float64Array.from({ length: n }, () => (rand() * 2 - 1) * scale);

/** Central difference of f at x[i]. */
function fd(x: Float64Array, i: number, f: () => number, h = 1e-5): number {
  const old = x[i]!;
  x[i] = old + h;
  const up = f();
  x[i] = old - h;
  const down = f();
  x[i] = old;
  return (up - down) / (2 * h);
}

/** Checks analytic gradient `g` of f w.r.t. x at up to `samples` indices. */
function expectGradClose(x: Float64Array, g: Float64Array, f: () => number, samples = 24, tol = 1e-6): void {
  const stride = Math.max(1, Math.floor(x.length / samples));
  for (let i = 0; i < x.length; i += stride) {
    const num = fd(x, i, f);
    expect(Math.abs(num - g[i]!), `index ${i}: analytic ${g[i]} numeric ${num}`).toBeLessThan(tol * Math.max(1, Math.abs(num)));
  }
}

/** A random linear functional of the output makes every output element matter. */
const dot = (a: Float64Array, b: Float64Array): number => a.reduce((s, v, i) => s + v * b[i]!, 0);

describe('kernels', () => {
  it('gemmNT matches the naive triple loop, including ragged edges and accumulation', () => {
    const [M, N, K] = [7, 70, 9];
    const A = randn(M * K);
    const B = randn(N * K);
    const C = randn(M * N);
    const C0 = Float64Array.from(C);
    gemmNT(A, B, C, M, N, K, true);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = C0[i * N + j]!;
        for (let k = 0; k < K; k++) s += A[i * K + k]! * B[j * K + k]!;
        expect(C[i * N + j]).toBeCloseTo(s, 12);
      }
    const T = new Float64Array(M * K);
    transpose(A, T, M, K);
    expect(T[3 * M + 5]).toBe(A[5 * K + 3]);
  });

  it('the WebAssembly SIMD kernel agrees with the scalar one on float32, edges included', () => {
    expect(wasmGemm()).not.toBeNull();
    for (const [M, N, K] of [[33, 70, 16], [64, 130, 64], [2, 4, 4]] as const) {
      const A = Float32Array.from(randn(M * K));
      const B = Float32Array.from(randn(N * K));
      const start = Float32Array.from(randn(M * N));
      const viaWasm = Float32Array.from(start);
      const scalar = Float32Array.from(start);
      gemmNT(A, B, viaWasm, M, N, K, true);
      gemmNTScalar(A, B, scalar, M, N, K, true);
      let diff = 0;
      for (let i = 0; i < M * N; i++) diff = Math.max(diff, Math.abs(viaWasm[i]! - scalar[i]!));
      expect(diff, `${M}x${N}x${K}`).toBeLessThan(1e-5);
      expect(viaWasm).not.toEqual(start);
    }
  });

  it('erf agrees with known values (Abramowitz & Stegun table 7.1) to 2e-7', () => {
    const known: Array<[number, number]> = [[0.1, 0.1124629160], [0.5, 0.5204998778], [1, 0.8427007929], [2, 0.9953222650], [-1.5, -0.9661051465]];
    for (const [x, v] of known) expect(Math.abs(erf(x) - v)).toBeLessThan(2e-7);
  });
});

describe('layer gradients (float64, central differences)', () => {
  it('linear: dx, dW, db', () => {
    const [M, I, O] = [5, 6, 7];
    const x = randn(M * I);
    const W = randn(I * O);
    const b = randn(O);
    const r = randn(M * O);
    const s = new Scratch(new Float64Array(0));
    const f = (): number => {
      const Wt = new Float64Array(O * I);
      transpose(W, Wt, I, O);
      const y = new Float64Array(M * O);
      linearForward(x, Wt, b, y, M, I, O);
      return dot(y, r);
    };
    const dW = new Float64Array(I * O);
    const db = new Float64Array(O);
    const dx = new Float64Array(M * I);
    linearBackward(x, W, r, dW, db, dx, M, I, O, s);
    expectGradClose(x, dx, f);
    expectGradClose(W, dW, f);
    expectGradClose(b, db, f);
  });

  it('LayerNorm: dx, dgain, dbias', () => {
    const [M, E] = [4, 9];
    const x = randn(M * E, 2);
    const g = randn(E);
    const b = randn(E);
    const r = randn(M * E);
    const f = (): number => {
      const y = new Float64Array(M * E);
      layerNormForward(x, g, b, y, new Float64Array(M * E), new Float64Array(M), M, E, 1e-5);
      return dot(y, r);
    };
    const y = new Float64Array(M * E);
    const xhat = new Float64Array(M * E);
    const rstd = new Float64Array(M);
    layerNormForward(x, g, b, y, xhat, rstd, M, E, 1e-5);
    const dg = new Float64Array(E);
    const db = new Float64Array(E);
    const dx = new Float64Array(M * E);
    layerNormBackward(r, xhat, rstd, g, dg, db, dx, M, E);
    expectGradClose(x, dx, f);
    expectGradClose(g, dg, f);
    expectGradClose(b, db, f);
  });

  it('GELU (exact erf form)', () => {
    const n = 40;
    const u = randn(n, 4);
    const r = randn(n);
    const f = (): number => {
      const a = new Float64Array(n);
      geluForward(u, a, n);
      return dot(a, r);
    };
    const du = new Float64Array(n);
    geluBackward(u, r, du, n);
    // erf is a 1e-7 approximation, so its derivative differs from the analytic Phi' by about that much.
    expectGradClose(u, du, f, 40, 2e-6);
  });

  it('causal multi-head attention: dq, dk, dv (A = heads x headDim)', () => {
    const shape = { B: 2, S: 5, H: 3, D: 4 };
    const n = shape.B * shape.S * shape.H * shape.D;
    const q = randn(n);
    const k = randn(n);
    const v = randn(n);
    const r = randn(n);
    const s = new Scratch(new Float64Array(0));
    const cache = () => ({ q: new Float64Array(n), k: new Float64Array(n), v: new Float64Array(n), p: new Float64Array(shape.B * shape.H * shape.S * shape.S) });
    const f = (): number => {
      const ctx = new Float64Array(n);
      attentionForward(q, k, v, ctx, cache(), shape, s);
      return dot(ctx, r);
    };
    const c = cache();
    attentionForward(q, k, v, new Float64Array(n), c, shape, s);
    const dq = new Float64Array(n);
    const dk = new Float64Array(n);
    const dv = new Float64Array(n);
    attentionBackward(r, c, dq, dk, dv, shape, s);
    expectGradClose(q, dq, f, 40);
    expectGradClose(k, dk, f, 40);
    expectGradClose(v, dv, f, 40);
    // Causality: the first token's context ignores every later token.
    const ctx1 = new Float64Array(n);
    attentionForward(q, k, v, ctx1, cache(), shape, s);
    v[(1 * 3 + 0) * 4] = 100; // token 1 of batch 0, head 0
    const ctx2 = new Float64Array(n);
    attentionForward(q, k, v, ctx2, cache(), shape, s);
    expect(ctx2.subarray(0, 4)).toEqual(ctx1.subarray(0, 4));
  });

  it('softmax cross-entropy: value and dlogits', () => {
    const [M, V] = [3, 6];
    const logits = randn(M * V, 3);
    const targets = Int32Array.from([0, 5, 2]);
    const f = (): number => softmaxCrossEntropy(Float64Array.from(logits), targets, M, V, false);
    const g = Float64Array.from(logits);
    const loss = softmaxCrossEntropy(g, targets, M, V, true);
    // Uniform logits give log V exactly.
    expect(softmaxCrossEntropy(new Float64Array(M * V), targets, M, V, false)).toBeCloseTo(Math.log(V), 12);
    expect(loss).toBeCloseTo(f(), 12);
    expectGradClose(logits, g, f, 18);
  });
});

const SPECS: Record<string, ArchSpecInput> = {
  // project_in/out, two blocks with a block projection, a shared-weight block, A != E, positionOffset.
  'tied head, projections, shared block': {
    vocabSize: 11,
    contextLength: 6,
    positionOffset: 2,
    embeddingWidth: 6,
    blocks: [
      { width: 8, ffnRatio: 1.5, layers: 1, heads: 2, headDim: 3 },
      { width: 10, ffnRatio: 1, layers: 2, heads: 1, headDim: 4, shareWeights: true },
    ],
    tiedHead: true,
  },
  'untied head, single block': {
    vocabSize: 9,
    contextLength: 5,
    blocks: [{ width: 8, ffnRatio: 2, layers: 2, heads: 2, headDim: 4 }],
    tiedHead: false,
  },
};

describe('whole-decoder gradients (float64)', () => {
  for (const [label, input] of Object.entries(SPECS)) {
    it(label, () => {
      const spec = parseArchSpec(input);
      const weights = initWeights(spec, 3);
      // Scale up from GPT-2 init so every path carries signal, and perturb LayerNorm gains/biases.
      const r = mulberry32(9);
      for (const [name, t] of weights) {
        if (name.endsWith('.bias') || /ln/.test(name)) for (let i = 0; i < t.data.length; i++) t.data[i]! += 0.3 * (r() - 0.5);
        else for (let i = 0; i < t.data.length; i++) t.data[i]! *= 15;
      }
      const model = new TrainableDecoder(spec, weights, 64);
      const B = 2;
      const S = spec.contextLength;
      const tokens = Int32Array.from({ length: B * (S + 1) }, () => Math.floor(r() * spec.vocabSize));
      model.params.zeroGrads();
      model.loss(tokens, B, true);
      model.backward();
      const grads = Float64Array.from(model.params.grads);
      const values = model.params.values as Float64Array;
      const f = (): number => {
        // Transposed copies feed the forward GEMMs, so refresh them after each nudge.
        model.params.refreshTransposes();
        return model.loss(tokens, B, false);
      };
      for (const p of model.params.params) {
        const step = Math.max(1, Math.floor(p.size / 4));
        for (let i = 0; i < p.size; i += step) {
          const idx = p.offset + i;
          const num = fd(values, idx, f);
          expect(Math.abs(num - grads[idx]!), `${p.name}[${i}]: analytic ${grads[idx]} numeric ${num}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(num)));
        }
      }
      model.params.refreshTransposes();
      // Shared weights: one tensor set for both layers of block 1 of the first spec.
      if (spec.blocks.some((b) => b.shareWeights)) expect(model.params.has('layers.2.ln1.weight')).toBe(false);
    });
  }
});
