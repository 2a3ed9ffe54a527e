// Pure TypeScript reference forward pass of a FleetLM decoder (native weights), with a KV cache,
// in float64. ONNX graphs (plain and fused) and the runtime are checked against it. The Llama
// options follow Hugging Face transformers' LlamaForCausalLM / Qwen2ForCausalLM: LlamaRMSNorm,
// rotate_half rotary embedding, repeat_kv grouped-query attention, down(silu(gate(x)) * up(x)).
import { embeddingWidthOf, type ArchSpec, type BlockSpec } from '../../models/arch/spec.ts';
import { layerPlan, type DecoderWeights } from '../../models/arch/weights.ts';

/** One layer's cache: [batch, heads, length, headDim] row-major (heads = the layer's kvHeads). */
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

/** A weight that exists only under some spec options (biases). */
function maybe(weights: DecoderWeights, name: string): Float32Array | undefined {
  return weights.get(name)?.data;
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

/** LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * gamma (no mean subtraction, no shift). */
function rmsNorm(x: Float64Array, rows: number, dim: number, gamma: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ms = 0;
    for (let i = 0; i < dim; i++) ms += x[r * dim + i]! ** 2;
    const inv = 1 / Math.sqrt(ms / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i]! * inv * gamma[i]!;
  }
  return y;
}

/** The norm a block uses, by its spec (`${prefix}.bias` exists only for LayerNorm). */
function normOf(weights: DecoderWeights, block: Pick<BlockSpec, 'norm'>, x: Float64Array, rows: number, dim: number, prefix: string, eps: number): Float64Array {
  return block.norm === 'rmsnorm'
    ? rmsNorm(x, rows, dim, get(weights, `${prefix}.weight`), eps)
    : layerNorm(x, rows, dim, get(weights, `${prefix}.weight`), get(weights, `${prefix}.bias`), eps);
}

/**
 * Rotates each head of x ([rows, heads*D]) in place by its row's position (HF LlamaRotaryEmbedding
 * + apply_rotary_pos_emb): inv_freq_i = theta^(-2i/D), angle = pos * inv_freq_i for i < D/2,
 * x' = x * cos + rotate_half(x) * sin with rotate_half(x) = concat(-x[D/2:], x[:D/2]).
 */
function rotate(x: Float64Array, rows: number, heads: number, D: number, positions: readonly number[], theta: number): void {
  const half = D / 2;
  for (let r = 0; r < rows; r++) {
    const pos = positions[r]!;
    for (let h = 0; h < heads; h++) {
      const o = r * heads * D + h * D;
      for (let i = 0; i < half; i++) {
        const angle = pos * Math.pow(theta, (-2 * i) / D);
        const c = Math.cos(angle);
        const sn = Math.sin(angle);
        const a = x[o + i]!;
        const b = x[o + half + i]!;
        x[o + i] = a * c - b * sn;
        x[o + half + i] = b * c + a * sn;
      }
    }
  }
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
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
    key: new Float32Array(batch * l.kvHeads * total * l.headDim),
    value: new Float32Array(batch * l.kvHeads * total * l.headDim),
    heads: l.kvHeads,
    headDim: l.headDim,
    length: total,
  }));

  for (let b = 0; b < batch; b++) {
    const ids = input.inputIds[b]!;
    const posIds = input.positionIds?.[b] ?? ids.map((_, i) => pastLen + i);
    const mask = input.attentionMask?.[b] ?? new Array<number>(total).fill(1);
    const tokE = get(weights, 'embed_tokens.weight');
    const posE = spec.positions === 'learned' ? get(weights, 'embed_positions.weight') : undefined;
    let h: Float64Array = new Float64Array(seq * eEmb);
    for (let s = 0; s < seq; s++) {
      const t = ids[s]!;
      const p = posIds[s]! + spec.positionOffset;
      for (let i = 0; i < eEmb; i++) h[s * eEmb + i] = tokE[t * eEmb + i]! + (posE ? posE[p * eEmb + i]! : 0);
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
          h = linear(h, seq, width, get(weights, `${proj}.weight`), layer.width, maybe(weights, `${proj}.bias`));
          width = layer.width;
        }
      }
      const E = layer.width;
      const block = spec.blocks[layer.block]!;
      const { heads: H, kvHeads: KV, headDim: D, prefix: p } = layer;
      const A = H * D;
      const Akv = KV * D;
      // repeat_kv: query head hh reads key/value head floor(hh / (H / KV)).
      const group = H / KV;
      const x = normOf(weights, block, h, seq, E, `${p}.ln1`, eps);
      const q = linear(x, seq, E, get(weights, `${p}.attn.q.weight`), A, maybe(weights, `${p}.attn.q.bias`));
      const k = linear(x, seq, E, get(weights, `${p}.attn.k.weight`), Akv, maybe(weights, `${p}.attn.k.bias`));
      const v = linear(x, seq, E, get(weights, `${p}.attn.v.weight`), Akv, maybe(weights, `${p}.attn.v.bias`));
      if (spec.positions === 'rotary') {
        rotate(q, seq, H, D, posIds, spec.ropeTheta);
        rotate(k, seq, KV, D, posIds, spec.ropeTheta);
      }
      const cache = present[layer.index]!;
      const past = input.past?.[layer.index];
      for (let hh = 0; hh < KV; hh++) {
        const base = ((b * KV + hh) * total) * D;
        if (past && pastLen > 0) {
          const pbase = ((b * KV + hh) * pastLen) * D;
          cache.key.set(past.key.subarray(pbase, pbase + pastLen * D), base);
          cache.value.set(past.value.subarray(pbase, pbase + pastLen * D), base);
        }
        for (let s = 0; s < seq; s++) {
          for (let d = 0; d < D; d++) {
            cache.key[base + (pastLen + s) * D + d] = k[s * Akv + hh * D + d]!;
            cache.value[base + (pastLen + s) * D + d] = v[s * Akv + hh * D + d]!;
          }
        }
      }
      const ctx = new Float64Array(seq * A);
      const scores = new Float64Array(total);
      const scale = 1 / Math.sqrt(D);
      for (let hh = 0; hh < H; hh++) {
        const base = ((b * KV + Math.floor(hh / group)) * total) * D;
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
      const attnOut = linear(ctx, seq, A, get(weights, `${p}.attn.out.weight`), E, maybe(weights, `${p}.attn.out.bias`));
      for (let i = 0; i < h.length; i++) h[i]! += attnOut[i]!;
      const y = normOf(weights, block, h, seq, E, `${p}.ln2`, eps);
      const up = linear(y, seq, E, get(weights, `${p}.ffn.up.weight`), layer.ffn, maybe(weights, `${p}.ffn.up.bias`));
      if (block.mlp === 'swiglu') {
        const gate = linear(y, seq, E, get(weights, `${p}.ffn.gate.weight`), layer.ffn, maybe(weights, `${p}.ffn.gate.bias`));
        for (let i = 0; i < up.length; i++) up[i] = silu(gate[i]!) * up[i]!;
      } else if (input.activation === 'relu') for (let i = 0; i < up.length; i++) up[i] = Math.max(0, up[i]!);
      else if (input.activation === 'gelu_tanh') for (let i = 0; i < up.length; i++) up[i] = geluTanh(up[i]!);
      else for (let i = 0; i < up.length; i++) up[i] = gelu(up[i]!);
      const down = linear(up, seq, layer.ffn, get(weights, `${p}.ffn.down.weight`), E, maybe(weights, `${p}.ffn.down.bias`));
      for (let i = 0; i < h.length; i++) h[i]! += down[i]!;
    }
    let out: Float64Array = normOf(weights, spec.blocks[spec.blocks.length - 1]!, h, seq, width, 'final_ln', eps);
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
