// The trainable decoder: forward pass with saved activations, the mean next-token cross-entropy,
// and the backward pass into the parameter store, for every layer kind the ONNX builder emits
// (positions, project_in/out, block projections, shared-weight blocks, tied or untied head).
import { embeddingWidthOf, type ArchSpec } from '../arch/spec.ts';
import { layerPlan, type DecoderWeights, type LayerPlan } from '../arch/weights.ts';
import { ValidationError } from '../../common/errors.ts';
import { addInto, gemmNT, transpose, type FloatArray } from './kernels.ts';
import {
  Scratch,
  attentionBackward,
  attentionForward,
  geluBackward,
  geluForward,
  layerNormBackward,
  layerNormForward,
  linearBackward,
  linearForward,
  softmaxCrossEntropy,
  type AttentionCache,
  type AttentionShape,
} from './layers.ts';
import { ParamStore, type Param } from './params.ts';

/** The decoder's forward/backward on a batch of B sequences of S tokens (positions 0..S-1). */
export class TrainableDecoder {
  readonly params: ParamStore;
  private readonly plan: LayerPlan[];
  private readonly eEmb: number;
  private readonly act: Scratch;
  private readonly tmp: Scratch;
  private ids = new Int32Array(0);
  private targets = new Int32Array(0);
  private B = 0;
  private S = 0;
  private ready = false;

  /** `dtype` 64 runs the same code in float64 (gradient checks). */
  constructor(
    readonly spec: ArchSpec,
    weights: DecoderWeights,
    dtype: 32 | 64 = 32,
  ) {
    this.params = new ParamStore(spec, weights, dtype);
    this.plan = layerPlan(spec);
    this.eEmb = embeddingWidthOf(spec);
    this.act = new Scratch(this.params.values);
    this.tmp = new Scratch(this.params.values);
  }

  private p(name: string): Param {
    return this.params.get(name);
  }

  /**
   * Runs the model on `tokens` ([B, S+1] row-major: inputs are the first S of each row, targets the
   * last S) and returns the mean cross-entropy in nats. With `keepGrad` the logits buffer holds
   * dLoss/dlogits afterwards, ready for `backward()`.
   */
  loss(tokens: Int32Array, batch: number, keepGrad = true): number {
    const S = tokens.length / batch - 1;
    if (!Number.isInteger(S) || S < 1) throw new ValidationError(`token batch of ${tokens.length} values does not split into ${batch} rows of S+1 >= 2`);
    const M = batch * S;
    if (this.ids.length < M) {
      this.ids = new Int32Array(M);
      this.targets = new Int32Array(M);
    }
    for (let b = 0; b < batch; b++) {
      for (let s = 0; s < S; s++) {
        this.ids[b * S + s] = tokens[b * (S + 1) + s]!;
        this.targets[b * S + s] = tokens[b * (S + 1) + s + 1]!;
      }
    }
    const logits = this.run(this.ids.subarray(0, M), batch, S);
    const loss = softmaxCrossEntropy(logits, this.targets.subarray(0, M), M, this.spec.vocabSize, keepGrad);
    this.ready = keepGrad;
    return loss;
  }

  /** Logits [B, S, V] for input ids [B, S] (a view into an internal buffer, valid until the next call). */
  logits(ids: Int32Array, batch: number): FloatArray {
    const S = ids.length / batch;
    this.ready = false;
    return this.run(ids, batch, S);
  }

  private run(ids: Int32Array, B: number, S: number): FloatArray {
    const spec = this.spec;
    if (S > spec.contextLength) throw new ValidationError(`sequence length ${S} exceeds the model's context length ${spec.contextLength}`);
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i]!;
      if (!(t >= 0 && t < spec.vocabSize)) throw new ValidationError(`token id ${t} is outside the vocabulary [0, ${spec.vocabSize})`);
    }
    this.B = B;
    this.S = S;
    const M = B * S;
    const eEmb = this.eEmb;
    const tok = this.p('embed_tokens.weight').value;
    const pos = this.p('embed_positions.weight').value;
    const emb = this.act.get('emb', M * eEmb);
    for (let m = 0; m < M; m++) {
      const t = ids[m]!;
      const ps = (m % S) + spec.positionOffset;
      const o = m * eEmb;
      for (let i = 0; i < eEmb; i++) emb[o + i] = tok[t * eEmb + i]! + pos[ps * eEmb + i]!;
    }
    let cur = emb;
    let width = eEmb;
    if (this.params.has('project_in.weight')) {
      const w = this.p('project_in.weight');
      const out = this.act.get('project_in', M * w.shape[1]!);
      linearForward(cur, w.transposed!, undefined, out, M, width, w.shape[1]!);
      cur = out;
      width = w.shape[1]!;
    }
    let prevBlock = 0;
    for (const layer of this.plan) {
      if (layer.block !== prevBlock) {
        prevBlock = layer.block;
        const name = `block_proj.${layer.block}`;
        if (this.params.has(`${name}.weight`)) {
          const w = this.p(`${name}.weight`);
          const out = this.act.get(name, M * layer.width);
          linearForward(cur, w.transposed!, this.p(`${name}.bias`).value, out, M, width, layer.width);
          cur = out;
          width = layer.width;
        }
      }
      cur = this.layerForward(layer, cur, B, S);
    }
    const last = width;
    const fo = this.act.get('final.y', M * last);
    layerNormForward(cur, this.p('final_ln.weight').value, this.p('final_ln.bias').value, fo, this.act.get('final.xhat', M * last), this.act.get('final.rstd', M), M, last, spec.layerNormEpsilon);
    const V = spec.vocabSize;
    const logits = this.act.get('logits', M * V);
    if (spec.tiedHead) {
      let hin = fo;
      if (this.params.has('project_out.weight')) {
        const w = this.p('project_out.weight');
        hin = this.act.get('project_out', M * eEmb);
        linearForward(fo, w.transposed!, undefined, hin, M, last, eEmb);
      }
      gemmNT(hin, tok, logits, M, V, eEmb);
    } else {
      linearForward(fo, this.p('lm_head.weight').transposed!, undefined, logits, M, last, V);
    }
    return logits;
  }

  private layerForward(layer: LayerPlan, x: FloatArray, B: number, S: number): FloatArray {
    const M = B * S;
    const E = layer.width;
    const A = layer.heads * layer.headDim;
    const F = layer.ffn;
    const pre = layer.prefix;
    const key = `L${layer.index}`;
    const eps = this.spec.layerNormEpsilon;
    const a = this.act;
    const y1 = a.get(`${key}.y1`, M * E);
    layerNormForward(x, this.p(`${pre}.ln1.weight`).value, this.p(`${pre}.ln1.bias`).value, y1, a.get(`${key}.xhat1`, M * E), a.get(`${key}.rstd1`, M), M, E, eps);
    const q = this.tmp.get('q', M * A);
    const k = this.tmp.get('k', M * A);
    const v = this.tmp.get('v', M * A);
    linearForward(y1, this.p(`${pre}.attn.q.weight`).transposed!, this.p(`${pre}.attn.q.bias`).value, q, M, E, A);
    linearForward(y1, this.p(`${pre}.attn.k.weight`).transposed!, this.p(`${pre}.attn.k.bias`).value, k, M, E, A);
    linearForward(y1, this.p(`${pre}.attn.v.weight`).transposed!, this.p(`${pre}.attn.v.bias`).value, v, M, E, A);
    const ctx = a.get(`${key}.ctx`, M * A);
    attentionForward(q, k, v, ctx, this.attnCache(key, B, S, layer), this.shape(layer, B, S), this.tmp);
    const h1 = a.get(`${key}.h1`, M * E);
    linearForward(ctx, this.p(`${pre}.attn.out.weight`).transposed!, this.p(`${pre}.attn.out.bias`).value, h1, M, A, E);
    addInto(h1, x, M * E);
    const y2 = a.get(`${key}.y2`, M * E);
    layerNormForward(h1, this.p(`${pre}.ln2.weight`).value, this.p(`${pre}.ln2.bias`).value, y2, a.get(`${key}.xhat2`, M * E), a.get(`${key}.rstd2`, M), M, E, eps);
    const u = a.get(`${key}.u`, M * F);
    linearForward(y2, this.p(`${pre}.ffn.up.weight`).transposed!, this.p(`${pre}.ffn.up.bias`).value, u, M, E, F);
    const g = a.get(`${key}.g`, M * F);
    geluForward(u, g, M * F, a.get(`${key}.cdf`, M * F));
    const h2 = a.get(`${key}.h2`, M * E);
    linearForward(g, this.p(`${pre}.ffn.down.weight`).transposed!, this.p(`${pre}.ffn.down.bias`).value, h2, M, F, E);
    addInto(h2, h1, M * E);
    return h2;
  }

  private shape(layer: LayerPlan, B: number, S: number): AttentionShape {
    return { B, S, H: layer.heads, D: layer.headDim };
  }

  private attnCache(key: string, B: number, S: number, layer: LayerPlan): AttentionCache {
    const n = B * S * layer.heads * layer.headDim;
    return {
      q: this.act.get(`${key}.qh`, n),
      k: this.act.get(`${key}.kh`, n),
      v: this.act.get(`${key}.vh`, n),
      p: this.act.get(`${key}.p`, B * layer.heads * S * S),
    };
  }

  /** Adds dLoss/dparams of the last `loss(..., true)` call into `params.grads`. */
  backward(): void {
    if (!this.ready) throw new Error('internal: backward() needs a preceding loss(tokens, batch, true)');
    this.ready = false;
    const spec = this.spec;
    const { B, S } = this;
    const M = B * S;
    const V = spec.vocabSize;
    const eEmb = this.eEmb;
    const t = this.tmp;
    const a = this.act;
    const dlogits = a.get('logits', M * V);
    const tok = this.p('embed_tokens.weight');
    const lastWidth = spec.blocks[spec.blocks.length - 1]!.width;
    const maxW = Math.max(eEmb, ...spec.blocks.map((b) => b.width));
    let dCur = t.get('dCurA', M * maxW);
    let dOther = t.get('dCurB', M * maxW);
    const fo = a.get('final.y', M * lastWidth);
    const dfo = dOther.subarray(0, M * lastWidth);
    if (spec.tiedHead) {
      const hasOut = this.params.has('project_out.weight');
      const hin = hasOut ? a.get('project_out', M * eEmb) : fo;
      // d tok += dlogits^T hin ; d hin = dlogits tok
      const dT = t.get('head.dT', V * M);
      const hT = t.get('head.hT', eEmb * M);
      transpose(dlogits, dT, M, V);
      transpose(hin, hT, M, eEmb);
      gemmNT(dT, hT, tok.grad, V, eEmb, M, true);
      const dhin = hasOut ? t.get('head.dhin', M * eEmb) : dfo;
      gemmNT(dlogits, tok.transposed!, dhin, M, eEmb, V);
      if (hasOut) {
        const w = this.p('project_out.weight');
        linearBackward(fo, w.value, dhin, w.grad, undefined, dfo, M, lastWidth, eEmb, t);
      }
    } else {
      const w = this.p('lm_head.weight');
      linearBackward(fo, w.value, dlogits, w.grad, undefined, dfo, M, lastWidth, V, t);
    }
    const dx = dCur.subarray(0, M * lastWidth);
    dx.fill(0);
    layerNormBackward(dfo, a.get('final.xhat', M * lastWidth), a.get('final.rstd', M), this.p('final_ln.weight').value, this.p('final_ln.weight').grad, this.p('final_ln.bias').grad, dx, M, lastWidth);
    let width = lastWidth;
    for (let i = this.plan.length - 1; i >= 0; i--) {
      const layer = this.plan[i]!;
      this.layerBackward(layer, dCur, dOther, B, S);
      // dCur now holds d(layer input).
      const firstOfBlock = i === 0 || this.plan[i - 1]!.block !== layer.block;
      const name = `block_proj.${layer.block}`;
      if (firstOfBlock && layer.block > 0 && this.params.has(`${name}.weight`)) {
        const prevWidth = spec.blocks[layer.block - 1]!.width;
        const w = this.p(`${name}.weight`);
        const input = this.blockInput(layer.block, M);
        linearBackward(input, w.value, dCur.subarray(0, M * width), w.grad, this.p(`${name}.bias`).grad, dOther.subarray(0, M * prevWidth), M, prevWidth, width, t);
        [dCur, dOther] = [dOther, dCur];
        width = prevWidth;
      }
    }
    let dEmb = dCur.subarray(0, M * width);
    if (this.params.has('project_in.weight')) {
      const w = this.p('project_in.weight');
      const out = dOther.subarray(0, M * eEmb);
      linearBackward(a.get('emb', M * eEmb), w.value, dEmb, w.grad, undefined, out, M, eEmb, width, t);
      dEmb = out;
    }
    const pos = this.p('embed_positions.weight');
    for (let m = 0; m < M; m++) {
      const tk = this.ids[m]!;
      const ps = (m % S) + spec.positionOffset;
      const o = m * eEmb;
      for (let j = 0; j < eEmb; j++) {
        const d = dEmb[o + j]!;
        tok.grad[tk * eEmb + j]! += d;
        pos.grad[ps * eEmb + j]! += d;
      }
    }
  }

  /** The activation that fed block `b`'s projection: the output of the block before it. */
  private blockInput(b: number, M: number): FloatArray {
    let lastOfPrev = -1;
    for (const l of this.plan) if (l.block === b - 1) lastOfPrev = l.index;
    if (lastOfPrev >= 0) {
      const w = this.plan[lastOfPrev]!.width;
      return this.act.get(`L${lastOfPrev}.h2`, M * w);
    }
    throw new Error(`internal: block ${b} has no predecessor`);
  }

  /** On entry dCur = d(layer output); on exit dCur = d(layer input). dOther is scratch. */
  private layerBackward(layer: LayerPlan, dCurBuf: FloatArray, dOtherBuf: FloatArray, B: number, S: number): void {
    const M = B * S;
    const E = layer.width;
    const A = layer.heads * layer.headDim;
    const F = layer.ffn;
    const pre = layer.prefix;
    const key = `L${layer.index}`;
    const a = this.act;
    const t = this.tmp;
    const dh2 = dCurBuf.subarray(0, M * E);
    const dh1 = dOtherBuf.subarray(0, M * E);
    // FFN: h2 = h1 + down(gelu(up(ln2(h1))))
    const down = this.p(`${pre}.ffn.down.weight`);
    const dg = t.get('dg', M * F);
    linearBackward(a.get(`${key}.g`, M * F), down.value, dh2, down.grad, this.p(`${pre}.ffn.down.bias`).grad, dg, M, F, E, t);
    const du = t.get('du', M * F);
    geluBackward(a.get(`${key}.u`, M * F), dg, du, M * F, a.get(`${key}.cdf`, M * F));
    const up = this.p(`${pre}.ffn.up.weight`);
    const dy2 = t.get('dy', M * E);
    linearBackward(a.get(`${key}.y2`, M * E), up.value, du, up.grad, this.p(`${pre}.ffn.up.bias`).grad, dy2, M, E, F, t);
    dh1.set(dh2);
    layerNormBackward(dy2, a.get(`${key}.xhat2`, M * E), a.get(`${key}.rstd2`, M), this.p(`${pre}.ln2.weight`).value, this.p(`${pre}.ln2.weight`).grad, this.p(`${pre}.ln2.bias`).grad, dh1, M, E);
    // Attention: h1 = x + out(attn(q, k, v of ln1(x)))
    const out = this.p(`${pre}.attn.out.weight`);
    const dctx = t.get('dctx', M * A);
    linearBackward(a.get(`${key}.ctx`, M * A), out.value, dh1, out.grad, this.p(`${pre}.attn.out.bias`).grad, dctx, M, A, E, t);
    const dq = t.get('dq', M * A);
    const dk = t.get('dk', M * A);
    const dv = t.get('dv', M * A);
    attentionBackward(dctx, this.attnCache(key, B, S, layer), dq, dk, dv, this.shape(layer, B, S), t);
    const y1 = a.get(`${key}.y1`, M * E);
    const dy1 = t.get('dy', M * E);
    (['q', 'k', 'v'] as const).forEach((name, i) => {
      const w = this.p(`${pre}.attn.${name}.weight`);
      linearBackward(y1, w.value, [dq, dk, dv][i]!, w.grad, this.p(`${pre}.attn.${name}.bias`).grad, dy1, M, E, A, t, i > 0);
    });
    const dx = dh2; // reuse: d(input) = dh1 + LN1 backward
    dx.set(dh1);
    layerNormBackward(dy1, a.get(`${key}.xhat1`, M * E), a.get(`${key}.rstd1`, M), this.p(`${pre}.ln1.weight`).value, this.p(`${pre}.ln1.weight`).grad, this.p(`${pre}.ln1.bias`).grad, dx, M, E);
  }
}
