// The pipeline's search step with the fleet's measured table: a shard naming a merged table under
// latency/ searches against it (the result says "measured"); a key outside latency/ is refused.
import { describe, expect, it } from 'vitest';
import { searchShard } from '../../functions/search.ts';
import { ShardSchema } from '../../functions/shared/events.ts';
import { parseLatencyTable } from '../../models/search/latency-table.ts';

const shard = (budget: Record<string, unknown>) =>
  ShardSchema.parse({
    runId: 'r1',
    shardId: 's-1',
    modelId: 'm',
    version: '1.0.0',
    model: { kind: 'random-weights', benchmarkOnly: true },
    budget: { deviceClass: 'rpi4', memoryBudgetBytes: 64e6, flopsBudget: 1e12, ...budget },
    seed: 1,
    vocabSize: 4096,
    contextLength: 128,
    search: { iterations: 2000, population: 64, blocks: 2, maxLayersPerBlock: 8, widths: [128, 256], headDim: 64 },
    compression: { method: 'svd', ratio: 2 },
    evalTokens: 100,
  });

const table = parseLatencyTable({
  format: 'fleetlm/layer-latency@1',
  device: 'rpi4',
  seqLen: 128,
  layers: [{ width: 256, ffnWidth: 1024, heads: 4, headDim: 64, ms: 0.8 }],
  heads: [{ width: 128, vocabSize: 4096, ms: 2 }],
});

describe('search step with a fleet table', () => {
  it('predicts latency from the measured table when the shard names one, else from the roofline', () => {
    const s = shard({ latencyTableKey: 'latency/fleet-a/rpi4-fp32.json' });
    expect(searchShard(s, table).device?.latencyModel).toBe('measured');
    expect(searchShard(shard({})).device?.latencyModel).toBe('roofline');
  });

  it('refuses a table key outside latency/', () => {
    expect(() => shard({ latencyTableKey: 'models/x/manifest.json' })).toThrow(/latency\//);
  });
});
