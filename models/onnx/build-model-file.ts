// One call from an architecture (spec, spec file, search result or preset) and optional checkpoint
// to an ONNX model on disk: what `fleetlm build` and the benchmarks use.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ModelError, ValidationError } from '../../common/errors.ts';
import { parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import { PRESETS } from '../arch/presets.ts';
import { readSafetensors } from '../checkpoint/safetensors.ts';
import { activationOfLayout, weightsFromCheckpoint, type CheckpointLayout } from '../checkpoint/layouts.ts';
import { buildDecoderModel, parameterInitializerNames, type Activation } from './build-decoder.ts';
import { saveOnnxModel, tensorElementCount } from './proto.ts';
import { initWeights, type DecoderWeights } from '../arch/weights.ts';
import { findCheckpointTokenizer } from '../checkpoint/checkpoint-tokenizer.ts';
import { loadTokenizerFile, tokenizerConfigPathFor, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from '../runtime/tokenizer-file.ts';
import { gpt2Tokenizer } from '../runtime/tokenizer.ts';
import { TOKENIZER_METADATA_KEY, vocabMismatch } from '../runtime/vocab-match.ts';

export interface BuildModelFileOptions {
  outPath: string;
  fused?: boolean;
  /** Seed of the random initialisation (ignored with weightsPath). Default 0. */
  seed?: number;
  /** safetensors checkpoint to load instead of random weights. */
  weightsPath?: string;
  /** Tensor naming of the checkpoint. Default 'fleetlm'. */
  layout?: CheckpointLayout;
  /** FFN activation; default follows the layout (gpt2: gelu_tanh, opt: relu, fleetlm: gelu). */
  activation?: Activation;
  externalData?: 'auto' | 'always' | 'never';
  /**
   * tokenizer.json to write beside the model (with its tokenizer_config.json when there is one). Default: with
   * weightsPath, the checkpoint's own (models/checkpoint/checkpoint-tokenizer.ts); with random weights, none.
   */
  tokenizerPath?: string;
}

/** The tokenizer the build wrote beside the model, or why none. */
export type BuiltTokenizer =
  | { source: 'file'; from: string; path: string; configPath: string | null; vocabSize: number }
  | { source: 'gpt2' }
  | { source: 'none' };

export interface BuildModelFileResult {
  modelPath: string;
  externalDataPath: string | null;
  modelBytes: number;
  externalDataBytes: number;
  /** Elements of all parameter initializers (shared ones once). */
  parameters: number;
  nodes: number;
  fused: boolean;
  activation: Activation;
  weights: { source: 'random'; seed: number } | { source: 'checkpoint'; path: string; layout: CheckpointLayout };
  tokenizer: BuiltTokenizer;
}

/**
 * Resolves `--arch`: a preset name (gpt2-small, opt-125m, opt-350m, tiny) or a JSON file holding
 * either a spec or a search result with a `spec` field. Throws ValidationError naming the problem.
 */
export async function loadArchSpec(arg: string): Promise<ArchSpec> {
  const preset = PRESETS[arg];
  if (preset) return preset;
  let text: string;
  try {
    text = await fs.readFile(arg, 'utf8');
  } catch (err) {
    throw new ValidationError(
      `--arch ${arg}: not a preset (${Object.keys(PRESETS).join(', ')}) and not a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`invalid architecture spec ${arg}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'spec' in value && !('blocks' in value)) {
    value = (value as { spec: unknown }).spec;
  }
  try {
    return parseArchSpec(value);
  } catch (err) {
    // The zod issue list is already in the message; drop the cause so the CLI prints one line.
    if (err instanceof ValidationError) throw new ValidationError(err.message.replace('architecture spec', `architecture spec ${arg}`));
    throw err;
  }
}

/** Builds weights (random or from a checkpoint) and the decoder graph, and saves it to outPath. */
export async function buildModelFile(spec: ArchSpec, options: BuildModelFileOptions): Promise<BuildModelFileResult> {
  const layout = options.layout ?? 'fleetlm';
  const activation = options.activation ?? activationOfLayout(layout);
  const fused = options.fused === true;
  let weights: DecoderWeights;
  let source: BuildModelFileResult['weights'];
  let tokenizerFile: string | undefined = options.tokenizerPath;
  let gpt2 = false;
  if (options.weightsPath) {
    const file = await readSafetensors(options.weightsPath);
    if (tokenizerFile === undefined) {
      // Found (or refused) before the model is written: a model without its tokenizer decodes garbage.
      const found = await findCheckpointTokenizer(options.weightsPath, file.metadata.tokenizer);
      if (found.kind === 'file') tokenizerFile = found.path;
      gpt2 = found.kind === 'gpt2';
    }
    weights = weightsFromCheckpoint(spec, file, layout);
    source = { source: 'checkpoint', path: options.weightsPath, layout };
  } else {
    const seed = options.seed ?? 0;
    weights = initWeights(spec, seed);
    source = { source: 'random', seed };
  }
  const tokenizer = tokenizerFile !== undefined ? await checkedTokenizer(tokenizerFile, spec) : undefined;
  if (gpt2) {
    const why = vocabMismatch(spec.vocabSize, gpt2Tokenizer().vocabSize);
    if (why) throw new ValidationError(`checkpoint ${options.weightsPath} records the gpt2 tokenizer, which does not fit its architecture: ${why}`, { code: 'VALIDATION_TOKENIZER_MISMATCH' });
  }
  const model = buildDecoderModel(spec, weights, { fused, activation });
  if (tokenizer) {
    // What generate, perplexity and publish compare the tokenizer beside the model with (vocab-match.ts).
    model.metadataProps = [...(model.metadataProps ?? []), { key: TOKENIZER_METADATA_KEY, value: JSON.stringify({ vocabSize: tokenizer.vocabSize, file: path.basename(tokenizer.file) }) }];
  }
  const params = new Set(parameterInitializerNames(model));
  const parameters = (model.graph?.initializer ?? []).filter((t) => params.has(t.name ?? '')).reduce((n, t) => n + tensorElementCount(t), 0);
  let saved;
  try {
    saved = await saveOnnxModel(model, options.outPath, { externalData: options.externalData ?? 'auto' });
  } catch (err) {
    if (err instanceof ModelError) throw err;
    throw new ModelError(`cannot write ONNX model ${options.outPath}: ${(err as Error).message}`, { cause: err });
  }
  return {
    ...saved,
    parameters,
    nodes: model.graph?.node?.length ?? 0,
    fused,
    activation,
    weights: source,
    tokenizer: tokenizer ? await copyTokenizer(tokenizer, path.dirname(path.resolve(options.outPath))) : { source: gpt2 ? 'gpt2' : 'none' },
  };
}

/** Loads a tokenizer file and refuses one that does not fit the architecture's vocabulary. */
async function checkedTokenizer(file: string, spec: ArchSpec): Promise<{ file: string; vocabSize: number }> {
  const tok = await loadTokenizerFile(file);
  // Smaller is fine here (a BPE trained on a short text stops early); the metadata records the exact size.
  const why = tok.vocabSize > spec.vocabSize ? vocabMismatch(spec.vocabSize, tok.vocabSize) : undefined;
  if (why) throw new ValidationError(`tokenizer ${file} does not fit the architecture (vocabSize ${spec.vocabSize}): ${why}`, { code: 'VALIDATION_TOKENIZER_MISMATCH' });
  return { file, vocabSize: tok.vocabSize };
}

/** Copies the tokenizer (and its tokenizer_config.json) into the model's directory as tokenizer.json. */
async function copyTokenizer(tok: { file: string; vocabSize: number }, dir: string): Promise<BuiltTokenizer> {
  const dst = path.join(dir, TOKENIZER_FILE);
  if (path.resolve(tok.file) !== dst) await fs.copyFile(tok.file, dst);
  const config = tokenizerConfigPathFor(path.resolve(tok.file));
  let configPath: string | null = null;
  if ((await fs.stat(config).catch(() => undefined))?.isFile()) {
    configPath = path.join(dir, TOKENIZER_CONFIG_FILE);
    if (config !== configPath) await fs.copyFile(config, configPath);
  }
  return { source: 'file', from: tok.file, path: dst, configPath, vocabSize: tok.vocabSize };
}
