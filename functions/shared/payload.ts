// How much a pipeline run puts in its Step Functions state. The Distributed Map's result (one EvaluateOutput
// per shard) travels inline to the merge step, and a state payload stops at 256 KiB, so a plan is refused up
// front when its worst-case result would not fit, instead of failing after hours of shard work.
// https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html (maximum input or output size: 256 KiB)
import type { EvaluateOutput, PlanOutput, Shard } from './events.ts';

/** Step Functions' limit on a state's input or output, bytes of UTF-8. */
export const STATE_PAYLOAD_LIMIT_BYTES = 256 * 1024;
/** Shards a request may ask for; the plan is also measured (wide search settings make each shard larger). */
export const MAX_PIPELINE_SHARDS = 150;

const WORST_NUMBER = 1.2345678901234567e123;

/** The largest EvaluateOutput a shard can become: step summaries with full-length keys and numbers. */
export function worstCaseEvaluated(shard: Shard): EvaluateOutput {
  const prefix = `runs/${shard.runId}/${shard.shardId}/`;
  return {
    ...shard,
    search: { specKey: `${prefix}search-result.json`, parameters: WORST_NUMBER, forwardFlops: WORST_NUMBER, decodeMemoryBytes: WORST_NUMBER, entropy: WORST_NUMBER, latencyMs: WORST_NUMBER },
    build: { modelPrefix: `${prefix}base/`, modelBytes: Number.MAX_SAFE_INTEGER, files: ['model.onnx', 'model.onnx.data'] },
    compress: {
      modelPrefix: `${prefix}compressed/`,
      modelBytes: Number.MAX_SAFE_INTEGER,
      files: ['model.onnx', 'model.onnx.data'],
      method: shard.compression.method,
      embeddingCompressionRatio: WORST_NUMBER,
      relativeError: WORST_NUMBER,
    },
    evaluate: { tokens: Number.MAX_SAFE_INTEGER, baselinePerplexity: WORST_NUMBER, compressedPerplexity: WORST_NUMBER, qualityDrop: WORST_NUMBER },
  };
}

/** Bytes of the state the merge step receives at worst: the request plus every shard's EvaluateOutput. */
export function worstCaseMapResultBytes(plan: PlanOutput): number {
  return Buffer.byteLength(JSON.stringify({ request: plan.request, shards: plan.shards.map(worstCaseEvaluated) }));
}

/** The larger of the two inline states a plan makes: the Map's input (the plan) and its result. */
export function worstCaseStateBytes(plan: PlanOutput): number {
  return Math.max(Buffer.byteLength(JSON.stringify(plan)), worstCaseMapResultBytes(plan));
}
