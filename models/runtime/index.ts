// The FleetLM runtime: load an ONNX causal LM, generate text, measure perplexity.
// Other areas (edge agent, CLI, evaluation, demo) import from here only.
export {
  loadLanguageModel,
  LanguageModel,
  DecodeState,
  GenerateOptionsSchema,
  parseGenerateOptions,
  type LanguageModelOptions,
  type ModelInfo,
  type GenerateOptions,
  type GenerateOptionsInput,
  type GeneratedToken,
  type GenerationResult,
  type StopReason,
} from './language-model.ts';
export { perplexity, PerplexityOptionsSchema, type PerplexityOptionsInput, type PerplexityResult } from './perplexity.ts';
export { Sampler, SamplingOptionsSchema, argmax, type SamplingOptions, type SamplingOptionsInput } from './sampling.ts';
export { gpt2Tokenizer, tokenizerByName, StreamingDecoder, ByteVocabulary, type Tokenizer } from './tokenizer.ts';
export { loadTokenizer, loadTokenizerFile, findTokenizerBeside, tokenizerForModel, tokenizerConfigPathFor, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE } from './tokenizer-file.ts';
export { huggingFaceTokenizer, type HfTokenizer } from './tokenizer-hf.ts';
export { isHfTokenizer } from './tokenizer-kind.ts';
export { bpeToHuggingFace, huggingFaceToBpe, bpeTokenizerConfig, isFleetBpeFile, BpeFileSchema, type BpeFile } from './tokenizer-fleetlm-bpe.ts';
export { assertTokenizerFits, declaredTokenizerVocab, vocabMismatch, MAX_VOCAB_PADDING, TOKENIZER_METADATA_KEY, type TokenizerSource } from './vocab-match.ts';
export { checkBundle, BUNDLE_CHECK_PROMPT, type BundleCheckOptions, type BundleCheckResult } from './bundle-check.ts';
export { ChatTemplate, type ChatMessage } from './chat-template.ts';
export { StopSequences } from './stop-sequences.ts';
export { defaultThreadCount, availableExecutionProviders, checkExecutionProviders, type BackendOptions, type ExecutionProviderInfo } from './onnx-backend.ts';
