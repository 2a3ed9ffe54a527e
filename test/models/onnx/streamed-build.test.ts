// Building from a WeightSource (weights loaded only while the file is written) gives the same bytes
// as building from weights in memory, and loads each tensor only at save time.
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { TINY, TINY_LLAMA } from '../../../models/arch/presets.ts';
import { initWeights, type DecoderWeights } from '../../../models/arch/weights.ts';
import type { WeightSource } from '../../../models/arch/weight-source.ts';
import { buildDecoderModel } from '../../../models/onnx/build-decoder.ts';
import { encodeOnnxModel, saveOnnxModel } from '../../../models/onnx/proto.ts';
import { tempDir } from '../../helpers/temp-dir.ts';

const QWEN_TINY = parseArchSpec({ ...TINY_LLAMA, name: 'qwen-tiny', tiedHead: true, blocks: [{ ...TINY_LLAMA.blocks[0]!, qkvBias: true }] });

/** A source over in-memory weights that counts loads and hands out copies (as a disk source would). */
function countingSource(weights: DecoderWeights): { source: WeightSource; loads: Map<string, number> } {
  const loads = new Map<string, number>();
  const shapes = new Map([...weights].map(([n, t]) => [n, t.shape] as const));
  return {
    loads,
    source: {
      shapes,
      load(name) {
        loads.set(name, (loads.get(name) ?? 0) + 1);
        return weights.get(name)!.data.slice();
      },
    },
  };
}

let dir: string;
beforeAll(async () => {
  dir = await tempDir('fleetlm-streamed-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('buildDecoderModel from a WeightSource', () => {
  const cases = [
    ['tiny (GPT-2 style, shared weights)', TINY],
    ['tiny-llama (GQA, untied)', TINY_LLAMA],
    ['qwen-tiny (q/k/v biases, tied)', QWEN_TINY],
  ] as const;
  for (const [label, spec] of cases) {
    for (const fused of [false, true]) {
      for (const externalData of ['never', 'always'] as const) {
        it(`${label}, ${fused ? 'fused' : 'plain'}, external data ${externalData}: same files as from memory`, async () => {
          const weights = initWeights(spec, 5);
          const { source, loads } = countingSource(weights);
          const lazy = buildDecoderModel(spec, source, { fused });
          expect(loads.size).toBe(0);
          const eager = buildDecoderModel(spec, weights, { fused });
          const a = await saveOnnxModel(eager, path.join(dir, `${spec.name}-${fused}-${externalData}-eager`, 'model.onnx'), { externalData, externalMinBytes: 64 });
          const b = await saveOnnxModel(lazy, path.join(dir, `${spec.name}-${fused}-${externalData}-lazy`, 'model.onnx'), { externalData, externalMinBytes: 64 });
          expect(readFileSync(b.modelPath)).toEqual(readFileSync(a.modelPath));
          if (externalData === 'always') expect(readFileSync(b.externalDataPath!)).toEqual(readFileSync(a.externalDataPath!));
          // Every tensor was read, and (packing aside) once.
          expect(new Set(loads.keys())).toEqual(new Set(weights.keys()));
          if (!fused) expect(Math.max(...loads.values())).toBe(1);
          // Encoding in one buffer materialises the lazy tensors too.
          expect(encodeOnnxModel(lazy)).toEqual(encodeOnnxModel(eager));
        });
      }
    }
  }

  it('refuses a source whose shapes do not fit the spec, naming the tensor', () => {
    const weights = initWeights(TINY_LLAMA, 1);
    const { source } = countingSource(weights);
    (source.shapes as Map<string, readonly number[]>).set('layers.0.attn.k.weight', [32, 32]);
    expect(() => buildDecoderModel(TINY_LLAMA, source)).toThrow(/tensor "layers\.0\.attn\.k\.weight" has shape \[32, 32\]; the spec needs \[32, 16\]/);
  });

  it('refuses a loader that returns the wrong number of values when the file is written', async () => {
    const weights = initWeights(TINY, 2);
    const { source } = countingSource(weights);
    const bad: WeightSource = { shapes: source.shapes, load: (name) => (name === 'final_ln.weight' ? new Float32Array(3) : source.load(name)) };
    await expect(saveOnnxModel(buildDecoderModel(TINY, bad), path.join(dir, 'bad', 'model.onnx'))).rejects.toThrow(/tensor "final_ln\.weight" loaded 12 bytes; its dims \[24\] need 96/);
  });
});
