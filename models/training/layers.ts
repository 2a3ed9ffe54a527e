// Forward and backward passes of the decoder's layer kinds on row-major typed arrays: linear,
// LayerNorm, exact GELU, causal multi-head attention and softmax cross-entropy. Backward functions
// accumulate into parameter gradients (shared-weight layers add up) and write input gradients.
import { addBiasRows, allocLike, gemmNT, sumRowsInto, transpose, type FloatArray } from './kernels.ts';

/** Scratch space reused across calls, grown on demand (never per element). */
export class Scratch {
  private buffers = new Map<string, FloatArray>();
  constructor(private readonly like: FloatArray) {}
  /** A buffer of at least n values under `key` (contents undefined). */
  get(key: string, n: number): FloatArray {
    const b = this.buffers.get(key);
    if (b && b.length >= n) return b.length === n ? b : b.subarray(0, n);
    const fresh = allocLike(this.like, n);
    this.buffers.set(key, fresh);
    return fresh;
  }
}

/** y[M,out] = x[M,in] · W[in,out] + b, given Wt = W^T [out,in]. */
export function linearForward(x: FloatArray, Wt: FloatArray, b: FloatArray | undefined, y: FloatArray, M: number, inDim: number, outDim: number): void {
  gemmNT(x, Wt, y, M, outDim, inDim);
  if (b) addBiasRows(y, b, M, outDim);
}

/**
 * Backward of y = x W + b: dW += x^T dy, db += colsum(dy), dx (+)= dy W^T. `dx` may be undefined
 * when the input needs no gradient.
 */
export function linearBackward(
  x: FloatArray,
  W: FloatArray,
  dy: FloatArray,
  dW: FloatArray,
  db: FloatArray | undefined,
  dx: FloatArray | undefined,
  M: number,
  inDim: number,
  outDim: number,
  scratch: Scratch,
  accumulateDx = false,
): void {
  const xT = scratch.get('lin.xT', inDim * M);
  const dyT = scratch.get('lin.dyT', outDim * M);
  transpose(x, xT, M, inDim);
  transpose(dy, dyT, M, outDim);
  gemmNT(xT, dyT, dW, inDim, outDim, M, true);
  if (db) sumRowsInto(dy, db, M, outDim);
  if (dx) gemmNT(dy, W, dx, M, inDim, outDim, accumulateDx);
}

/** LayerNorm over the last axis; keeps xhat and 1/std for the backward pass. */
export function layerNormForward(x: FloatArray, g: FloatArray, b: FloatArray, y: FloatArray, xhat: FloatArray, rstd: FloatArray, M: number, E: number, eps: number): void {
  for (let r = 0; r < M; r++) {
    const o = r * E;
    let mean = 0;
    for (let i = 0; i < E; i++) mean += x[o + i]!;
    mean /= E;
    let vr = 0;
    for (let i = 0; i < E; i++) {
      const d = x[o + i]! - mean;
      vr += d * d;
    }
    const inv = 1 / Math.sqrt(vr / E + eps);
    rstd[r] = inv;
    for (let i = 0; i < E; i++) {
      const h = (x[o + i]! - mean) * inv;
      xhat[o + i] = h;
      y[o + i] = h * g[i]! + b[i]!;
    }
  }
}

/** LayerNorm backward: dg, db accumulate; dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)). */
export function layerNormBackward(dy: FloatArray, xhat: FloatArray, rstd: FloatArray, g: FloatArray, dg: FloatArray, db: FloatArray, dx: FloatArray, M: number, E: number): void {
  for (let r = 0; r < M; r++) {
    const o = r * E;
    let sum = 0;
    let sumX = 0;
    for (let i = 0; i < E; i++) {
      const d = dy[o + i]!;
      const h = xhat[o + i]!;
      dg[i]! += d * h;
      db[i]! += d;
      const dh = d * g[i]!;
      sum += dh;
      sumX += dh * h;
    }
    const meanD = sum / E;
    const meanDX = sumX / E;
    const inv = rstd[r]!;
    for (let i = 0; i < E; i++) {
      const dh = dy[o + i]! * g[i]!;
      dx[o + i]! += inv * (dh - meanD - xhat[o + i]! * meanDX);
    }
  }
}

/**
 * erf(x) to about 1e-7 relative: the Chebyshev-fitted erfc of Numerical Recipes (3rd ed., 6.2.2),
 * accurate enough that exact GELU matches the ONNX graph's Erf within float32 rounding.
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const erfc =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const INV_SQRT2 = 1 / Math.SQRT2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * Exact GELU, x Phi(x) (Hendrycks & Gimpel 2016), as the builder's plain graph computes it with Erf.
 * Keeps Phi(u) in `cdf` so the backward pass needs one exp per element instead of two.
 */
export function geluForward(u: FloatArray, a: FloatArray, n: number, cdf?: FloatArray): void {
  for (let i = 0; i < n; i++) {
    const x = u[i]!;
    const phi = 0.5 * (1 + erf(x * INV_SQRT2));
    if (cdf) cdf[i] = phi;
    a[i] = x * phi;
  }
}

/** du = da (Phi(u) + u phi(u)); `cdf` is what geluForward saved (recomputed when absent). */
export function geluBackward(u: FloatArray, da: FloatArray, du: FloatArray, n: number, cdf?: FloatArray): void {
  for (let i = 0; i < n; i++) {
    const x = u[i]!;
    const phi = cdf ? cdf[i]! : 0.5 * (1 + erf(x * INV_SQRT2));
    const pdf = INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    du[i] = da[i]! * (phi + x * pdf);
  }
}

/** Shape of one attention call: B sequences of S tokens, H heads of D dims (A = H D). */
export interface AttentionShape {
  B: number;
  S: number;
  H: number;
  D: number;
}

/** Copies [B*S, H*D] rows into head-major [B, H, S, D]. */
function toHeads(x: FloatArray, out: FloatArray, s: AttentionShape): void {
  const { B, S, H, D } = s;
  const A = H * D;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const base = (b * H + h) * S * D;
      for (let t = 0; t < S; t++) {
        const src = (b * S + t) * A + h * D;
        const dst = base + t * D;
        for (let d = 0; d < D; d++) out[dst + d] = x[src + d]!;
      }
    }
}

/** Inverse of toHeads. */
function fromHeads(x: FloatArray, out: FloatArray, s: AttentionShape): void {
  const { B, S, H, D } = s;
  const A = H * D;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const base = (b * H + h) * S * D;
      for (let t = 0; t < S; t++) {
        const dst = (b * S + t) * A + h * D;
        const src = base + t * D;
        for (let d = 0; d < D; d++) out[dst + d] = x[src + d]!;
      }
    }
}

/** Saved tensors of one attention call, all head-major. */
export interface AttentionCache {
  q: FloatArray;
  k: FloatArray;
  v: FloatArray;
  /** Softmax probabilities [B, H, S, S] (zero above the diagonal). */
  p: FloatArray;
}

/**
 * Causal scaled dot-product attention (Vaswani et al. 2017): q, k, v as [B*S, A] rows in,
 * context as [B*S, A] rows out. Keeps head-major q, k, v and the probabilities in `cache`.
 */
export function attentionForward(q: FloatArray, k: FloatArray, v: FloatArray, ctx: FloatArray, cache: AttentionCache, s: AttentionShape, scratch: Scratch): void {
  const { B, S, H, D } = s;
  toHeads(q, cache.q, s);
  toHeads(k, cache.k, s);
  toHeads(v, cache.v, s);
  const scale = 1 / Math.sqrt(D);
  const vT = scratch.get('att.vT', D * S);
  const ctxH = scratch.get('att.ctxH', B * H * S * D);
  for (let bh = 0; bh < B * H; bh++) {
    const qh = cache.q.subarray(bh * S * D, (bh + 1) * S * D);
    const kh = cache.k.subarray(bh * S * D, (bh + 1) * S * D);
    const vh = cache.v.subarray(bh * S * D, (bh + 1) * S * D);
    const p = cache.p.subarray(bh * S * S, (bh + 1) * S * S);
    gemmNT(qh, kh, p, S, S, D);
    for (let i = 0; i < S; i++) {
      const o = i * S;
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        const x = p[o + j]! * scale;
        p[o + j] = x;
        if (x > max) max = x;
      }
      let sum = 0;
      for (let j = 0; j <= i; j++) {
        const e = Math.exp(p[o + j]! - max);
        p[o + j] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let j = 0; j <= i; j++) p[o + j]! *= inv;
      for (let j = i + 1; j < S; j++) p[o + j] = 0;
    }
    transpose(vh, vT, S, D);
    gemmNT(p, vT, ctxH.subarray(bh * S * D, (bh + 1) * S * D), S, D, S);
  }
  fromHeads(ctxH, ctx, s);
}

/** Attention backward: dctx [B*S, A] rows in; dq, dk, dv [B*S, A] rows out (overwritten). */
export function attentionBackward(dctx: FloatArray, cache: AttentionCache, dq: FloatArray, dk: FloatArray, dv: FloatArray, s: AttentionShape, scratch: Scratch): void {
  const { B, S, H, D } = s;
  const n = B * H * S * D;
  const scale = 1 / Math.sqrt(D);
  const dctxH = scratch.get('att.dctxH', n);
  const dqH = scratch.get('att.dqH', n);
  const dkH = scratch.get('att.dkH', n);
  const dvH = scratch.get('att.dvH', n);
  const dP = scratch.get('att.dP', S * S);
  const tSS = scratch.get('att.tSS', S * S);
  const tDS = scratch.get('att.tDS', D * S);
  toHeads(dctx, dctxH, s);
  for (let bh = 0; bh < B * H; bh++) {
    const sl = (a: FloatArray): FloatArray => a.subarray(bh * S * D, (bh + 1) * S * D);
    const qh = sl(cache.q);
    const kh = sl(cache.k);
    const vh = sl(cache.v);
    const dch = sl(dctxH);
    const p = cache.p.subarray(bh * S * S, (bh + 1) * S * S);
    // dP = dctx V^T
    gemmNT(dch, vh, dP, S, S, D);
    // dV = P^T dctx
    transpose(p, tSS, S, S);
    transpose(dch, tDS, S, D);
    gemmNT(tSS, tDS, sl(dvH), S, D, S);
    // dScores = P (dP - rowsum(P dP)), then the 1/sqrt(D) scale of the scores.
    for (let i = 0; i < S; i++) {
      const o = i * S;
      let dot = 0;
      for (let j = 0; j <= i; j++) dot += p[o + j]! * dP[o + j]!;
      for (let j = 0; j <= i; j++) dP[o + j] = p[o + j]! * (dP[o + j]! - dot) * scale;
      for (let j = i + 1; j < S; j++) dP[o + j] = 0;
    }
    // dQ = dS K
    transpose(kh, tDS, S, D);
    gemmNT(dP, tDS, sl(dqH), S, D, S);
    // dK = dS^T Q
    transpose(dP, tSS, S, S);
    transpose(qh, tDS, S, D);
    gemmNT(tSS, tDS, sl(dkH), S, D, S);
  }
  fromHeads(dqH, dq, s);
  fromHeads(dkH, dk, s);
  fromHeads(dvH, dv, s);
}

/**
 * Mean softmax cross-entropy of logits [M, V] against targets; overwrites logits with
 * dLoss/dlogits = (softmax - onehot) / M when `grad` is set. Returns the mean loss (nats).
 */
export function softmaxCrossEntropy(logits: FloatArray, targets: Int32Array, M: number, V: number, grad: boolean): number {
  let total = 0;
  const invM = 1 / M;
  for (let r = 0; r < M; r++) {
    const o = r * V;
    let max = -Infinity;
    for (let c = 0; c < V; c++) if (logits[o + c]! > max) max = logits[o + c]!;
    const t = targets[r]!;
    const target = logits[o + t]!;
    let sum = 0;
    if (grad) {
      // Keep exp(l - max) in place so the gradient needs no second exp.
      for (let c = 0; c < V; c++) {
        const e = Math.exp(logits[o + c]! - max);
        logits[o + c] = e;
        sum += e;
      }
      const scale = invM / sum;
      for (let c = 0; c < V; c++) logits[o + c]! *= scale;
      logits[o + t]! -= invM;
    } else {
      for (let c = 0; c < V; c++) sum += Math.exp(logits[o + c]! - max);
    }
    total += Math.log(sum) + max - target;
  }
  return total / M;
}
