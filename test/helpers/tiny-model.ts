// A real, tiny ONNX decoder for tests that publish bundles: `fleetlm publish` checks that a bundle's model
// loads and generates (models/runtime/bundle-check.ts), so stand-in bytes no longer publish.
import path from 'node:path';
import { parseArchSpec, type ArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile, type BuildModelFileResult } from '../../models/onnx/build-model-file.ts';

/** GPT-2's vocabulary (a bundle without tokenizer.json is read with GPT-2's tokenizer), one narrow layer. */
export const TINY_GPT2_SPEC: ArchSpec = parseArchSpec({
  name: 'tiny-gpt2-vocab',
  vocabSize: 50257,
  contextLength: 32,
  blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 1, headDim: 16 }],
});

/** Writes `dir/model.onnx` (and `model.onnx.data` with externalData 'always'); seeds give different bytes. */
export function writeTinyModel(dir: string, opts: { seed?: number; externalData?: 'always' | 'never'; spec?: ArchSpec } = {}): Promise<BuildModelFileResult> {
  return buildModelFile(opts.spec ?? TINY_GPT2_SPEC, { outPath: path.join(dir, 'model.onnx'), seed: opts.seed ?? 1, externalData: opts.externalData ?? 'never' });
}
