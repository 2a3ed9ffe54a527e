// Test helper: runs a FleetLM/Optimum-style decoder ONNX model through onnxruntime-node directly
// (the runtime module has its own tests), feeding and collecting the KV cache.
import ort from 'onnxruntime-node';
import type { ArchSpec } from '../../../models/arch/spec.ts';
import { layerPlan, type DecoderWeights } from '../../../models/arch/weights.ts';
import { encodeOnnxModel, type ModelProto } from '../../../models/onnx/proto.ts';
import type { LayerCache } from '../../reference/decoder-forward.ts';

export interface StepInput {
  inputIds: number[][];
  positionIds: number[][];
  attentionMask: number[][];
  past: LayerCache[];
}

export interface StepOutput {
  logits: Float32Array;
  dims: readonly number[];
  present: LayerCache[];
}

/** Creates a session (1 thread to stay light in tests; all graph optimizations unless told). */
export async function sessionFor(
  model: ModelProto | string,
  level: 'disabled' | 'basic' | 'extended' | 'all' = 'all',
): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: level };
  return typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(encodeOnnxModel(model), options);
}

const i64 = (rows: number[][]): ort.Tensor =>
  new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]?.length ?? 0]);

/** Empty caches for every layer of a spec (past length 0); a cache has the layer's kvHeads heads. */
export function emptyCache(spec: ArchSpec): LayerCache[] {
  return layerPlan(spec).map((l) => ({ key: new Float32Array(0), value: new Float32Array(0), heads: l.kvHeads, headDim: l.headDim, length: 0 }));
}

/** Runs one step; `batch` is taken from inputIds. */
export async function runStep(session: ort.InferenceSession, input: StepInput): Promise<StepOutput> {
  const batch = input.inputIds.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(input.inputIds),
    position_ids: i64(input.positionIds),
    attention_mask: i64(input.attentionMask),
  };
  input.past.forEach((c, i) => {
    const dims = [batch, c.heads, c.length, c.headDim];
    feeds[`past_key_values.${i}.key`] = new ort.Tensor('float32', c.key, dims);
    feeds[`past_key_values.${i}.value`] = new ort.Tensor('float32', c.value, dims);
  });
  const out = await session.run(feeds);
  const present = input.past.map((c, i) => {
    const k = out[`present.${i}.key`]!;
    const v = out[`present.${i}.value`]!;
    return { key: k.data as Float32Array, value: v.data as Float32Array, heads: c.heads, headDim: c.headDim, length: Number(k.dims[2]) };
  });
  return { logits: out.logits!.data as Float32Array, dims: out.logits!.dims, present };
}

/** Largest absolute difference between two arrays (Infinity on length mismatch). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Largest absolute value. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/**
 * Seeded weights that make every part of the network matter: GPT-2 init scaled up (std 0.02 leaves
 * activations so small that a wrong graph could still pass a 1e-4 check) and non-trivial
 * LayerNorm gains and biases.
 */
export function testWeights(weights: DecoderWeights, seed = 7): DecoderWeights {
  let s = seed;
  const next = (): number => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  for (const [name, t] of weights) {
    if (/\.(ln1|ln2)\.|^final_ln\./.test(name) || name.endsWith('.bias')) {
      for (let i = 0; i < t.data.length; i++) t.data[i]! += 0.3 * next();
    } else {
      for (let i = 0; i < t.data.length; i++) t.data[i]! *= 10;
    }
  }
  return weights;
}
