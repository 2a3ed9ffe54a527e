// The microbenchmark grid a fleet benchmark times: which decoder files to build (each layer of the grid
// at two depths, plus one file per width at the target vocabulary for the per-model costs), of one layer
// family (GPT-2 or Llama), and building them as ONNX (optionally block-quantized). Runs on the
// operator's machine, never on a device.
import path from 'node:path';
import { ValidationError } from '../../common/errors.ts';
import { ffnWidthOf, parseArchSpec, type ArchSpec } from '../arch/spec.ts';
import { layerShapeOf } from '../arch/accounting.ts';
import { initWeights } from '../arch/weights.ts';
import { isGpt2Layer, llamaKvHeadsOf } from '../search/measured-latency.ts';
import { buildDecoderModel } from '../onnx/build-decoder.ts';
import { saveOnnxModel } from '../onnx/proto.ts';
import { quantizeModel } from '../quantization/onnx-quantize.ts';
import { kvHeadsOf, type GridFamily, type GridFile, type GridStorage } from './grid-file.ts';

export { bytesPerWeightOf, GRID_FAMILIES, type GridFamily, type GridFile, type GridStorage } from './grid-file.ts';

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
  /** Layer family of every file (default gpt2). */
  family?: GridFamily;
  /** llama: K/V head counts; each layer gets those that divide its query heads (default: as many as its query heads). */
  kvHeads?: readonly number[];
}

/** The files of a grid, in a stable order (the same options give the same names). */
export function planGrid(o: GridOptions): GridFile[] {
  const [d1, d2] = o.depths ?? [1, 3];
  if (!(d2 > d1 && d1 >= 1)) throw new ValidationError(`grid depths must be two increasing positive numbers; got ${d1}, ${d2}`);
  const llama = (o.family ?? 'gpt2') === 'llama';
  if (!llama && o.kvHeads) throw new ValidationError('K/V head counts apply to llama grids (grouped-query attention); a gpt2 layer has as many K/V heads as query heads');
  if (llama && o.headDim % 2 !== 0) throw new ValidationError(`a llama grid needs an even headDim (rotary positions rotate pairs); got ${o.headDim}`);
  // gpt2 names are what older grids used; llama names carry the family and the K/V heads.
  const prefix = llama ? 'llama-' : '';
  const kvChoicesOf = (heads: number): Array<number | undefined> =>
    !llama ? [undefined] : o.kvHeads ? [...new Set(o.kvHeads)].filter((kv) => kv <= heads && heads % kv === 0).sort((a, b) => a - b) : [heads];
  const files: GridFile[] = [];
  for (const width of [...new Set(o.widths)].sort((a, b) => a - b)) {
    if (width % o.headDim !== 0 && !o.heads) throw new ValidationError(`width ${width} is not a multiple of headDim ${o.headDim}; give heads explicitly`);
    const headChoices = o.heads ? [...new Set(o.heads)].filter((h) => h * o.headDim <= width) : [width / o.headDim];
    if (headChoices.length === 0) throw new ValidationError(`no head count in ${o.heads!.join(', ')} fits width ${width} at headDim ${o.headDim}`);
    let first: GridFile | undefined;
    for (const ratio of [...new Set(o.ffnRatios)].sort((a, b) => a - b)) {
      const ffnWidth = Math.round(ratio * width);
      for (const heads of headChoices.sort((a, b) => a - b)) {
        for (const kv of kvChoicesOf(heads)) {
          for (const depth of [d1, d2]) {
            const f: GridFile =
              kv === undefined
                ? { name: `layer-w${width}-f${ffnWidth}-h${heads}x${o.headDim}-d${depth}.onnx`, role: 'layer', width, ffnWidth, heads, headDim: o.headDim, depth, vocabSize: LAYER_FILE_VOCAB }
                : { name: `llama-layer-w${width}-f${ffnWidth}-h${heads}kv${kv}x${o.headDim}-d${depth}.onnx`, role: 'layer', width, ffnWidth, heads, headDim: o.headDim, depth, vocabSize: LAYER_FILE_VOCAB, family: 'llama', kvHeads: kv };
            files.push(f);
            first ??= f;
          }
        }
      }
    }
    if (!first) throw new ValidationError(`no K/V head count in ${o.kvHeads!.join(', ')} divides a head count (${headChoices.join(', ')}) of width ${width}`);
    // Per-model costs at this width: the first layer of the width once, at the target vocabulary.
    files.push({ ...first, name: `${prefix}fixed-w${width}-v${o.vocabSize}.onnx`, role: 'fixed', depth: d1, vocabSize: o.vocabSize });
  }
  return files;
}

/** The layers of a grid: widths x FFN ratios x head counts at one head width, the family, and the vocabulary. */
export type LayerGrid = Pick<GridOptions, 'widths' | 'ffnRatios' | 'heads' | 'headDim' | 'vocabSize' | 'family' | 'kvHeads'>;

/**
 * The grid that times the layers of `spec` itself (its block widths, FFN ratios, head counts and, for
 * Llama-family layers, K/V head counts; its vocabulary for the per-model costs), so a table prices that
 * model from its own entries; undefined when one grid cannot hold its layers (blocks of different head
 * widths or families, or a layer kind the grid does not build, such as Qwen2's biased QKV).
 */
export function layerGridOf(spec: ArchSpec): LayerGrid | undefined {
  const headDim = spec.blocks[0]!.headDim;
  if (spec.blocks.some((b) => b.headDim !== headDim)) return undefined;
  const rotary = spec.positions === 'rotary';
  const kinds = spec.blocks.map((b) => {
    const shape = { ...layerShapeOf(b), rotary };
    const kv = llamaKvHeadsOf(b.heads, b.headDim, shape);
    return kv !== null ? { family: 'llama' as const, kv } : isGpt2Layer(b.heads * b.headDim, shape) ? { family: 'gpt2' as const, kv: b.heads } : null;
  });
  if (kinds.some((k) => k === null || k.family !== kinds[0]!.family)) return undefined;
  const uniq = (v: number[]): number[] => [...new Set(v)].sort((a, b) => a - b);
  const llama = kinds[0]!.family === 'llama';
  return {
    widths: uniq(spec.blocks.map((b) => b.width)),
    ffnRatios: uniq(spec.blocks.map((b) => ffnWidthOf(b) / b.width)),
    heads: uniq(spec.blocks.map((b) => b.heads)),
    headDim,
    vocabSize: spec.vocabSize,
    ...(llama ? { family: 'llama' as const, kvHeads: uniq(kinds.map((k) => k!.kv)) } : {}),
  };
}

/**
 * The decoder spec one grid file holds: tied head; gpt2 with learned positions, llama with rotary
 * positions, RMSNorm, SwiGLU, no biases and the file's K/V heads (as the Hugging Face Llama import builds it).
 */
export function gridFileSpec(f: GridFile, maxKvLength: number): ArchSpec {
  const block = { width: f.width, ffnHidden: f.ffnWidth, layers: f.depth, heads: f.heads, headDim: f.headDim };
  const llama = f.family === 'llama';
  return parseArchSpec({
    name: f.name.replace(/\.onnx$/, ''),
    vocabSize: f.vocabSize,
    contextLength: maxKvLength,
    blocks: [llama ? { ...block, kvHeads: kvHeadsOf(f), norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false } : block],
    tiedHead: true,
    ...(llama ? { positions: 'rotary' } : {}),
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
