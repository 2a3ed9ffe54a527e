// Whether a tokenizer fits a model's vocabulary: the check shared by `generate`, `perplexity` and the
// publish-time bundle check, so a model paired with the wrong tokenizer is named as such before any token runs.
import { ValidationError } from '../../common/errors.ts';

/**
 * Logits may be wider than the tokenizer: exports pad the vocabulary to a multiple of 64 or 128 for speed
 * (OPT 50272 vs 50265 ids, Qwen2.5 151936 vs 151665, Phi-2 51200 vs 50295). Wider than this is another tokenizer.
 */
export const MAX_VOCAB_PADDING = 1024;

/** How a tokenizer was found for a model (tokenizerForModel's answer). */
export interface TokenizerSource {
  /** "gpt2", or the tokenizer.json path. */
  source: string;
  /** Set when no tokenizer.json was beside the model and GPT-2's was taken instead: the path looked for. */
  missing?: string;
}

/** The reason a tokenizer of `tokenizerVocab` ids cannot serve logits of `modelVocab` ids, or undefined when it can. */
export function vocabMismatch(modelVocab: number, tokenizerVocab: number): string | undefined {
  if (tokenizerVocab > modelVocab) {
    return `the tokenizer has ${tokenizerVocab} ids but the model's logits cover ${modelVocab}: ids from ${modelVocab} on have no logit`;
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
export function assertTokenizerFits(model: { path: string; vocabSize: number }, tokenizer: { name: string; vocabSize: number }, how: TokenizerSource): void {
  const why = vocabMismatch(model.vocabSize, tokenizer.vocabSize);
  if (why === undefined) return;
  const fix = how.missing
    ? `no tokenizer.json beside the model (looked for ${how.missing}), so GPT-2's was tried: put the model's tokenizer there ` +
      '(`fleetlm build --weights` copies a checkpoint\'s; `fleetlm train --tokenizer bpe` writes <checkpoint>.tokenizer.json) or pass --tokenizer FILE'
    : `tokenizer ${how.source} is not this model's: pass the tokenizer it was trained with (--tokenizer FILE)`;
  throw new ValidationError(`model ${model.path} and tokenizer ${tokenizer.name} do not match: ${why}; ${fix}`, { code: 'VALIDATION_TOKENIZER_MISMATCH' });
}
