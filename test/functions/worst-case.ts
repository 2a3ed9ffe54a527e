// Test stand-ins for the shard steps (search, build, compress, evaluate) that return the largest outputs their
// schemas allow in practice (full-length keys, 17-digit numbers, both evaluation steps), validated by the same
// schemas the next step parses with, so a payload measured with them is an upper bound.
import {
  BuildOutputSchema,
  CompressOutputSchema,
  EvaluateOutputSchema,
  SearchOutputSchema,
  ShardSchema,
  shardPrefix,
  type BuildOutput,
  type CompressOutput,
  type EvaluateOutput,
  type SearchOutput,
} from '../../functions/shared/events.ts';

const WORST = 1.2345678901234567e123;

export function worstSearch(input: unknown): SearchOutput {
  const shard = ShardSchema.parse(input);
  const prefix = shardPrefix(shard.runId, shard.shardId);
  return SearchOutputSchema.parse({ ...shard, search: { specKey: `${prefix}search-result.json`, parameters: WORST, forwardFlops: WORST, decodeMemoryBytes: WORST, entropy: WORST, latencyMs: WORST } });
}

export function worstBuild(input: unknown): BuildOutput {
  const s = SearchOutputSchema.parse(input);
  return BuildOutputSchema.parse({ ...s, build: { modelPrefix: `${shardPrefix(s.runId, s.shardId)}base/`, modelBytes: Number.MAX_SAFE_INTEGER, files: ['arch.json', 'model.onnx', 'model.onnx.data'] } });
}

export function worstCompress(input: unknown): CompressOutput {
  const b = BuildOutputSchema.parse(input);
  const prefix = shardPrefix(b.runId, b.shardId);
  return CompressOutputSchema.parse({
    ...b,
    compress: {
      modelPrefix: `${prefix}compressed/`,
      modelBytes: Number.MAX_SAFE_INTEGER,
      files: ['arch.json', 'compression.json', 'model.onnx', 'model.onnx.data'],
      method: 'tt-matrix',
      embeddingCompressionRatio: WORST,
      relativeError: WORST,
      embeddingModelPrefix: `${prefix}compressed-embedding/`,
      quantization: { bits: 8, blockSize: 4096, symmetric: false, weights: Number.MAX_SAFE_INTEGER },
    },
  });
}

/** Worst-case evaluation, except qualityDrop, which is `qualityDrop` (so the gate's path can be chosen). */
export function worstEvaluate(input: unknown, qualityDrop = 0.012345678901234567): EvaluateOutput {
  const c = CompressOutputSchema.parse(input);
  const step = (name: string) => ({ step: name, perplexityBefore: WORST, perplexityAfter: WORST, change: WORST });
  return EvaluateOutputSchema.parse({
    ...c,
    evaluate: {
      tokens: Number.MAX_SAFE_INTEGER,
      baselinePerplexity: WORST,
      compressedPerplexity: WORST,
      qualityDrop,
      steps: [step(`embedding tt-matrix ${WORST}x`), step('quantize int8 block 4096 asym')],
    },
  });
}
