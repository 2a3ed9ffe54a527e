// Step "compress": replaces the token embedding of the built model with a compressed one
// (tensor-train rows by default) and uploads the rewritten model under .../compressed/.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { compressEmbedding } from '../models/compression/auto.ts';
import { extractEmbedding, rewriteEmbedding } from '../models/compression/onnx-rewrite.ts';
import { loadOnnxModel, saveOnnxModel } from '../models/onnx/proto.ts';
import { quantizeModel } from '../models/quantization/onnx-quantize.ts';
import { BuildOutputSchema, shardPrefix, type CompressOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { s3Client } from './shared/env.ts';
import { downloadPrefix, scratchDir, uploadDir } from './shared/s3.ts';

/** Files of the built bundle that the compressed model keeps as they are. */
const CARRIED_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation.json'];

async function copyCarried(from: string, to: string): Promise<void> {
  for (const name of CARRIED_FILES) {
    if ((await fs.stat(path.join(from, name)).catch(() => undefined))?.isFile()) await fs.copyFile(path.join(from, name), path.join(to, name));
  }
}

export const handler = defineHandler('compress', BuildOutputSchema, async (input, env): Promise<CompressOutput> => {
  const s3 = s3Client(env);
  const inDir = await scratchDir(env.FLEETLM_TMP, 'compress-in');
  const outDir = await scratchDir(env.FLEETLM_TMP, 'compress-out');
  const embDir = await scratchDir(env.FLEETLM_TMP, 'compress-embedding');
  try {
    await downloadPrefix(s3, env.ARTIFACTS_BUCKET, input.build.modelPrefix, inDir);
    const model = loadOnnxModel(path.join(inDir, 'model.onnx'));
    const { site, matrix } = extractEmbedding(model);
    // One worker: the row workers are a separate module file that a single-file bundle does not carry.
    const outcome = await compressEmbedding(matrix, site.vocab, site.dim, {
      method: input.compression.method,
      ratio: input.compression.ratio,
      workers: 1,
      seed: input.seed,
    });
    const rewritten = rewriteEmbedding(model, outcome.embedding, { tiedHead: 'reconstruct' });
    // Compress the embedding first, then quantize: the quantizer leaves the compressed factors in float.
    const q = input.compression.quantize;
    let embeddingModelPrefix: string | undefined;
    let quantization: CompressOutput['compress']['quantization'];
    if (q) {
      await saveOnnxModel(rewritten.model, path.join(embDir, 'model.onnx'));
      await copyCarried(inDir, embDir);
      embeddingModelPrefix = `${shardPrefix(input.runId, input.shardId)}compressed-embedding/`;
      await uploadDir(s3, env.ARTIFACTS_BUCKET, embDir, embeddingModelPrefix);
      const quantized = quantizeModel(rewritten.model, q);
      await saveOnnxModel(quantized.model, path.join(outDir, 'model.onnx'));
      quantization = { ...q, weights: quantized.weights.length };
    } else {
      await saveOnnxModel(rewritten.model, path.join(outDir, 'model.onnx'));
    }
    await fs.copyFile(path.join(inDir, 'arch.json'), path.join(outDir, 'arch.json'));
    // The tokenizer and generation defaults travel with every model evaluate and publish read.
    await copyCarried(inDir, outDir);
    await writeJsonAtomic(path.join(outDir, 'compression.json'), { ...outcome.report, why: outcome.why, ...(quantization ? { quantization } : {}) });
    const modelPrefix = `${shardPrefix(input.runId, input.shardId)}compressed/`;
    const { files, bytes } = await uploadDir(s3, env.ARTIFACTS_BUCKET, outDir, modelPrefix);
    return {
      ...input,
      compress: {
        modelPrefix,
        modelBytes: bytes,
        files,
        method: outcome.report.method,
        embeddingCompressionRatio: outcome.report.ratio,
        relativeError: outcome.report.relativeError,
        ...(embeddingModelPrefix ? { embeddingModelPrefix } : {}),
        ...(quantization ? { quantization } : {}),
      },
    };
  } finally {
    await fs.rm(inDir, { recursive: true, force: true });
    await fs.rm(outDir, { recursive: true, force: true });
    await fs.rm(embDir, { recursive: true, force: true });
  }
});
