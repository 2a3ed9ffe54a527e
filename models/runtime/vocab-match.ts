// Whether a tokenizer fits a model's vocabulary: the check shared by `generate`, `perplexity` and the
// publish-time bundle check, so a model paired with the wrong tokenizer is named as such before any token runs.
import { ValidationError } from '../../common/errors.ts';

/**
 * Logits may be wider than the tokenizer: exports pad the vocabulary to a multiple of 64 or 128 for speed
 * (OPT 50272 vs 50265 ids, Qwen2.5 151936 vs 151665, Phi-2 51200 vs 50295). Wider than this is another tokenizer.
 */
export const MAX_VOCAB_PADDING = 1024;

/** ONNX metadata key where `fleetlm build` records the tokenizer it put beside the model: {"vocabSize": n, "file": name}. */
export const TOKENIZER_METADATA_KEY = 'fleetlm.tokenizer';

/** The tokenizer vocabulary a model's metadata declares (written by `fleetlm build`), if any. */
export function declaredTokenizerVocab(metadata: Readonly<Record<string, string>> | undefined): number | undefined {
  const raw = metadata?.[TOKENIZER_METADATA_KEY];
  if (raw === undefined) return undefined;
  try {
    const v = (JSON.parse(raw) as { vocabSize?: unknown }).vocabSize;
    return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined; // A damaged hint falls back to the size rule.
  }
}

/** How a tokenizer was found for a model (tokenizerForModel's answer). */
export interface TokenizerSource {
  /** "gpt2", or the tokenizer.json path. */
  source: string;
  /** Set when no tokenizer.json was beside the model and GPT-2's was taken instead: the path looked for. */
  missing?: string;
}

/**
 * The reason a tokenizer of `tokenizerVocab` ids cannot serve logits of `modelVocab` ids, or undefined when it
 * can. With `declared` (the tokenizer size the model was built with) the sizes must be equal; without it,
 * logits may be wider than the tokenizer by export padding only.
 */
export function vocabMismatch(modelVocab: number, tokenizerVocab: number, declared?: number): string | undefined {
  if (tokenizerVocab > modelVocab) {
    return `the tokenizer has ${tokenizerVocab} ids but the model's logits cover ${modelVocab}: ids from ${modelVocab} on have no logit`;
  }
  if (declared !== undefined) {
    // A BPE trained on a small text stops short of the architecture's vocabSize; the build recorded how far.
    return tokenizerVocab === declared ? undefined : `the model was built with a tokenizer of ${declared} ids (its ${TOKENIZER_METADATA_KEY} metadata) but this one has ${tokenizerVocab}`;
  }
  if (modelVocab - tokenizerVocab > MAX_VOCAB_PADDING) {
    return `the model's logits cover ${modelVocab} ids but the tokenizer has ${tokenizerVocab}: more than the ${MAX_VOCAB_PADDING} ids of padding an export adds, so it is another tokenizer`;
  }
  return undefined;
}

/**
 * Throws ValidationError (VALIDATION_TOKENIZER_MISMATCH) when the tokenizer does not fit the model, naming
 * the tokenizer that was used and, when GPT-2's was a fallback, the tokenizer.json that is missing.
 */
export function assertTokenizerFits(
  model: { path: string; vocabSize: number; metadata?: Readonly<Record<string, string>> },
  tokenizer: { name: string; vocabSize: number },
  how: TokenizerSource,
): void {
  const why = vocabMismatch(model.vocabSize, tokenizer.vocabSize, declaredTokenizerVocab(model.metadata));
  if (why === undefined) return;
  const fix = how.missing
    ? `no tokenizer.json beside the model (looked for ${how.missing}), so GPT-2's was tried: put the model's tokenizer there ` +
      '(`fleetlm build --weights` copies a checkpoint\'s; `fleetlm train --tokenizer bpe` writes <checkpoint>.tokenizer.json) or pass --tokenizer FILE'
    : `tokenizer ${how.source} is not this model's: pass the tokenizer it was trained with (--tokenizer FILE)`;
  throw new ValidationError(`model ${model.path} and tokenizer ${tokenizer.name} do not match: ${why}; ${fix}`, { code: 'VALIDATION_TOKENIZER_MISMATCH' });
}
