// The built ONNX decoders (plain and fused) against the TypeScript reference forward pass:
// logits within 1e-4, KV-cache decoding equal to full recomputation, padding masks applied,
// and the graph contract (I/O names, single embedding Gather, shared initializers, parameter count),
// for GPT-2/OPT specs and the Llama family (RMSNorm, rotary, GQA/MQA, SwiGLU, Qwen2 q/k/v biases,
// and specs that mix the options).
import { describe, expect, it } from 'vitest';
import { isLlamaFamily, parseArchSpec, type ArchSpec } from '../../../models/arch/spec.ts';
import { TINY, TINY_LLAMA } from '../../../models/arch/presets.ts';
import { countParameters } from '../../../models/arch/accounting.ts';
import { buildDecoderModel, parameterInitializerNames } from '../../../models/onnx/build-decoder.ts';
import { countWeightElements, initWeights, layerPlan } from '../../../models/arch/weights.ts';
import { tensorElementCount } from '../../../models/onnx/proto.ts';
import { referenceForward, type LayerCache } from '../../reference/decoder-forward.ts';
import { emptyCache, maxAbs, maxAbsDiff, runStep, sessionFor, testWeights } from './ort-run.ts';

const TOL = 1e-4;

/** Specs covering shared weights, width changes, project_in/out, position offset and an untied head. */
const SPECS: Record<string, ArchSpec> = {
  tiny: TINY,
  'widths-untied': parseArchSpec({
    name: 'widths-untied',
    vocabSize: 40,
    contextLength: 24,
    blocks: [
      { width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 4 },
      { width: 20, ffnRatio: 1.5, layers: 2, heads: 1, headDim: 8 },
    ],
    tiedHead: false,
  }),
  'opt-like': parseArchSpec({
    name: 'opt-like',
    vocabSize: 50,
    contextLength: 20,
    positionOffset: 2,
    embeddingWidth: 12,
    blocks: [{ width: 16, ffnRatio: 4, layers: 2, heads: 4, headDim: 4 }],
    tiedHead: true,
  }),
  // Llama family: RMSNorm, rotary, SwiGLU, 4 query heads over 2 KV heads, no biases, untied head.
  'tiny-llama': TINY_LLAMA,
  // Qwen2: as Llama but q/k/v biases, a tied head and another rope theta and epsilon.
  'qwen2-like': parseArchSpec({
    name: 'qwen2-like',
    vocabSize: 56,
    contextLength: 40,
    positions: 'rotary',
    ropeTheta: 1000000,
    layerNormEpsilon: 1e-6,
    blocks: [{ width: 24, ffnHidden: 40, layers: 2, heads: 6, kvHeads: 2, headDim: 4, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: true, outputBias: false }],
    tiedHead: true,
  }),
  // Multi-query attention: one KV head shared by all query heads.
  mqa: parseArchSpec({
    name: 'mqa',
    vocabSize: 48,
    contextLength: 32,
    positions: 'rotary',
    blocks: [{ width: 32, ffnHidden: 40, layers: 2, heads: 4, kvHeads: 1, headDim: 8, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
    tiedHead: false,
  }),
  // Every option independent: rotary with LayerNorm, SwiGLU with biases, GELU with RMSNorm and GQA,
  // a shared-weight block, a width change and a bias-free block projection.
  'mixed-rotary': parseArchSpec({
    name: 'mixed-rotary',
    vocabSize: 44,
    contextLength: 32,
    positions: 'rotary',
    ropeTheta: 500,
    blocks: [
      { width: 16, ffnHidden: 24, layers: 1, heads: 2, headDim: 8, norm: 'layernorm', mlp: 'swiglu', qkvBias: false, outputBias: true },
      { width: 24, ffnRatio: 2, layers: 2, heads: 4, kvHeads: 2, headDim: 6, norm: 'rmsnorm', mlp: 'gelu', qkvBias: true, outputBias: false, shareWeights: true },
    ],
    tiedHead: true,
  }),
  // RMSNorm and SwiGLU with learned positions (offset), project_in/out and MQA.
  'mixed-learned': parseArchSpec({
    name: 'mixed-learned',
    vocabSize: 40,
    contextLength: 20,
    positionOffset: 2,
    embeddingWidth: 12,
    blocks: [{ width: 16, ffnHidden: 32, layers: 2, heads: 4, kvHeads: 1, headDim: 4, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: true, outputBias: true }],
    tiedHead: true,
  }),
};

function weightsFor(spec: ArchSpec) {
  return testWeights(initWeights(spec, 3));
}

function range(start: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

/** Logits row (batch b, position s) of a [batch, seq, vocab] array. */
function row(logits: Float32Array, seq: number, vocab: number, b: number, s: number): Float32Array {
  const at = (b * seq + s) * vocab;
  return logits.subarray(at, at + vocab);
}

for (const [specName, spec] of Object.entries(SPECS)) {
  for (const fused of [false, true]) {
    describe(`${specName} (${fused ? 'fused' : 'plain'})`, () => {
      const weights = weightsFor(spec);
      const model = buildDecoderModel(spec, weights, { fused });
      const V = spec.vocabSize;

      it('matches the reference forward pass on a batch within 1e-4', async () => {
        const session = await sessionFor(model);
        const ids = [
          [1, 5, 7, 3, 2, 9],
          [4, 4, 11, 0, V - 1, 8],
        ];
        const ref = referenceForward(spec, weights, { inputIds: ids });
        const out = await runStep(session, {
          inputIds: ids,
          positionIds: [range(0, 6), range(0, 6)],
          attentionMask: [new Array(6).fill(1), new Array(6).fill(1)],
          past: emptyCache(spec),
        });
        expect(out.dims).toEqual([2, 6, V]);
        expect(maxAbs(ref.logits)).toBeGreaterThan(0.5);
        expect(maxAbsDiff(out.logits, ref.logits)).toBeLessThan(TOL);
        for (const [i, cache] of out.present.entries()) {
          expect(cache.length).toBe(6);
          expect(maxAbsDiff(cache.key, ref.present[i]!.key)).toBeLessThan(TOL);
          expect(maxAbsDiff(cache.value, ref.present[i]!.value)).toBeLessThan(TOL);
        }
        await session.release();
      });

      it('decodes incrementally with the cache exactly as a full recomputation', async () => {
        const session = await sessionFor(model);
        const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        const full = await runStep(session, {
          inputIds: [tokens],
          positionIds: [range(0, tokens.length)],
          attentionMask: [new Array(tokens.length).fill(1)],
          past: emptyCache(spec),
        });
        // Prefill 4 tokens, then a chunk of 2 with a past, then 1 token at a time.
        let past: LayerCache[] = emptyCache(spec);
        let pos = 0;
        for (const chunk of [4, 2, 1, 1]) {
          const ids = tokens.slice(pos, pos + chunk);
          const step = await runStep(session, {
            inputIds: [ids],
            positionIds: [range(pos, chunk)],
            attentionMask: [new Array(pos + chunk).fill(1)],
            past,
          });
          for (let s = 0; s < chunk; s++) {
            expect(maxAbsDiff(row(step.logits, chunk, V, 0, s), row(full.logits, tokens.length, V, 0, pos + s))).toBeLessThan(TOL);
          }
          past = step.present;
          pos += chunk;
        }
        expect(past[0]!.length).toBe(tokens.length);
        expect(maxAbsDiff(past[0]!.key, full.present[0]!.key)).toBeLessThan(TOL);
        await session.release();
      });

      it('applies attention_mask: a left-padded row equals the unpadded sequence', async () => {
        const session = await sessionFor(model);
        const real = [7, 2, 9];
        const padded = await runStep(session, {
          inputIds: [[0, 0, ...real], [5, 6, 7, 8, 9]],
          positionIds: [[0, 0, 0, 1, 2], range(0, 5)],
          attentionMask: [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]],
          past: emptyCache(spec),
        });
        const ref = referenceForward(spec, weights, { inputIds: [real] });
        for (let s = 0; s < real.length; s++) {
          expect(maxAbsDiff(row(padded.logits, 5, V, 0, 2 + s), row(ref.logits, real.length, V, 0, s))).toBeLessThan(TOL);
        }
        // Continue the padded batch by one token: the mask grows by one column.
        const next = await runStep(session, {
          inputIds: [[4], [4]],
          positionIds: [[3], [5]],
          attentionMask: [[0, 0, 1, 1, 1, 1], new Array(6).fill(1)],
          past: padded.present,
        });
        const ref2 = referenceForward(spec, weights, { inputIds: [[...real, 4]] });
        expect(maxAbsDiff(row(next.logits, 1, V, 0, 0), row(ref2.logits, 4, V, 0, 3))).toBeLessThan(TOL);
        await session.release();
      });

      it('follows the graph contract', () => {
        const graph = model.graph!;
        const plan = layerPlan(spec);
        const inputs = graph.input!.map((i) => i.name);
        expect(inputs.slice(0, 3)).toEqual(['input_ids', 'attention_mask', 'position_ids']);
        expect(inputs.length).toBe(3 + 2 * plan.length);
        const outputs = graph.output!.map((o) => o.name);
        expect(outputs[0]).toBe('logits');
        for (const l of plan) {
          expect(inputs).toContain(`past_key_values.${l.index}.key`);
          expect(inputs).toContain(`past_key_values.${l.index}.value`);
          expect(outputs).toContain(`present.${l.index}.key`);
          expect(outputs).toContain(`present.${l.index}.value`);
        }
        const dims = (name: string) =>
          graph.input!.find((i) => i.name === name)!.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
        expect(dims('input_ids')).toEqual(['batch_size', 'sequence_length']);
        for (const l of plan) {
          expect(dims(`past_key_values.${l.index}.key`)).toEqual(['batch_size', l.kvHeads, 'past_sequence_length', l.headDim]);
          expect(dims(`past_key_values.${l.index}.value`)).toEqual(['batch_size', l.kvHeads, 'past_sequence_length', l.headDim]);
        }
        const positionTables = graph.initializer!.filter((t) => t.name === 'embed_positions.weight');
        expect(positionTables).toHaveLength(spec.positions === 'learned' ? 1 : 0);
        // The token embedding is exactly one Gather(embed_tokens.weight, input_ids), axis 0.
        const gathers = graph.node!.filter((n) => n.opType === 'Gather' && n.input![0] === 'embed_tokens.weight');
        expect(gathers).toHaveLength(1);
        expect(gathers[0]!.input![1]).toBe('input_ids');
        expect(Number(gathers[0]!.attribute!.find((a) => a.name === 'axis')?.i ?? 0)).toBe(0);
        const uses = graph.node!.filter((n) => n.input!.includes('embed_tokens.weight'));
        expect(uses.length).toBe(spec.tiedHead ? 2 : 1);
        if (spec.tiedHead) {
          const head = uses.find((n) => n !== gathers[0])!;
          expect(head.opType).toBe('Gemm');
          expect(Number(head.attribute!.find((a) => a.name === 'transB')!.i)).toBe(1);
        }
        const opset = model.opsetImport!.find((o) => (o.domain ?? '') === '')!;
        expect(Number(opset.version)).toBeGreaterThanOrEqual(17);
      });

      it('stores shared weights once and holds exactly the spec\'s parameters', () => {
        const inits = model.graph!.initializer!;
        const names = inits.map((t) => t.name);
        expect(new Set(names).size).toBe(names.length);
        const params = new Set(parameterInitializerNames(model));
        const total = inits.filter((t) => params.has(t.name!)).reduce((n, t) => n + tensorElementCount(t), 0);
        expect(total).toBe(countWeightElements(spec));
        // The accounting covers GPT-2/OPT specs independently of the weight layout.
        if (!isLlamaFamily(spec)) expect(total).toBe(countParameters(spec));
        for (const l of layerPlan(spec)) {
          const owned = names.some((n) => n!.startsWith(`layers.${l.index}.`));
          expect(owned).toBe(l.ownsWeights);
        }
      });
    });
  }
}

describe('other activations (OPT ReLU, GPT-2 tanh GELU), with and without FFN biases', () => {
  for (const [activation, specName] of [['relu', 'opt-like'], ['gelu_tanh', 'opt-like'], ['relu', 'mixed-rotary'], ['gelu_tanh', 'mixed-rotary']] as const) {
    it(`plain and fused graphs match the reference with ${activation} on ${specName}`, async () => {
      const spec = SPECS[specName]!;
      const weights = weightsFor(spec);
      const ids = [[2, 7, 1, 8, 2, 8]];
      const ref = referenceForward(spec, weights, { inputIds: ids, activation });
      const gelu = referenceForward(spec, weights, { inputIds: ids });
      // The activations really differ on these weights, so the check below can fail.
      expect(maxAbsDiff(ref.logits, gelu.logits)).toBeGreaterThan(activation === 'relu' ? 1e-2 : 2e-4);
      for (const fused of [false, true]) {
        const session = await sessionFor(buildDecoderModel(spec, weights, { fused, activation }));
        const out = await runStep(session, { inputIds: ids, positionIds: [range(0, 6)], attentionMask: [new Array(6).fill(1)], past: emptyCache(spec) });
        expect(maxAbsDiff(out.logits, ref.logits)).toBeLessThan(TOL);
        await session.release();
      }
    });
  }
});

describe('weights that do not fit the spec', () => {
  it('names the missing tensor', () => {
    const weights = initWeights(TINY, 1);
    weights.delete('layers.1.attn.k.bias');
    expect(() => buildDecoderModel(TINY, weights)).toThrow(/layers\.1\.attn\.k\.bias/);
  });
  it('names the tensor with a wrong shape', () => {
    const weights = initWeights(TINY, 1);
    weights.set('final_ln.weight', { data: new Float32Array(5), shape: [5] });
    expect(() => buildDecoderModel(TINY, weights)).toThrow(/final_ln\.weight.*\[5\].*\[24\]/);
  });
});

describe('longer sequences (beyond small-kernel paths)', () => {
  const spec = parseArchSpec({
    name: 'long',
    vocabSize: 48,
    contextLength: 160,
    blocks: [{ width: 32, ffnRatio: 2, layers: 2, heads: 4, headDim: 8 }],
  });
  const weights = weightsFor(spec);
  for (const fused of [false, true]) {
    it(`${fused ? 'fused' : 'plain'}: prefill of 96 then a chunk of 40 with past matches the reference`, async () => {
      const session = await sessionFor(buildDecoderModel(spec, weights, { fused }));
      const tokens = Array.from({ length: 136 }, (_, i) => (i * 17 + 3) % spec.vocabSize);
      const ref = referenceForward(spec, weights, { inputIds: [tokens] });
      const first = await runStep(session, { inputIds: [tokens.slice(0, 96)], positionIds: [range(0, 96)], attentionMask: [new Array(96).fill(1)], past: emptyCache(spec) });
      const second = await runStep(session, { inputIds: [tokens.slice(96)], positionIds: [range(96, 40)], attentionMask: [new Array(136).fill(1)], past: first.present });
      const V = spec.vocabSize;
      expect(maxAbsDiff(first.logits, ref.logits.subarray(0, 96 * V))).toBeLessThan(TOL);
      expect(maxAbsDiff(second.logits, ref.logits.subarray(96 * V))).toBeLessThan(TOL);
      await session.release();
    });
  }
});

describe('graphs as written, without onnxruntime graph optimizations', () => {
  for (const fused of [false, true]) {
    it(`${fused ? 'fused' : 'plain'} TINY matches the reference with optimizations disabled`, async () => {
      const weights = weightsFor(TINY);
      const session = await sessionFor(buildDecoderModel(TINY, weights, { fused }), 'disabled');
      const ids = [[5, 3, 9, 1]];
      const out = await runStep(session, { inputIds: ids, positionIds: [range(0, 4)], attentionMask: [[1, 1, 1, 1]], past: emptyCache(TINY) });
      expect(maxAbsDiff(out.logits, referenceForward(TINY, weights, { inputIds: ids }).logits)).toBeLessThan(TOL);
      await session.release();
    });
  }
});

describe('Llama-family graphs', () => {
  const weights = weightsFor(TINY_LLAMA);
  it('plain uses only default-domain ops and has no position table', () => {
    const graph = buildDecoderModel(TINY_LLAMA, weights).graph!;
    expect(graph.node!.every((n) => !n.domain)).toBe(true);
    expect(graph.node!.some((n) => n.opType === 'SimplifiedLayerNormalization')).toBe(false);
    expect(graph.initializer!.some((t) => t.name === 'embed_positions.weight')).toBe(false);
  });

  it('fused uses the RMSNorm, skip-RMSNorm and rotary contrib kernels and packed projections', () => {
    const graph = buildDecoderModel(TINY_LLAMA, weights, { fused: true }).graph!;
    const count = (op: string) => graph.node!.filter((n) => n.opType === op).length;
    const L = TINY_LLAMA.blocks[0]!.layers;
    expect(count('SimplifiedLayerNormalization')).toBe(1);
    expect(count('SkipSimplifiedLayerNormalization')).toBe(2 * L);
    expect(count('RotaryEmbedding')).toBe(2 * L);
    expect(count('LayerNormalization') + count('ReduceMean')).toBe(0);
    const shape = (name: string) => graph.initializer!.find((t) => t.name === name)?.dims?.map(Number);
    expect(shape('layers.0.attn.qkv.weight')).toEqual([32, 32 + 16 + 16]);
    expect(shape('layers.0.ffn.gate_up.weight')).toEqual([32, 2 * 48]);
    expect(shape('layers.0.attn.q.weight')).toBeUndefined();
  });
});

describe('rotary positions far from 0', () => {
  const spec = parseArchSpec({
    name: 'long-llama',
    vocabSize: 48,
    contextLength: 160,
    positions: 'rotary',
    blocks: [{ width: 32, ffnHidden: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
  });
  const weights = weightsFor(spec);
  for (const fused of [false, true]) {
    it(`${fused ? 'fused' : 'plain'}: prefill of 96 then a chunk of 40 and single steps up to position 159 match the reference`, async () => {
      const session = await sessionFor(buildDecoderModel(spec, weights, { fused }));
      const tokens = Array.from({ length: 160 }, (_, i) => (i * 17 + 3) % spec.vocabSize);
      const ref = referenceForward(spec, weights, { inputIds: [tokens] });
      const V = spec.vocabSize;
      let past = emptyCache(spec);
      let pos = 0;
      for (const chunk of [96, 40, ...new Array(24).fill(1)]) {
        const step = await runStep(session, { inputIds: [tokens.slice(pos, pos + chunk)], positionIds: [range(pos, chunk)], attentionMask: [new Array(pos + chunk).fill(1)], past });
        expect(maxAbsDiff(step.logits, ref.logits.subarray(pos * V, (pos + chunk) * V))).toBeLessThan(TOL);
        past = step.present;
        pos += chunk;
      }
      expect(pos).toBe(160);
      await session.release();
    });
  }
});
