// The model steps (search, build, compress, evaluate) as Lambda handlers, one after another on a
// tiny shard, with every S3 call going to the local S3-protocol server.
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler as search } from '../../functions/search.ts';
import { handler as build } from '../../functions/build.ts';
import { handler as compress } from '../../functions/compress.ts';
import { handler as evaluate } from '../../functions/evaluate.ts';
import { ValidationError } from '../../common/errors.ts';
import type { BuildOutput, CompressOutput, EvaluateOutput, SearchOutput } from '../../functions/shared/events.ts';
import { startHandlerFixture, tinyShard, type HandlerFixture } from './fixture.ts';

let fx: HandlerFixture;
let s3: S3Client;
beforeAll(async () => {
  fx = await startHandlerFixture();
  s3 = new S3Client({
    region: fx.hub.endpoints.region,
    endpoint: fx.hub.endpoints.s3.endpoint,
    forcePathStyle: true,
    credentials: fx.hub.endpoints.credentials,
  });
});
afterAll(async () => {
  await fx?.stop();
});

async function keys(prefix: string): Promise<string[]> {
  const out = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

describe('model steps', () => {
  let searched: SearchOutput;
  let built: BuildOutput;
  let compressed: CompressOutput;

  it('given a shard, when search runs, then the spec within budget is stored in S3 and its figures returned', async () => {
    searched = await search(tinyShard());
    expect(searched.search.specKey).toBe('runs/test-run-1/rpi5-b0-s0/search-result.json');
    expect(await keys('runs/test-run-1/rpi5-b0-s0/')).toEqual(['runs/test-run-1/rpi5-b0-s0/search-result.json']);
    expect(searched.search.decodeMemoryBytes).toBeLessThanOrEqual(16_000_000);
    expect(searched.search.forwardFlops).toBeLessThanOrEqual(2e9);
    expect(searched.search.latencyMs).toBeGreaterThan(0); // rpi5 is a shipped device profile
    // Seeded: a retry of the step finds the same architecture.
    expect((await search(tinyShard())).search).toEqual(searched.search);
  });

  it('given a search result, when build runs, then model.onnx and arch.json are uploaded under base/', async () => {
    built = await build(searched);
    expect(built.build.modelPrefix).toBe('runs/test-run-1/rpi5-b0-s0/base/');
    expect(built.build.files).toEqual(['arch.json', 'model.onnx']);
    expect(await keys(built.build.modelPrefix)).toEqual(['runs/test-run-1/rpi5-b0-s0/base/arch.json', 'runs/test-run-1/rpi5-b0-s0/base/model.onnx']);
    expect(built.build.modelBytes).toBeGreaterThan(searched.search.parameters * 4 * 0.9);
  });

  it('given a built model, when compress runs at ratio 2, then a smaller model with its compression report is uploaded', async () => {
    compressed = await compress(built);
    expect(compressed.compress.files).toEqual(['arch.json', 'compression.json', 'model.onnx']);
    expect(compressed.compress.method).toBe('tt-row');
    expect(compressed.compress.embeddingCompressionRatio).toBeGreaterThanOrEqual(2);
    expect(compressed.compress.modelBytes).toBeLessThan(built.build.modelBytes);
  });

  it('given both models, when evaluate runs, then both perplexities and their relative change are reported', async () => {
    const evaluated: EvaluateOutput = await evaluate(compressed);
    const e = evaluated.evaluate;
    expect(e.tokens).toBeGreaterThan(10);
    expect(e.baselinePerplexity).toBeGreaterThan(1);
    expect(e.compressedPerplexity).toBeGreaterThan(1);
    expect(e.qualityDrop).toBeCloseTo((e.compressedPerplexity - e.baselinePerplexity) / e.baselinePerplexity, 12);
  });

  it('given quantization settings, when compress and evaluate run, then the quantized model ships and each step reports its perplexity change', async () => {
    const quantizing = { ...built, compression: { ...built.compression, quantize: { bits: 4 as const, blockSize: 32, symmetric: false } } };
    const q = await compress(quantizing);
    expect(q.compress.quantization).toMatchObject({ bits: 4, blockSize: 32, symmetric: false });
    expect(q.compress.quantization!.weights).toBeGreaterThan(0);
    expect(q.compress.embeddingModelPrefix).toBe('runs/test-run-1/rpi5-b0-s0/compressed-embedding/');
    expect(await keys(q.compress.embeddingModelPrefix!)).toEqual(['runs/test-run-1/rpi5-b0-s0/compressed-embedding/model.onnx']);
    // int4 layer weights; the compressed embedding's factors (most of this tiny model) stay float.
    expect(q.compress.modelBytes).toBeLessThan(compressed.compress.modelBytes);
    const e = (await evaluate(q)).evaluate;
    expect(e.steps!.map((s) => s.step)).toEqual([expect.stringMatching(/^embedding tt-row/), 'quantize int4 block 32 asym']);
    expect(e.steps![0]!.perplexityBefore).toBe(e.baselinePerplexity);
    expect(e.steps![1]!.perplexityBefore).toBe(e.steps![0]!.perplexityAfter);
    expect(e.steps![1]!.perplexityAfter).toBe(e.compressedPerplexity);
  });

  it('given a block size MatMulNBits cannot run, when compress is invoked, then it fails naming the field', async () => {
    const bad = { ...built, compression: { ...built.compression, quantize: { bits: 4, blockSize: 48 } } };
    await expect(compress(bad)).rejects.toThrow(/compression.quantize.blockSize: must be a power of two >= 16/);
  });

  it('given an event missing a field, when a step is invoked, then it fails with a ValidationError naming the field', async () => {
    const { budget: _drop, ...rest } = tinyShard();
    await expect(search(rest)).rejects.toThrow(ValidationError);
    await expect(search(rest)).rejects.toThrow(/search event: budget/);
  });
});
