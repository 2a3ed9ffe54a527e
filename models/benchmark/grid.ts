// The microbenchmark grid a fleet benchmark times: which decoder files to build (each layer of the grid
// at two depths, plus one file per width at the target vocabulary for the per-model costs), and
// building them as ONNX (optionally block-quantized). Runs on the operator's machine, never on a device.
import path from 'node:path';
import { ValidationError } from '../../common/errors.ts';
import { ffnWidthOf, parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import { initWeights } from '../arch/weights.ts';
import { buildDecoderModel } from '../onnx/build-decoder.ts';
import { saveOnnxModel } from '../onnx/proto.ts';
import { quantizeModel } from '../quantization/onnx-quantize.ts';
import type { GridFile, GridStorage } from './grid-file.ts';

export { bytesPerWeightOf, type GridFile, type GridStorage } from './grid-file.ts';

/** Vocabulary of the layer files: tiny, so their embedding and head cost next to nothing and cancel out anyway. */
export const LAYER_FILE_VOCAB = 64;

/** What to measure. Layers are every (width, ffn ratio, heads) combination the widths allow. */
export interface GridOptions {
  widths: readonly number[];
  ffnRatios: readonly number[];
  /** Query heads per layer; `width / headDim` (full attention) when absent. */
  heads?: readonly number[];
  headDim: number;
  /** Target vocabulary: the per-model cost files use it. */
  vocabSize: number;
  /** Longest KV length timed (the files' context length). */
  maxKvLength: number;
  storage: GridStorage;
  blockSize?: 32 | 64 | 128;
  /** The two depths each layer is built at (default 1 and 3). */
  depths?: readonly [number, number];
}

/** The files of a grid, in a stable order (the same options give the same names). */
export function planGrid(o: GridOptions): GridFile[] {
  const [d1, d2] = o.depths ?? [1, 3];
  if (!(d2 > d1 && d1 >= 1)) throw new ValidationError(`grid depths must be two increasing positive numbers; got ${d1}, ${d2}`);
  const files: GridFile[] = [];
  for (const width of [...new Set(o.widths)].sort((a, b) => a - b)) {
    if (width % o.headDim !== 0 && !o.heads) throw new ValidationError(`width ${width} is not a multiple of headDim ${o.headDim}; give heads explicitly`);
    const headChoices = o.heads ? [...new Set(o.heads)].filter((h) => h * o.headDim <= width) : [width / o.headDim];
    if (headChoices.length === 0) throw new ValidationError(`no head count in ${o.heads!.join(', ')} fits width ${width} at headDim ${o.headDim}`);
    let first: GridFile | undefined;
    for (const ratio of [...new Set(o.ffnRatios)].sort((a, b) => a - b)) {
      const ffnWidth = Math.round(ratio * width);
      for (const heads of headChoices.sort((a, b) => a - b)) {
        for (const depth of [d1, d2]) {
          const f: GridFile = { name: `layer-w${width}-f${ffnWidth}-h${heads}x${o.headDim}-d${depth}.onnx`, role: 'layer', width, ffnWidth, heads, headDim: o.headDim, depth, vocabSize: LAYER_FILE_VOCAB };
          files.push(f);
          first ??= f;
        }
      }
    }
    // Per-model costs at this width: the first layer of the width once, at the target vocabulary.
    files.push({ ...first!, name: `fixed-w${width}-v${o.vocabSize}.onnx`, role: 'fixed', depth: d1, vocabSize: o.vocabSize });
  }
  return files;
}

/** The layers of a grid: widths x FFN ratios x head counts at one head width, and the vocabulary. */
export type LayerGrid = Pick<GridOptions, 'widths' | 'ffnRatios' | 'heads' | 'headDim' | 'vocabSize'>;

/**
 * The grid that times the layers of `spec` itself (its block widths, FFN ratios and head counts, its
 * vocabulary for the per-model costs), so a table prices that model from its own entries; undefined
 * when its blocks use different head widths (one grid has one).
 */
export function layerGridOf(spec: ArchSpec): LayerGrid | undefined {
  const headDim = spec.blocks[0]!.headDim;
  if (spec.blocks.some((b) => b.headDim !== headDim)) return undefined;
  const uniq = (v: number[]): number[] => [...new Set(v)].sort((a, b) => a - b);
  return {
    widths: uniq(spec.blocks.map((b) => b.width)),
    ffnRatios: uniq(spec.blocks.map((b) => ffnWidthOf(b) / b.width)),
    heads: uniq(spec.blocks.map((b) => b.heads)),
    headDim,
    vocabSize: spec.vocabSize,
  };
}

/** The decoder spec one grid file holds (GPT-2 family, tied head, learned positions). */
export function gridFileSpec(f: GridFile, maxKvLength: number): ArchSpec {
  return parseArchSpec({
    name: f.name.replace(/\.onnx$/, ''),
    vocabSize: f.vocabSize,
    contextLength: maxKvLength,
    blocks: [{ width: f.width, ffnHidden: f.ffnWidth, layers: f.depth, heads: f.heads, headDim: f.headDim }],
    tiedHead: true,
  });
}

/** Builds every file of `files` into `dir` (random weights, quantized as `o.storage` says); returns their paths. */
export async function buildGridFiles(files: readonly GridFile[], o: Pick<GridOptions, 'storage' | 'blockSize' | 'maxKvLength'>, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    const spec = gridFileSpec(f, o.maxKvLength);
    let model = buildDecoderModel(spec, initWeights(spec, 0), { fused: false });
    // Asymmetric blocks (a zero point each), as `fleetlm quantize` and the pipeline ship them: MatMulNBits reads the zero points too.
    if (o.storage !== 'fp32') model = quantizeModel(model, { bits: o.storage === 'int8' ? 8 : 4, blockSize: o.blockSize ?? 32, symmetric: false }).model;
    const p = path.join(dir, f.name);
    await saveOnnxModel(model, p, { externalData: 'never' });
    out.push(p);
  }
  return out;
}
