// The trainable parameters of a decoder in one flat buffer (values and gradients), with a view per
// native tensor name, so the optimizer and gradient clipping run over a single array.
import type { ArchSpec } from '../arch/spec.ts';
import { expectedWeightShapes, validateWeights, type DecoderWeights } from '../arch/weights.ts';
import { allocLike, transpose, type FloatArray } from './kernels.ts';

/** One named tensor: views into the flat value and gradient buffers. */
export interface Param {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  value: FloatArray;
  grad: FloatArray;
  /** W^T for matrices, refreshed by `refreshTransposes` after each update (forward GEMMs read it). */
  transposed: FloatArray | undefined;
  /** AdamW decays matrices only; LayerNorm gains and biases are exempt. */
  decay: boolean;
}

/** Flat parameter store keyed by native name, in the spec's canonical order. */
export class ParamStore {
  readonly values: FloatArray;
  readonly grads: FloatArray;
  readonly params: Param[];
  private readonly byName = new Map<string, Param>();

  /** Copies `weights` (validated against the spec) into a fresh store; `dtype` 64 is for gradient checks. */
  constructor(spec: ArchSpec, weights: DecoderWeights, dtype: 32 | 64 = 32) {
    validateWeights(spec, weights);
    const shapes = expectedWeightShapes(spec);
    let total = 0;
    for (const shape of shapes.values()) total += shape.reduce((a, b) => a * b, 1);
    const like = dtype === 64 ? new Float64Array(0) : new Float32Array(0);
    this.values = allocLike(like, total);
    this.grads = allocLike(like, total);
    this.params = [];
    let offset = 0;
    for (const [name, shape] of shapes) {
      const size = shape.reduce((a, b) => a * b, 1);
      const value = this.values.subarray(offset, offset + size);
      value.set(weights.get(name)!.data);
      const p: Param = {
        name,
        shape,
        offset,
        size,
        value,
        grad: this.grads.subarray(offset, offset + size),
        transposed: shape.length === 2 ? allocLike(like, size) : undefined,
        decay: shape.length === 2,
      };
      this.params.push(p);
      this.byName.set(name, p);
      offset += size;
    }
    this.refreshTransposes();
  }

  get size(): number {
    return this.values.length;
  }

  /** The parameter called `name`; throws for a name the spec does not have. */
  get(name: string): Param {
    const p = this.byName.get(name);
    if (!p) throw new Error(`internal: no parameter ${name}`);
    return p;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Recomputes every W^T after the values changed. */
  refreshTransposes(): void {
    for (const p of this.params) if (p.transposed) transpose(p.value, p.transposed, p.shape[0]!, p.shape[1]!);
  }

  zeroGrads(): void {
    this.grads.fill(0);
  }

  /** A float32 copy of the weights under native names (what checkpoints and the ONNX builder take). */
  toWeights(): DecoderWeights {
    const out: DecoderWeights = new Map();
    for (const p of this.params) out.set(p.name, { data: Float32Array.from(p.value), shape: [...p.shape] });
    return out;
  }
}
