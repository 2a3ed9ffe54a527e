// Step "build": the run's model as an ONNX decoder with its tokenizer, uploaded with its arch.json under
// runs/{run}/{shard}/base/: a trained checkpoint or a Hugging Face folder from inputs/, or (benchmarks only)
// the searched architecture with seeded random weights.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { ArchSpecSchema } from '../models/arch/spec.ts';
import { buildModelFile } from '../models/onnx/build-model-file.ts';
import { SearchOutputSchema, shardPrefix, type BuildOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { s3Client } from './shared/env.ts';
import { getJson, scratchDir, uploadDir } from './shared/s3.ts';
import { buildInputModel } from './shared/input-model.ts';

const StoredSearchSchema = z.object({ spec: ArchSpecSchema }).passthrough();

export const handler = defineHandler('build', SearchOutputSchema, async (input, env): Promise<BuildOutput> => {
  const s3 = s3Client(env);
  const dir = await scratchDir(env.FLEETLM_TMP, 'build');
  const scratch = await scratchDir(env.FLEETLM_TMP, 'build-input');
  try {
    if (input.model.kind === 'random-weights') {
      const { spec } = await getJson(s3, env.ARTIFACTS_BUCKET, input.search.specKey, StoredSearchSchema);
      await buildModelFile(spec, { outPath: path.join(dir, 'model.onnx'), seed: input.seed });
      await writeJsonAtomic(path.join(dir, 'arch.json'), spec);
    } else {
      await buildInputModel(s3, env.ARTIFACTS_BUCKET, input.model, scratch, dir);
    }
    const modelPrefix = `${shardPrefix(input.runId, input.shardId)}base/`;
    const { files, bytes } = await uploadDir(s3, env.ARTIFACTS_BUCKET, dir, modelPrefix);
    return { ...input, build: { modelPrefix, modelBytes: bytes, files } };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rm(scratch, { recursive: true, force: true });
  }
});
