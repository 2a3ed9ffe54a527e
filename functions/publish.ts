// Step "publish": for each candidate that passed the gate, signs its manifest with the KMS key and
// uploads the bundle to models/{modelId}/{version}/ (fleet/publisher.ts), after the same bundle check as
// `fleetlm publish` (the model loads in onnxruntime and generates a token with its tokenizer; this function
// ships onnxruntime for that). Idempotent: a version already published by an earlier attempt is read back.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ValidationError } from '../common/errors.ts';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { judgeQuality, qualityStep, QUALITY_FILE } from '../models/quality/quality-gate.ts';
import { KmsSigner } from '../fleet/kms-signer.ts';
import { modelPrefix } from '../contracts/manifest.ts';
import { isPublished, publishBundle, readPublishedVersion } from '../fleet/publisher.ts';
import { MergeOutputSchema, type PublishOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { kmsClient, s3Client } from './shared/env.ts';
import { downloadPrefix, scratchDir } from './shared/s3.ts';

export const handler = defineHandler('publish', MergeOutputSchema, async (input, env): Promise<PublishOutput> => {
  if (!env.MANIFEST_KEY_ARN) throw new ValidationError('MANIFEST_KEY_ARN is not set: the publish function needs the manifest-signing KMS key');
  const s3 = s3Client(env);
  const signer = new KmsSigner(kmsClient(env), env.MANIFEST_KEY_ARN);
  const published: PublishOutput['published'] = [];
  for (const c of input.candidates) {
    // What the approval request shows for this version (functions/approval.ts).
    const quality = {
      tokens: c.evaluate.tokens,
      baselinePerplexity: c.evaluate.baselinePerplexity,
      perplexity: c.evaluate.compressedPerplexity,
      qualityDrop: c.evaluate.qualityDrop,
      parameters: c.parameters,
      embeddingCompressionRatio: c.embeddingCompressionRatio,
    };
    if (await isPublished(s3, env.ARTIFACTS_BUCKET, c.modelId, c.version)) {
      const v = await readPublishedVersion(s3, env.ARTIFACTS_BUCKET, c.modelId, c.version);
      published.push({
        deviceClass: c.deviceClass,
        modelId: c.modelId,
        version: c.version,
        prefix: modelPrefix(c.modelId, c.version),
        manifestSha256: v.manifestSha256,
        totalBytes: v.manifest.files.reduce((n, f) => n + f.size, 0) + v.manifestBytes.length,
        quality,
      });
      continue;
    }
    const dir = await scratchDir(env.FLEETLM_TMP, 'publish');
    try {
      await downloadPrefix(s3, env.ARTIFACTS_BUCKET, c.modelPrefix, dir);
      await writeJsonAtomic(path.join(dir, 'evaluation.json'), { ...c.evaluate, deviceClass: c.deviceClass, runId: input.request.runId });
      if (env.MAX_QUALITY_DROP !== undefined) {
        // The gate record travels with the bundle; publishBundle re-judges it and refuses one over the limit.
        const e = c.evaluate;
        const steps = (e.steps ?? [{ step: 'compression', perplexityBefore: e.baselinePerplexity, perplexityAfter: e.compressedPerplexity }]).map((s) => qualityStep(s.step, s.perplexityBefore, s.perplexityAfter));
        const record = judgeQuality({ text: input.request.evalTextKey ?? 'default evaluation text', tokens: e.tokens, baselinePerplexity: e.baselinePerplexity, maxPerplexityIncrease: env.MAX_QUALITY_DROP, steps });
        await writeJsonAtomic(path.join(dir, QUALITY_FILE), record);
      }
      const r = await publishBundle({
        modelDir: dir,
        modelId: c.modelId,
        version: c.version,
        s3,
        bucket: env.ARTIFACTS_BUCKET,
        signer,
        overrides: { lineage: { searchSeed: c.seed, sourceModel: `run ${input.request.runId} shard ${c.shardId}` } },
      });
      published.push({ deviceClass: c.deviceClass, modelId: r.modelId, version: r.version, prefix: r.prefix, manifestSha256: r.manifestSha256, totalBytes: r.totalBytes, quality });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
  return { request: input.request, published };
});
