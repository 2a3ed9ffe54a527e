// Step "merge": after the Distributed Map, reads the shard results its ResultWriter exported to S3, picks the
// best shard per device class (lowest compressed perplexity within budget) and records a run summary in S3.
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';
import { EvaluateOutputSchema, MergeInputSchema, ShardSchema, type Candidate, type EvaluateOutput, type MergeOutput, type PipelineRequest, type Shard } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { s3Client } from './shared/env.ts';
import { readMapResults, type FailedChild } from './shared/map-results.ts';
import { getJson, putJson } from './shared/s3.ts';

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

/** What merge decides from: the request, the planned shards and the Map's results. */
export interface ShardOutcomes {
  request: PipelineRequest;
  planned: readonly Shard[];
  succeeded: readonly EvaluateOutput[];
  failed: readonly FailedChild[];
}

function describeFailure(f: FailedChild): string {
  const shard = f.input && typeof f.input === 'object' && 'shardId' in f.input ? String((f.input as { shardId: unknown }).shardId) : 'unknown shard';
  return `${shard} ${f.status}${f.error ? ` (${f.error}${f.cause ? `: ${f.cause.slice(0, 200)}` : ''})` : ''}`;
}

/**
 * Merges shard results into the gate's input. Every result must be a planned shard of this run, and every
 * device class of the plan needs one successful shard (the Map may tolerate failed shards, merge does not
 * tolerate a class without a model).
 */
export function mergeShards(outcomes: ShardOutcomes): Omit<MergeOutput, 'summaryKey'> {
  const { request, planned, succeeded, failed } = outcomes;
  const plannedIds = new Set(planned.map((s) => s.shardId));
  const foreign = succeeded.find((s) => s.runId !== request.runId || !plannedIds.has(s.shardId));
  if (foreign) throw new ValidationError(`shard ${foreign.shardId} of run ${foreign.runId} is not a planned shard of run ${request.runId}`);
  const covered = new Set(succeeded.map((s) => s.budget.deviceClass));
  const missing = [...new Set(planned.map((s) => s.budget.deviceClass))].filter((c) => !covered.has(c)).sort();
  if (missing.length > 0) {
    throw new ValidationError(
      `no shard of device class ${missing.join(', ')} succeeded (${succeeded.length} of ${planned.length} shards succeeded; failed: ${failed.slice(0, 5).map(describeFailure).join('; ') || 'none reported'})`,
    );
  }
  const candidates = chooseCandidates(succeeded);
  return { request, candidates, maxQualityDrop: Math.max(...candidates.map((c) => c.evaluate.qualityDrop)) };
}

export const handler = defineHandler('merge', MergeInputSchema, async (input, env): Promise<MergeOutput> => {
  const s3 = s3Client(env);
  const runPrefix = `runs/${input.request.runId}/`;
  const { Bucket: bucket, Key: manifestKey } = input.shardResults.ResultWriterDetails;
  // Read only this run's objects in this deployment's bucket, whatever the state says.
  if (bucket !== env.ARTIFACTS_BUCKET) throw new ValidationError(`Map results are in bucket ${bucket}, not the artifacts bucket ${env.ARTIFACTS_BUCKET}`);
  for (const key of [input.shardsKey, manifestKey]) {
    if (!key.startsWith(runPrefix)) throw new ValidationError(`${key} is not under ${runPrefix}, the run's prefix`);
  }
  const planned = await getJson(s3, bucket, input.shardsKey, z.array(ShardSchema));
  const results = await readMapResults(s3, bucket, manifestKey, EvaluateOutputSchema);
  const merged = mergeShards({ request: input.request, planned, succeeded: results.succeeded, failed: results.failed });
  const summaryKey = `${runPrefix}summary.json`;
  await putJson(s3, bucket, summaryKey, { ...merged, mapRunArn: results.mapRunArn, shards: results.succeeded, failed: results.failed, pending: results.pending });
  return { ...merged, summaryKey };
});
