// Native decoder weights that stay on disk until needed: every shape known up front, each tensor
// loaded on demand, so building and saving a large model holds about one tensor at a time.
import { ModelError } from '../../common/errors.ts';
import type { ArchSpec } from './spec.ts';
import { expectedWeightShapes, type DecoderWeights } from './weights.ts';

/** A lazily loaded set of native weights (see models/arch/weights.ts for the names). */
export interface WeightSource {
  /** Native name -> shape of every tensor the source holds. */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /** Loads one tensor as float32: a fresh array the caller drops once written. */
  load(name: string): Float32Array;
}

/** True for a WeightSource, false for an in-memory DecoderWeights map. */
export function isWeightSource(w: DecoderWeights | WeightSource): w is WeightSource {
  return !(w instanceof Map);
}

/** Checks a source's names and shapes against the spec (the counterpart of validateWeights). */
export function validateWeightSource(spec: ArchSpec, source: WeightSource): void {
  const expected = expectedWeightShapes(spec);
  for (const [name, shape] of expected) {
    const got = source.shapes.get(name);
    if (!got) throw new ModelError(`weights are missing tensor "${name}" (shape [${shape.join(', ')}]) that the spec needs`, { code: 'MODEL_WEIGHTS' });
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new ModelError(`tensor "${name}" has shape [${got.join(', ')}]; the spec needs [${shape.join(', ')}]`, { code: 'MODEL_WEIGHTS' });
    }
  }
  for (const name of source.shapes.keys()) {
    if (!expected.has(name)) throw new ModelError(`weights have tensor "${name}" that the spec does not use`, { code: 'MODEL_WEIGHTS' });
  }
}

/** Loads every tensor of a source into memory (small models, tests). */
export function materializeWeights(source: WeightSource): DecoderWeights {
  const out: DecoderWeights = new Map();
  for (const [name, shape] of source.shapes) out.set(name, { data: source.load(name), shape: [...shape] });
  return out;
}
