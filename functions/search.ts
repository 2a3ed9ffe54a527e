// Step "search": the architecture search (MeRino's, objective per the request) for one shard's budget
// (random-weights runs), or the figures of the run's own model against the budget (trained models: nothing
// to search); the result is stored in S3 and only its figures travel on in the state.
import { z } from 'zod';
import { DEVICE_IDS } from '../models/search/device-profiles.ts';
import { searchArchitecture, type SearchResult } from '../models/search/search.ts';
import { readLatencyTable, type LayerLatencyTable } from '../models/search/latency-table.ts';
import { ShardSchema, shardPrefix, type SearchOutput, type Shard } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { s3Client } from './shared/env.ts';
import { getJson, putJson } from './shared/s3.ts';
import { archCosts } from '../models/arch/accounting.ts';
import { networkEntropy } from '../models/entropy/network-entropy.ts';
import { inputModelSpec } from './shared/input-model.ts';

/**
 * Runs the search a shard asks for (synchronous and seeded: a retry finds the same spec); with the
 * class's fleet-measured table, latency comes from it (roofline where it has no entry).
 */
export function searchShard(shard: Shard, latencyTable?: LayerLatencyTable): SearchResult {
  const cls = shard.budget.deviceClass;
  return searchArchitecture({
    budgets: { decodeMemoryBytes: shard.budget.memoryBudgetBytes, flops: shard.budget.flopsBudget, latencyMs: shard.budget.latencyMs },
    // A class named like a shipped device profile gets latency predictions for that device.
    device: DEVICE_IDS.includes(cls) ? cls : undefined,
    ...(latencyTable ? { latencyTable } : {}),
    seed: shard.seed,
    objective: shard.search.objective,
    vocabSize: shard.vocabSize,
    contextLength: shard.contextLength,
    iterations: shard.search.iterations,
    population: shard.search.population,
    blocks: shard.search.blocks,
    maxLayersPerBlock: shard.search.maxLayersPerBlock,
    widths: shard.search.widths,
    headDim: shard.search.headDim,
  });
}

export const handler = defineHandler('search', ShardSchema, async (shard, env): Promise<SearchOutput> => {
  if (shard.model.kind !== 'random-weights') {
    const s3 = s3Client(env);
    const spec = await inputModelSpec(s3, env.ARTIFACTS_BUCKET, shard.model);
    const costs = archCosts(spec, spec.contextLength);
    const entropy = networkEntropy(spec).entropy;
    const specKey = `${shardPrefix(shard.runId, shard.shardId)}search-result.json`;
    await putJson(s3, env.ARTIFACTS_BUCKET, specKey, { spec, source: shard.model, params: costs.params, flops: costs.flops, decodeMemoryBytes: costs.decodeMemoryBytes, entropy });
    return { ...shard, search: { specKey, parameters: costs.params, forwardFlops: costs.flops, decodeMemoryBytes: costs.decodeMemoryBytes, entropy, latencyMs: null } };
  }
  const key = shard.budget.latencyTableKey;
  // A merged table `fleetlm latency` wrote, possibly a newer CLI than this pipeline: read tolerantly.
  const table = key ? readLatencyTable(await getJson(s3Client(env), env.ARTIFACTS_BUCKET, key, z.unknown()), `s3://${env.ARTIFACTS_BUCKET}/${key}`) : undefined;
  const result = searchShard(shard, table);
  const specKey = `${shardPrefix(shard.runId, shard.shardId)}search-result.json`;
  await putJson(s3Client(env), env.ARTIFACTS_BUCKET, specKey, result);
  return {
    ...shard,
    search: {
      specKey,
      parameters: result.params,
      forwardFlops: result.flops,
      decodeMemoryBytes: result.decodeMemoryBytes,
      entropy: result.entropy,
      latencyMs: result.latencyMs,
    },
  };
});
