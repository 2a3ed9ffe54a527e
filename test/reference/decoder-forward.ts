// Pure TypeScript reference forward pass of a FleetLM decoder (native weights), with a KV cache,
// in float64. ONNX graphs (plain and fused) and the runtime are checked against it.
import { embeddingWidthOf, type ArchSpec } from '../../models/arch/spec.ts';
import { layerPlan, type DecoderWeights } from '../../models/arch/weights.ts';

/** One layer's cache: [batch, heads, length, headDim] row-major. */
export interface LayerCache {
  key: Float32Array;
  value: Float32Array;
  heads: number;
  headDim: number;
  length: number;
}

export interface ReferenceInput {
  /** [batch][seq] token ids. */
  inputIds: number[][];
  /** [batch][seq]; default past + i. */
  positionIds?: number[][];
  /** [batch][past + seq] of 0/1; default all ones. */
  attentionMask?: number[][];
  /** Per layer cache (all layers, same past length); default empty. */
  past?: LayerCache[];
  /** FFN activation (default exact GELU). */
  activation?: 'gelu' | 'gelu_tanh' | 'relu';
}

export interface ReferenceOutput {
  /** [batch, seq, vocab]. */
  logits: Float32Array;
  present: LayerCache[];
  batch: number;
  seq: number;
}

/** Masked scores take this value, as in the plain ONNX graph. */
const MASK_VALUE = -1e9;

function get(weights: DecoderWeights, name: string): Float32Array {
  const t = weights.get(name);
  if (!t) throw new Error(`reference: missing weight ${name}`);
  return t.data;
}

/** y[s, out] = x[s, in] @ W[in, out] (+ b). */
function linear(x: Float64Array, rows: number, inDim: number, W: Float32Array, outDim: number, b?: Float32Array): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    const yo = r * outDim;
    for (let i = 0; i < inDim; i++) {
      const xv = x[r * inDim + i]!;
      if (xv === 0) continue;
      const wo = i * outDim;
      for (let o = 0; o < outDim; o++) y[yo + o]! += xv * W[wo + o]!;
    }
    if (b) for (let o = 0; o < outDim; o++) y[yo + o]! += b[o]!;
  }
  return y;
}

function layerNorm(x: Float64Array, rows: number, dim: number, gamma: Float32Array, beta: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i]!;
    mean /= dim;
    let vr = 0;
    for (let i = 0; i < dim; i++) vr += (x[r * dim + i]! - mean) ** 2;
    vr /= dim;
    const inv = 1 / Math.sqrt(vr + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = (x[r * dim + i]! - mean) * inv * gamma[i]! + beta[i]!;
  }
  return y;
}

/** erf to ~1e-15: Maclaurin series below 2.5, the erfc continued fraction above (A&S 7.1.5, 7.1.14). */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
    let sum = 0;
    let term = ax;
    for (let n = 0; n < 80; n++) {
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
      term *= (-ax * ax) / (n + 1);
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // Continued fraction for erfc (Lentz), accurate for |x| >= 2.5.
  let f = ax;
  let C = ax;
  let Dd = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    Dd = ax + an * Dd;
    Dd = Dd === 0 ? 1e-300 : 1 / Dd;
    C = ax + an / C;
    if (C === 0) C = 1e-300;
    const delta = C * Dd;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  const r = 1 - erfc;
  return x < 0 ? -r : r;
}

/** Exact GELU, x * Phi(x). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** GPT-2's tanh approximation of GELU (Hugging Face gelu_new). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Runs the decoder on a batch, continuing from `past` when given. */
export function referenceForward(spec: ArchSpec, weights: DecoderWeights, input: ReferenceInput): ReferenceOutput {
  const plan = layerPlan(spec);
  const batch = input.inputIds.length;
  const seq = input.inputIds[0]?.length ?? 0;
  const pastLen = input.past?.[0]?.length ?? 0;
  const total = pastLen + seq;
  const eEmb = embeddingWidthOf(spec);
  const V = spec.vocabSize;
  const eps = spec.layerNormEpsilon;
  const logits = new Float32Array(batch * seq * V);
  const present: LayerCache[] = plan.map((l) => ({
    key: new Float32Array(batch * l.heads * total * l.headDim),
    value: new Float32Array(batch * l.heads * total * l.headDim),
    heads: l.heads,
    headDim: l.headDim,
    length: total,
  }));

  for (let b = 0; b < batch; b++) {
    const ids = input.inputIds[b]!;
    const posIds = input.positionIds?.[b] ?? ids.map((_, i) => pastLen + i);
    const mask = input.attentionMask?.[b] ?? new Array<number>(total).fill(1);
    const tokE = get(weights, 'embed_tokens.weight');
    const posE = get(weights, 'embed_positions.weight');
    let h: Float64Array = new Float64Array(seq * eEmb);
    for (let s = 0; s < seq; s++) {
      const t = ids[s]!;
      const p = posIds[s]! + spec.positionOffset;
      for (let i = 0; i < eEmb; i++) h[s * eEmb + i] = tokE[t * eEmb + i]! + posE[p * eEmb + i]!;
    }
    let width = eEmb;
    if (weights.has('project_in.weight')) {
      const W0 = spec.blocks[0]!.width;
      h = linear(h, seq, eEmb, get(weights, 'project_in.weight'), W0);
      width = W0;
    }
    let prevBlock = 0;
    for (const layer of plan) {
      if (layer.block !== prevBlock) {
        prevBlock = layer.block;
        const proj = `block_proj.${layer.block}`;
        if (weights.has(`${proj}.weight`)) {
          h = linear(h, seq, width, get(weights, `${proj}.weight`), layer.width, get(weights, `${proj}.bias`));
          width = layer.width;
        }
      }
      const E = layer.width;
      const { heads: H, headDim: D, prefix: p } = layer;
      const A = H * D;
      const x = layerNorm(h, seq, E, get(weights, `${p}.ln1.weight`), get(weights, `${p}.ln1.bias`), eps);
      const q = linear(x, seq, E, get(weights, `${p}.attn.q.weight`), A, get(weights, `${p}.attn.q.bias`));
      const k = linear(x, seq, E, get(weights, `${p}.attn.k.weight`), A, get(weights, `${p}.attn.k.bias`));
      const v = linear(x, seq, E, get(weights, `${p}.attn.v.weight`), A, get(weights, `${p}.attn.v.bias`));
      const cache = present[layer.index]!;
      const past = input.past?.[layer.index];
      for (let hh = 0; hh < H; hh++) {
        const base = ((b * H + hh) * total) * D;
        if (past && pastLen > 0) {
          const pbase = ((b * H + hh) * pastLen) * D;
          cache.key.set(past.key.subarray(pbase, pbase + pastLen * D), base);
          cache.value.set(past.value.subarray(pbase, pbase + pastLen * D), base);
        }
        for (let s = 0; s < seq; s++) {
          for (let d = 0; d < D; d++) {
            cache.key[base + (pastLen + s) * D + d] = k[s * A + hh * D + d]!;
            cache.value[base + (pastLen + s) * D + d] = v[s * A + hh * D + d]!;
          }
        }
      }
      const ctx = new Float64Array(seq * A);
      const scores = new Float64Array(total);
      const scale = 1 / Math.sqrt(D);
      for (let hh = 0; hh < H; hh++) {
        const base = ((b * H + hh) * total) * D;
        for (let s = 0; s < seq; s++) {
          let max = -Infinity;
          for (let j = 0; j < total; j++) {
            const allowed = j <= pastLen + s && mask[j] !== 0;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[s * A + hh * D + d]! * scale * cache.key[base + j * D + d]!;
            scores[j] = allowed ? dot : MASK_VALUE;
            if (scores[j]! > max) max = scores[j]!;
          }
          let sum = 0;
          for (let j = 0; j < total; j++) {
            scores[j] = Math.exp(scores[j]! - max);
            sum += scores[j]!;
          }
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = 0; j < total; j++) acc += scores[j]! * cache.value[base + j * D + d]!;
            ctx[s * A + hh * D + d] = acc / sum;
          }
        }
      }
      const attnOut = linear(ctx, seq, A, get(weights, `${p}.attn.out.weight`), E, get(weights, `${p}.attn.out.bias`));
      for (let i = 0; i < h.length; i++) h[i]! += attnOut[i]!;
      const y = layerNorm(h, seq, E, get(weights, `${p}.ln2.weight`), get(weights, `${p}.ln2.bias`), eps);
      const up = linear(y, seq, E, get(weights, `${p}.ffn.up.weight`), layer.ffn, get(weights, `${p}.ffn.up.bias`));
      if (input.activation === 'relu') for (let i = 0; i < up.length; i++) up[i] = Math.max(0, up[i]!);
      else if (input.activation === 'gelu_tanh') for (let i = 0; i < up.length; i++) up[i] = geluTanh(up[i]!);
      else for (let i = 0; i < up.length; i++) up[i] = gelu(up[i]!);
      const down = linear(up, seq, layer.ffn, get(weights, `${p}.ffn.down.weight`), E, get(weights, `${p}.ffn.down.bias`));
      for (let i = 0; i < h.length; i++) h[i]! += down[i]!;
    }
    let out: Float64Array = layerNorm(h, seq, width, get(weights, 'final_ln.weight'), get(weights, 'final_ln.bias'), eps);
    let rows: Float64Array;
    if (spec.tiedHead) {
      let outWidth = width;
      if (weights.has('project_out.weight')) {
        out = linear(out, seq, width, get(weights, 'project_out.weight'), eEmb);
        outWidth = eEmb;
      }
      rows = new Float64Array(seq * V);
      for (let s = 0; s < seq; s++) {
        for (let t = 0; t < V; t++) {
          let dot = 0;
          for (let i = 0; i < outWidth; i++) dot += out[s * outWidth + i]! * tokE[t * eEmb + i]!;
          rows[s * V + t] = dot;
        }
      }
    } else {
      rows = linear(out, seq, width, get(weights, 'lm_head.weight'), V);
    }
    for (let i = 0; i < seq * V; i++) logits[b * seq * V + i] = rows[i]!;
  }
  return { logits, present, batch, seq };
}
