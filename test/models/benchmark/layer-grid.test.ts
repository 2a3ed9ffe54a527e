// The grid of a model's own layers (layerGridOf): what the demo and bench/latency-prediction.ts time so
// that a table prices the shipped model from its own entries; every planned file is one of its layers
// (or the per-model cost at its vocabulary), for GPT-2 and Llama-family specs.
import { describe, expect, it } from 'vitest';
import { ffnWidthOf, parseArchSpec } from '../../../models/arch/spec.ts';
import { layerGridOf, planGrid } from '../../../models/benchmark/grid.ts';
import { loadArchSpec } from '../../../models/onnx/build-model-file.ts';
import { DEMO_MODEL_DIR } from '../../../local-demo/model-pipeline.ts';
import path from 'node:path';

describe('layerGridOf', () => {
  it('times exactly the layers of the committed demo model (two blocks of different widths)', async () => {
    const spec = await loadArchSpec(path.join(DEMO_MODEL_DIR, 'arch.json'));
    const grid = layerGridOf(spec)!;
    expect(grid).toEqual({ widths: [128, 640], ffnRatios: [1, 2.5], heads: [2, 11], headDim: 32, vocabSize: 4096 });
    const files = planGrid({ ...grid, maxKvLength: 128, storage: 'int4' });
    for (const b of spec.blocks) {
      const layer = files.filter((f) => f.role === 'layer' && f.width === b.width && f.ffnWidth === ffnWidthOf(b) && f.heads === b.heads && f.headDim === b.headDim);
      expect(layer.map((f) => f.depth)).toEqual([1, 3]);
    }
    expect(files.filter((f) => f.role === 'fixed').map((f) => [f.width, f.vocabSize])).toEqual([
      [128, 4096],
      [640, 4096],
    ]);
  });

  it('gives a llama grid with the K/V heads of a Llama-family spec, and refuses what one grid cannot hold', () => {
    const llamaBlock = { width: 256, ffnHidden: 640, layers: 2, heads: 8, kvHeads: 2, headDim: 32, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false } as const;
    const llama = parseArchSpec({ name: 'l', vocabSize: 1000, contextLength: 128, positions: 'rotary', tiedHead: true, blocks: [llamaBlock] });
    expect(layerGridOf(llama)).toEqual({ widths: [256], ffnRatios: [2.5], heads: [8], headDim: 32, vocabSize: 1000, family: 'llama', kvHeads: [2] });
    expect(planGrid({ ...layerGridOf(llama)!, maxKvLength: 64, storage: 'fp32' }).map((f) => f.name)).toEqual([
      'llama-layer-w256-f640-h8kv2x32-d1.onnx',
      'llama-layer-w256-f640-h8kv2x32-d3.onnx',
      'llama-fixed-w256-v1000.onnx',
    ]);
    // Qwen2's biased QKV is neither layer the grid builds; nor can one grid hold two head widths.
    const qwen = parseArchSpec({ name: 'q', vocabSize: 1000, contextLength: 128, positions: 'rotary', tiedHead: true, blocks: [{ ...llamaBlock, qkvBias: true }] });
    expect(layerGridOf(qwen)).toBeUndefined();
    const mixed = parseArchSpec({ name: 'm', vocabSize: 1000, contextLength: 128, blocks: [{ width: 128, ffnRatio: 4, layers: 1, heads: 2, headDim: 64 }, { width: 128, ffnRatio: 4, layers: 1, heads: 4, headDim: 32 }] });
    expect(layerGridOf(mixed)).toBeUndefined();
  });
});
