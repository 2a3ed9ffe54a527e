// The pipeline's search step maximises the objective the request names, and the search's default without one.
import { describe, expect, it } from 'vitest';
import { searchShard } from '../../functions/search.ts';
import { PipelineRequestSchema, ShardSchema } from '../../functions/shared/events.ts';
import { DEFAULT_OBJECTIVE } from '../../models/search/search.ts';
import { TINY_REQUEST, tinyShard } from './fixture.ts';

describe('pipeline search objective', () => {
  it('passes the request objective to the search, and defaults to the search default', () => {
    const shard = tinyShard();
    expect(searchShard(shard).objective).toBe(DEFAULT_OBJECTIVE);
    const entropy = searchShard(ShardSchema.parse({ ...shard, search: { ...shard.search, objective: 'entropy' } }));
    expect(entropy.objective).toBe('entropy');
    expect(entropy.settings.objective).toBe('entropy');
  });

  it('refuses an unknown objective in a request', () => {
    expect(() => PipelineRequestSchema.parse({ ...TINY_REQUEST, search: { ...TINY_REQUEST.search, objective: 'accuracy' } })).toThrow(/objective/);
  });
});
