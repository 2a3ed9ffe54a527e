// Step "merge": after the Distributed Map, picks the best shard per device class (lowest
// compressed perplexity within budget) and records a run summary in S3.
import { ValidationError } from '../common/errors.ts';
import { MergeInputSchema, type Candidate, type EvaluateOutput, type MergeInput, type MergeOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { s3Client } from './shared/env.ts';
import { putJson } from './shared/s3.ts';

/** Best shard per device class; ties go to the smaller model. */
export function chooseCandidates(shards: readonly EvaluateOutput[]): Candidate[] {
  const best = new Map<string, EvaluateOutput>();
  for (const s of shards) {
    const cls = s.budget.deviceClass;
    const cur = best.get(cls);
    const better =
      !cur ||
      s.evaluate.compressedPerplexity < cur.evaluate.compressedPerplexity ||
      (s.evaluate.compressedPerplexity === cur.evaluate.compressedPerplexity && s.search.parameters < cur.search.parameters);
    if (better) best.set(cls, s);
  }
  return [...best.values()]
    .sort((a, b) => a.budget.deviceClass.localeCompare(b.budget.deviceClass))
    .map((s) => ({
      deviceClass: s.budget.deviceClass,
      modelId: s.modelId,
      version: s.version,
      shardId: s.shardId,
      specKey: s.search.specKey,
      modelPrefix: s.compress.modelPrefix,
      parameters: s.search.parameters,
      evaluate: s.evaluate,
      embeddingCompressionRatio: s.compress.embeddingCompressionRatio,
      seed: s.seed,
    }));
}

/** Merges shard results into the gate's input. */
export function mergeShards(input: MergeInput): Omit<MergeOutput, 'summaryKey'> {
  const foreign = input.shards.find((s) => s.runId !== input.request.runId);
  if (foreign) throw new ValidationError(`shard ${foreign.shardId} belongs to run ${foreign.runId}, not ${input.request.runId}`);
  const candidates = chooseCandidates(input.shards);
  return { request: input.request, candidates, maxQualityDrop: Math.max(...candidates.map((c) => c.evaluate.qualityDrop)) };
}

export const handler = defineHandler('merge', MergeInputSchema, async (input, env): Promise<MergeOutput> => {
  const merged = mergeShards(input);
  const summaryKey = `runs/${input.request.runId}/summary.json`;
  await putJson(s3Client(env), env.ARTIFACTS_BUCKET, summaryKey, { ...merged, shards: input.shards });
  return { ...merged, summaryKey };
});
