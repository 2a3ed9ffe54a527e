// The runtime on Llama-family graphs (rotary positions, grouped-query attention, SwiGLU, RMSNorm):
// the KV cache has kvHeads heads, and cached generation follows the float64 reference to the
// end of the context.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadLanguageModel, type LanguageModel } from '../../../models/runtime/index.ts';
import { argmax } from '../../../models/runtime/sampling.ts';
import { TINY_LLAMA } from '../../../models/arch/presets.ts';
import { parseArchSpec, type ArchSpec } from '../../../models/arch/spec.ts';
import { initWeights, type DecoderWeights } from '../../../models/arch/weights.ts';
import { buildDecoderModel } from '../../../models/onnx/build-decoder.ts';
import { saveOnnxModel } from '../../../models/onnx/proto.ts';
import { referenceForward } from '../../reference/decoder-forward.ts';
import { testWeights } from '../onnx/ort-run.ts';
import { charTokenizer, tempDir } from './fixtures.ts';

const dir = tempDir('runtime-llama');
const PROMPT = [5, 9, 1, 22, 40];

/** Qwen2-style MQA variant: q/k/v biases, one KV head, tied head. */
const QWEN_MQA: ArchSpec = parseArchSpec({
  name: 'qwen-mqa',
  vocabSize: 64,
  contextLength: 24,
  positions: 'rotary',
  ropeTheta: 1000000,
  layerNormEpsilon: 1e-6,
  blocks: [{ width: 24, ffnHidden: 40, layers: 2, heads: 3, kvHeads: 1, headDim: 8, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: true, outputBias: false }],
  tiedHead: true,
});

interface Case {
  spec: ArchSpec;
  weights: DecoderWeights;
  models: Record<'plain' | 'fused', LanguageModel>;
}
const cases: Record<string, Case> = {};

beforeAll(async () => {
  for (const spec of [TINY_LLAMA, QWEN_MQA]) {
    const weights = testWeights(initWeights(spec, 5));
    const models = {} as Case['models'];
    for (const variant of ['plain', 'fused'] as const) {
      const file = path.join(dir, `${spec.name}-${variant}.onnx`);
      await saveOnnxModel(buildDecoderModel(spec, weights, { fused: variant === 'fused' }), file);
      models[variant] = await loadLanguageModel(file, { tokenizer: charTokenizer(), intraOpNumThreads: 1 });
    }
    cases[spec.name!] = { spec, weights, models };
  }
});

afterAll(async () => {
  for (const c of Object.values(cases)) for (const m of Object.values(c.models)) await m.dispose();
  await fs.rm(dir, { recursive: true, force: true });
});

for (const name of [TINY_LLAMA.name!, QWEN_MQA.name!]) {
  describe(name, () => {
    it('sizes the cache by KV heads', () => {
      const { spec, models } = cases[name]!;
      const block = spec.blocks[0]!;
      for (const m of Object.values(models)) {
        expect(m.info.heads).toEqual(new Array(block.layers).fill(block.kvHeads));
        expect(m.info.headDims).toEqual(new Array(block.layers).fill(block.headDim));
        expect(m.info.contextLength).toBe(spec.contextLength);
        expect(m.reusesBuffers).toBe(true);
      }
    });

    for (const variant of ['plain', 'fused'] as const) {
      it(`${variant}: cached greedy decoding to the end of the context follows the reference`, async () => {
        const { spec, weights, models } = cases[name]!;
        const model = models[variant];
        const V = spec.vocabSize;
        const result = await model.generateText(PROMPT, { maxTokens: 100, ignoreEos: true });
        expect(result.stopReason).toBe('context-full');
        expect(PROMPT.length + result.tokens.length).toBe(spec.contextLength + 1);
        // Every generated token is the argmax of the reference logits at its position.
        const seq = [...PROMPT, ...result.tokens];
        const ref = referenceForward(spec, weights, { inputIds: [seq.slice(0, spec.contextLength)] });
        for (let i = 0; i < result.tokens.length; i++) {
          const at = PROMPT.length - 1 + i;
          const row = ref.logits.subarray(at * V, (at + 1) * V);
          const sorted = Array.from(row).sort((a, b) => b - a);
          // Skip near-ties, where float32 may legitimately pick the other token.
          if (sorted[0]! - sorted[1]! > 1e-3) expect(result.tokens[i]).toBe(argmax(row));
        }
        // Step logits against the reference at a late position.
        const state = model.createState();
        await model.step(state, seq.slice(0, spec.contextLength - 1));
        const last = await model.step(state, [seq[spec.contextLength - 1]!]);
        const want = ref.logits.subarray((spec.contextLength - 1) * V, spec.contextLength * V);
        let diff = 0;
        for (let j = 0; j < V; j++) diff = Math.max(diff, Math.abs(want[j]! - last[j]!));
        expect(diff).toBeLessThan(1e-4);
      });
    }

    it('plain and fused generate the same tokens', async () => {
      const { models } = cases[name]!;
      const a = await models.plain.generateText(PROMPT, { maxTokens: 12, ignoreEos: true });
      const b = await models.fused.generateText(PROMPT, { maxTokens: 12, ignoreEos: true });
      expect(b.tokens).toEqual(a.tokens);
    });
  });
}
