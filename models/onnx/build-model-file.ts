// One call from an architecture (spec, spec file, search result or preset) and optional checkpoint
// to an ONNX model on disk: what `fleetlm build` and the benchmarks use.
import { promises as fs } from 'node:fs';
import { ModelError, ValidationError } from '../../common/errors.ts';
import { parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import { PRESETS } from '../arch/presets.ts';
import { readSafetensors } from '../checkpoint/safetensors.ts';
import { activationOfLayout, weightsFromCheckpoint, type CheckpointLayout } from '../checkpoint/layouts.ts';
import { buildDecoderModel, parameterInitializerNames, type Activation } from './build-decoder.ts';
import { saveOnnxModel, tensorElementCount } from './proto.ts';
import { initWeights, type DecoderWeights } from '../arch/weights.ts';

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
}

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
  if (options.weightsPath) {
    const file = await readSafetensors(options.weightsPath);
    weights = weightsFromCheckpoint(spec, file, layout);
    source = { source: 'checkpoint', path: options.weightsPath, layout };
  } else {
    const seed = options.seed ?? 0;
    weights = initWeights(spec, seed);
    source = { source: 'random', seed };
  }
  const model = buildDecoderModel(spec, weights, { fused, activation });
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
  };
}
