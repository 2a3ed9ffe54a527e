// The check `fleetlm publish` (and the pipeline's publish step) runs on a bundle before anything is signed
// or uploaded: the entry model loads in onnxruntime, its tokenizer fits the logits, the logits of a short
// prompt are finite and tell tokens apart, and one greedy token decodes. One forward pass, so it stays fast
// on big models; it is not a quality test (that is evaluate's and the quality gate's job).
import { describeError, ValidationError, type ValidationCode } from '../../common/errors.ts';
import { loadLanguageModel, type LanguageModel } from './language-model.ts';
import { argmax } from './sampling.ts';
import type { Tokenizer } from './tokenizer.ts';
import { declaredTokenizerVocab, vocabMismatch } from './vocab-match.ts';

/** The prompt of the check: short, plain English every byte-level tokenizer encodes. */
export const BUNDLE_CHECK_PROMPT = 'Hello';

export interface BundleCheckOptions {
  /** The entry ONNX file (external data beside it). */
  modelPath: string;
  /** The tokenizer a device would use for this bundle. */
  tokenizer: Tokenizer;
  /** Where the tokenizer came from, for messages: the tokenizer.json path or "gpt2 (no tokenizer.json in the bundle)". */
  tokenizerSource: string;
  /** onnxruntime threads (default: the runtime's default). */
  threads?: number;
}

/** What the check found (deterministic: no timings, so it can go into a manifest). */
export interface BundleCheckResult {
  /** Width of the model's logits. */
  modelVocabSize: number;
  tokenizerVocabSize: number;
  promptTokens: number;
  /** The greedy next token after the prompt and its text. */
  tokenId: number;
  tokenText: string;
}

function refuse(code: ValidationCode, message: string, cause?: unknown): ValidationError {
  return new ValidationError(message, { code, cause });
}

/** Counts NaN/infinite values and the positions whose logits are all equal. */
function inspect(logits: Float32Array, positions: number, width: number): { nonFinite: number; flat: number } {
  let nonFinite = 0;
  let flat = 0;
  for (let p = 0; p < positions; p++) {
    const row = p * width;
    const first = logits[row]!;
    let same = true;
    for (let i = 0; i < width; i++) {
      const v = logits[row + i]!;
      if (!Number.isFinite(v)) nonFinite++;
      else if (v !== first) same = false;
    }
    if (same) flat++;
  }
  return { nonFinite, flat };
}

/**
 * Runs the bundle check; resolves with what it found or throws ValidationError with one of the codes
 * VALIDATION_BUNDLE_LOAD, VALIDATION_BUNDLE_VOCAB, VALIDATION_BUNDLE_LOGITS, VALIDATION_BUNDLE_GENERATE.
 */
export async function checkBundle(opts: BundleCheckOptions): Promise<BundleCheckResult> {
  const { modelPath, tokenizer, tokenizerSource } = opts;
  let model: LanguageModel;
  try {
    // No buffer reuse: the check runs one pass, preallocating a cache for it buys nothing.
    model = await loadLanguageModel(modelPath, { tokenizer, reuseBuffers: false, ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}) });
  } catch (err) {
    throw refuse('VALIDATION_BUNDLE_LOAD', `the bundle's model must load in onnxruntime; ${modelPath} does not: ${describeError(err)}`, err);
  }
  try {
    const V = model.info.vocabSize;
    const mismatch = vocabMismatch(V, tokenizer.vocabSize, declaredTokenizerVocab(model.info.metadata));
    if (mismatch) {
      throw refuse('VALIDATION_BUNDLE_VOCAB', `the bundle's tokenizer must fit its model: ${mismatch} (model ${modelPath}, tokenizer ${tokenizerSource})`);
    }
    let ids: number[];
    try {
      ids = tokenizer.encode(BUNDLE_CHECK_PROMPT);
    } catch (err) {
      throw refuse('VALIDATION_BUNDLE_GENERATE', `the bundle's tokenizer ${tokenizerSource} cannot encode ${JSON.stringify(BUNDLE_CHECK_PROMPT)}: ${describeError(err)}`, err);
    }
    if (ids.length === 0) throw refuse('VALIDATION_BUNDLE_GENERATE', `the bundle's tokenizer ${tokenizerSource} encodes ${JSON.stringify(BUNDLE_CHECK_PROMPT)} as no tokens`);
    const ctx = model.info.contextLength;
    if (ctx !== undefined && ids.length >= ctx) ids = ids.slice(0, Math.max(1, ctx - 1));
    let logits: Float32Array;
    try {
      logits = await model.logits(ids);
    } catch (err) {
      throw refuse('VALIDATION_BUNDLE_GENERATE', `the bundle's model ${modelPath} loads but cannot run a ${ids.length}-token prompt: ${describeError(err)}`, err);
    }
    const { nonFinite, flat } = inspect(logits, ids.length, V);
    if (nonFinite > 0) {
      throw refuse('VALIDATION_BUNDLE_LOGITS', `the bundle's model must produce finite logits; ${nonFinite} of ${ids.length * V} values for the prompt ${JSON.stringify(BUNDLE_CHECK_PROMPT)} are NaN or infinite (${modelPath})`);
    }
    if (flat === ids.length) {
      throw refuse('VALIDATION_BUNDLE_LOGITS', `the bundle's model must tell tokens apart; its logits are equal for every token at all ${ids.length} prompt positions (${modelPath}: zero or constant weights?)`);
    }
    // Greedy over the ids the tokenizer can decode (logits may be padded past them).
    const tokenId = argmax(logits, (ids.length - 1) * V, Math.min(V, tokenizer.vocabSize));
    let tokenText: string;
    try {
      tokenText = tokenizer.decode([tokenId]);
    } catch (err) {
      throw refuse('VALIDATION_BUNDLE_GENERATE', `the bundle's tokenizer ${tokenizerSource} cannot decode the model's first token ${tokenId}: ${describeError(err)}`, err);
    }
    return { modelVocabSize: V, tokenizerVocabSize: tokenizer.vocabSize, promptTokens: ids.length, tokenId, tokenText };
  } finally {
    await model.dispose().catch(() => {});
  }
}
