// Step "evaluate": perplexity of the built model and after each compression step (embedding, then
// quantization) on the same text, so the quality gate can compare them. The only step that runs
// onnxruntime (through models/runtime).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { assertTokenizerFits, loadLanguageModel, perplexity, tokenizerForModel } from '../models/runtime/index.ts';
import { CompressOutputSchema, type EvaluateOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { DEFAULT_EVAL_TEXT } from './shared/eval-text.ts';
import { s3Client } from './shared/env.ts';
import { downloadPrefix, getBytes, scratchDir } from './shared/s3.ts';

async function perplexityOf(modelPath: string, text: string, maxTokens: number): Promise<{ perplexity: number; tokens: number }> {
  // The tokenizer that ships beside the model (tokenizer.json), else GPT-2's for random-weight benchmarks.
  const tok = await tokenizerForModel(modelPath);
  const model = await loadLanguageModel(modelPath, { allowSpinning: false, tokenizer: tok.tokenizer });
  try {
    assertTokenizerFits(model.info, tok.tokenizer, tok);
    const r = await perplexity(model, text, { maxTokens });
    return { perplexity: r.perplexity, tokens: r.scoredTokens };
  } finally {
    await model.dispose();
  }
}

export const handler = defineHandler('evaluate', CompressOutputSchema, async (input, env): Promise<EvaluateOutput> => {
  const s3 = s3Client(env);
  const text = input.evalTextKey ? (await getBytes(s3, env.ARTIFACTS_BUCKET, input.evalTextKey)).toString('utf8') : DEFAULT_EVAL_TEXT;
  const baseDir = await scratchDir(env.FLEETLM_TMP, 'eval-base');
  const compDir = await scratchDir(env.FLEETLM_TMP, 'eval-compressed');
  try {
    await downloadPrefix(s3, env.ARTIFACTS_BUCKET, input.build.modelPrefix, baseDir);
    await downloadPrefix(s3, env.ARTIFACTS_BUCKET, input.compress.modelPrefix, compDir);
    const base = await perplexityOf(path.join(baseDir, 'model.onnx'), text, input.evalTokens);
    const comp = await perplexityOf(path.join(compDir, 'model.onnx'), text, input.evalTokens);
    const step = (name: string, before: number, after: number) => ({ step: name, perplexityBefore: before, perplexityAfter: after, change: (after - before) / before });
    const embeddingStep = `embedding ${input.compress.method} ${input.compress.embeddingCompressionRatio.toFixed(2)}x`;
    const q = input.compress.quantization;
    let steps = [step(embeddingStep, base.perplexity, comp.perplexity)];
    if (q && input.compress.embeddingModelPrefix) {
      await fs.rm(compDir, { recursive: true, force: true });
      await fs.mkdir(compDir, { recursive: true });
      await downloadPrefix(s3, env.ARTIFACTS_BUCKET, input.compress.embeddingModelPrefix, compDir);
      const emb = await perplexityOf(path.join(compDir, 'model.onnx'), text, input.evalTokens);
      steps = [step(embeddingStep, base.perplexity, emb.perplexity), step(`quantize int${q.bits} block ${q.blockSize} ${q.symmetric ? 'sym' : 'asym'}`, emb.perplexity, comp.perplexity)];
    }
    return {
      ...input,
      evaluate: {
        tokens: base.tokens,
        baselinePerplexity: base.perplexity,
        compressedPerplexity: comp.perplexity,
        qualityDrop: (comp.perplexity - base.perplexity) / base.perplexity,
        steps,
      },
    };
  } finally {
    await fs.rm(baseDir, { recursive: true, force: true });
    await fs.rm(compDir, { recursive: true, force: true });
  }
});
