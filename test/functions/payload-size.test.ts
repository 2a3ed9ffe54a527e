// Step Functions state sizes of a pipeline run: the Distributed Map's inline result must fit in 256 KiB, so
// the request and the plan refuse what the machine cannot carry (a 1,000-shard plan, a 3,200-shard request; at most 150 shards).
import { describe, expect, it } from 'vitest';
import { planShards } from '../../functions/plan.ts';
import { PipelineRequestSchema, type Budget } from '../../functions/shared/events.ts';
import { MAX_PIPELINE_SHARDS, STATE_PAYLOAD_LIMIT_BYTES, worstCaseMapResultBytes, worstCaseStateBytes } from '../../functions/shared/payload.ts';
import { TINY_REQUEST } from './fixture.ts';

function budgets(n: number): Budget[] {
  return Array.from({ length: n }, (_, i) => ({ deviceClass: `class-${String(i).padStart(24, '0')}`, memoryBudgetBytes: 2 ** 40, flopsBudget: 1e15, latencyMs: 1234.5 }));
}

describe('pipeline payload sizes', () => {
  it('a 1,000-shard plan would hand the merge step more than 256 KiB (about 1 KB a shard), so planning refuses it', () => {
    const request = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(10), seedsPerBudget: 10 });
    const hundred = planShards(request, {});
    // 1,000 shards as the old bound (200 budgets x 16 seeds) allowed: ten copies of a 100-shard plan, ids made unique.
    const shards = Array.from({ length: 10 }, (_, c) => hundred.shards.map((s) => ({ ...s, shardId: `${s.shardId}-c${c}` }))).flat();
    const bytes = worstCaseMapResultBytes({ request, shards });
    expect(shards).toHaveLength(1000);
    expect(bytes / 1000).toBeGreaterThan(900);
    expect(bytes).toBeGreaterThan(STATE_PAYLOAD_LIMIT_BYTES);
    expect(() => PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(100), seedsPerBudget: 10 })).toThrow(/at most 150 shards/);
  });

  it('the largest request the schema accepts (150 shards, long class names) fits, measured', () => {
    const request = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(75), seedsPerBudget: 2 });
    const plan = planShards(request, {});
    expect(plan.shards).toHaveLength(MAX_PIPELINE_SHARDS);
    expect(worstCaseStateBytes(plan)).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT_BYTES);
  });

  it('refuses a request over 150 shards at the schema, and default budgets over it at plan time', () => {
    expect(() => PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(200), seedsPerBudget: 16 })).toThrow(/at most 150 shards/);
    const request = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: undefined, seedsPerBudget: 16 });
    expect(() => planShards(request, { DEFAULT_BUDGETS: JSON.stringify(budgets(10)) })).toThrow(/160 shards .* at most 150/);
  });

  it('refuses a plan whose wide search settings would not fit, naming the bytes', () => {
    const widths = Array.from({ length: 256 }, (_, i) => 1_000_000 + i);
    const request = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(75), seedsPerBudget: 2, search: { ...TINY_REQUEST.search, widths } });
    expect(() => planShards(request, {})).toThrow(/make a state of \d+ bytes \(the Distributed Map's input or result\); Step Functions carries at most 262144/);
  });
});
