// AdamW with decoupled weight decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay
// Regularization", algorithm 2), global-norm gradient clipping, and the warm-up + cosine schedule.
import type { FloatArray } from './kernels.ts';
import type { ParamStore } from './params.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

/** AdamW over a flat parameter store; moments are kept in float32 beside the values. */
export class AdamW {
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Updates applied so far (the t of the bias corrections). */
  t = 0;
  private readonly decayMask: Uint8Array;

  constructor(
    private readonly store: ParamStore,
    readonly options: AdamWOptions = DEFAULT_ADAMW,
  ) {
    this.m = new Float32Array(store.size);
    this.v = new Float32Array(store.size);
    this.decayMask = new Uint8Array(store.size);
    for (const p of store.params) if (p.decay) this.decayMask.fill(1, p.offset, p.offset + p.size);
  }

  /** One update with learning rate `lr` from the gradients in the store; refreshes W^T copies. */
  step(lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.t++;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    const w: FloatArray = this.store.values;
    const g: FloatArray = this.store.grads;
    const m = this.m;
    const v = this.v;
    const mask = this.decayMask;
    const decay = lr * weightDecay;
    const n = w.length;
    for (let i = 0; i < n; i++) {
      const gi = g[i]!;
      const mi = beta1 * m[i]! + (1 - beta1) * gi;
      const vi = beta2 * v[i]! + (1 - beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      let wi = w[i]!;
      if (mask[i] === 1) wi -= decay * wi;
      w[i] = wi - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + eps);
    }
    this.store.refreshTransposes();
  }
}

/** L2 norm of all gradients; scales them down to `maxNorm` when above it. Returns the norm before clipping. */
export function clipGradNorm(grads: FloatArray, maxNorm: number): number {
  let sq = 0;
  for (let i = 0; i < grads.length; i++) sq += grads[i]! * grads[i]!;
  const norm = Math.sqrt(sq);
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6);
    for (let i = 0; i < grads.length; i++) grads[i]! *= s;
  }
  return norm;
}

/**
 * Learning rate at `step` (0-based): linear warm-up over `warmup` steps to `peak`, then cosine decay
 * to `minRatio * peak` at `total` steps (Loshchilov & Hutter 2017, SGDR, without restarts).
 */
export function learningRate(step: number, peak: number, warmup: number, total: number, minRatio = 0.1): number {
  if (warmup > 0 && step < warmup) return (peak * (step + 1)) / warmup;
  const span = Math.max(1, total - warmup);
  const progress = Math.min(1, Math.max(0, (step - warmup) / span));
  const min = peak * minRatio;
  return min + 0.5 * (peak - min) * (1 + Math.cos(Math.PI * progress));
}
