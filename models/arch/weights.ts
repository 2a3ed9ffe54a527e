// Decoder weights under FleetLM's native tensor names: the expected names and shapes for a spec,
// a seeded GPT-2-scheme initialisation, and validation of weights that came from elsewhere.
//
// Native names (all linear weights are stored [in, out], so y = x @ W + b; /coord/LLAMA-NAMES.md):
//   embed_tokens.weight [V, Eemb]                embed_positions.weight [contextLength + positionOffset, Eemb] (learned only)
//   project_in.weight [Eemb, E0]   (only when Eemb != E0, no bias)
//   layers.{k}.ln1.weight [E], .bias [E] (layernorm only; same for ln2 and final_ln)
//   layers.{k}.attn.q.weight [E, A]  attn.k.weight / attn.v.weight [E, Akv]  (.bias when qkvBias)
//   layers.{k}.attn.out.weight [A, E], .bias [E] (bias when outputBias)
//   layers.{k}.ffn.gate.weight [E, F] (swiglu only)  ffn.up.weight [E, F]  ffn.down.weight [F, E] (biases when outputBias)
//   block_proj.{b}.weight [E_{b-1}, E_b], .bias [E_b] (bias when block b's outputBias; before block b when widths differ)
//   final_ln.weight|bias [E_last]   (norm of the last block)
//   project_out.weight [E_last, Eemb]  (tied head with E_last != Eemb, no bias)
//   lm_head.weight [E_last, V]          (untied head, no bias)
// A = heads*headDim, Akv = kvHeads*headDim. k is the global index of the layer; layers of a
// shareWeights block all use the first layer's k.
import { mulberry32 } from '../random.ts';
import { ModelError } from '../../common/errors.ts';
import { attentionWidthOf, embeddingWidthOf, ffnWidthOf, kvWidthOf, type ArchSpec } from './spec.ts';

/** One tensor: row-major float32 data and its shape. */
export interface WeightTensor {
  data: Float32Array;
  shape: number[];
}

/** All weights of a decoder keyed by native name. */
export type DecoderWeights = Map<string, WeightTensor>;

/** Where one transformer layer gets its weights and how wide it is. */
export interface LayerPlan {
  /** Global layer index 0..totalLayers-1 (also the KV-cache index). */
  index: number;
  block: number;
  /** Native name prefix of its weights, e.g. "layers.3" (shared layers repeat the first one's). */
  prefix: string;
  width: number;
  heads: number;
  /** Key/value heads (== heads unless grouped-query attention); the KV cache holds this many. */
  kvHeads: number;
  headDim: number;
  ffn: number;
  /** True for the layer that owns the weights (the first of a shared block, or any unshared layer). */
  ownsWeights: boolean;
}

/** Layer-by-layer plan of a spec. */
export function layerPlan(spec: ArchSpec): LayerPlan[] {
  const plan: LayerPlan[] = [];
  let index = 0;
  spec.blocks.forEach((block, b) => {
    const first = index;
    for (let l = 0; l < block.layers; l++, index++) {
      const owner = block.shareWeights ? first : index;
      plan.push({
        index,
        block: b,
        prefix: `layers.${owner}`,
        width: block.width,
        heads: block.heads,
        kvHeads: block.kvHeads,
        headDim: block.headDim,
        ffn: ffnWidthOf(block),
        ownsWeights: owner === index,
      });
    }
  });
  return plan;
}

/** Residual-output projections, scaled by 1/sqrt(2 * nLayers) at init (GPT-2 paper, section 2.3). */
export function isResidualProjection(name: string): boolean {
  return name.endsWith('.attn.out.weight') || name.endsWith('.ffn.down.weight');
}

/** Every native tensor name of a spec with its shape, in a fixed canonical order. */
export function expectedWeightShapes(spec: ArchSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const eEmb = embeddingWidthOf(spec);
  const V = spec.vocabSize;
  shapes.set('embed_tokens.weight', [V, eEmb]);
  if (spec.positions === 'learned') shapes.set('embed_positions.weight', [spec.contextLength + spec.positionOffset, eEmb]);
  const first = spec.blocks[0]!.width;
  if (eEmb !== first) shapes.set('project_in.weight', [eEmb, first]);
  const norm = (name: string, width: number, layernorm: boolean): void => {
    shapes.set(`${name}.weight`, [width]);
    if (layernorm) shapes.set(`${name}.bias`, [width]);
  };
  const linear = (name: string, rows: number, cols: number, bias: boolean): void => {
    shapes.set(`${name}.weight`, [rows, cols]);
    if (bias) shapes.set(`${name}.bias`, [cols]);
  };
  const plan = layerPlan(spec);
  for (const layer of plan) {
    const block = spec.blocks[layer.block]!;
    if (layer.index > 0 && plan[layer.index - 1]!.block !== layer.block) {
      const prevWidth = spec.blocks[layer.block - 1]!.width;
      if (prevWidth !== layer.width) linear(`block_proj.${layer.block}`, prevWidth, layer.width, block.outputBias);
    }
    if (!layer.ownsWeights) continue;
    const E = layer.width;
    const A = attentionWidthOf(block);
    const Akv = kvWidthOf(block);
    const F = layer.ffn;
    const p = layer.prefix;
    const layernorm = block.norm === 'layernorm';
    norm(`${p}.ln1`, E, layernorm);
    linear(`${p}.attn.q`, E, A, block.qkvBias);
    linear(`${p}.attn.k`, E, Akv, block.qkvBias);
    linear(`${p}.attn.v`, E, Akv, block.qkvBias);
    linear(`${p}.attn.out`, A, E, block.outputBias);
    norm(`${p}.ln2`, E, layernorm);
    if (block.mlp === 'swiglu') linear(`${p}.ffn.gate`, E, F, block.outputBias);
    linear(`${p}.ffn.up`, E, F, block.outputBias);
    linear(`${p}.ffn.down`, F, E, block.outputBias);
  }
  const lastBlock = spec.blocks[spec.blocks.length - 1]!;
  const last = lastBlock.width;
  norm('final_ln', last, lastBlock.norm === 'layernorm');
  if (spec.tiedHead) {
    if (last !== eEmb) shapes.set('project_out.weight', [last, eEmb]);
  } else {
    shapes.set('lm_head.weight', [last, V]);
  }
  return shapes;
}

/** Number of parameters the native weights of a spec hold (same conventions as the accounting). */
export function countWeightElements(spec: ArchSpec): number {
  let n = 0;
  for (const shape of expectedWeightShapes(spec).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}


function fillNormal(out: Float32Array, std: number, rand: () => number): void {
  // Box-Muller, two values per pair of uniforms.
  for (let i = 0; i < out.length; i += 2) {
    const u1 = 1 - rand();
    const u2 = rand();
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    const th = 2 * Math.PI * u2;
    out[i] = r * Math.cos(th);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(th);
  }
}

/**
 * Seeded GPT-2-scheme initialisation (Radford et al. 2019; HF GPT2PreTrainedModel._init_weights):
 * weights ~ N(0, 0.02), residual projections ~ N(0, 0.02/sqrt(2 * nLayers)), LayerNorm and RMSNorm
 * gains 1, all biases and LayerNorm shifts 0 (the SwiGLU gate is initialised like up). Same spec and
 * seed give the same bytes.
 */
export function initWeights(spec: ArchSpec, seed = 0): DecoderWeights {
  const rand = mulberry32(seed);
  const nLayers = layerPlan(spec).length;
  const residualStd = 0.02 / Math.sqrt(2 * nLayers);
  const weights: DecoderWeights = new Map();
  for (const [name, shape] of expectedWeightShapes(spec)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/\.(ln1|ln2)\.weight$|^final_ln\.weight$/.test(name)) data.fill(1);
    else if (name.endsWith('.bias')) {
      // zeros
    } else fillNormal(data, isResidualProjection(name) ? residualStd : 0.02, rand);
    weights.set(name, { data, shape });
  }
  return weights;
}

/** Checks that `weights` has exactly the spec's tensors with the right shapes; names the first offender. */
export function validateWeights(spec: ArchSpec, weights: DecoderWeights): void {
  const expected = expectedWeightShapes(spec);
  for (const [name, shape] of expected) {
    const w = weights.get(name);
    if (!w) {
      throw new ModelError(`weights are missing tensor "${name}" (shape [${shape.join(', ')}]) that the spec needs`, { code: 'MODEL_WEIGHTS' });
    }
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError(`tensor "${name}" has shape [${w.shape.join(', ')}]; the spec needs [${shape.join(', ')}]`, { code: 'MODEL_WEIGHTS' });
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (w.data.length !== count) {
      throw new ModelError(`tensor "${name}" holds ${w.data.length} values; shape [${shape.join(', ')}] needs ${count}`, { code: 'MODEL_WEIGHTS' });
    }
  }
  for (const name of weights.keys()) {
    if (!expected.has(name)) {
      throw new ModelError(`weights have tensor "${name}" that the spec does not use; expected only: ${[...expected.keys()].slice(0, 8).join(', ')}, ...`, { code: 'MODEL_WEIGHTS' });
    }
  }
}
