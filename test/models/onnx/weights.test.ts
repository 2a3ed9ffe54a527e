// Seeded GPT-2-scheme initialisation and the native weight layout.
import { describe, expect, it } from 'vitest';
import { TINY, GPT2_SMALL, QWEN25_05B, SMOLLM2_135M, TINYLLAMA_11B, TINY_LLAMA } from '../../../models/arch/presets.ts';
import { countParameters } from '../../../models/arch/accounting.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { countWeightElements, expectedWeightShapes, initWeights, layerPlan, validateWeights } from '../../../models/arch/weights.ts';

function stats(data: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const v of data) s += v;
  const mean = s / data.length;
  let q = 0;
  for (const v of data) q += (v - mean) ** 2;
  return { mean, std: Math.sqrt(q / data.length) };
}

describe('initWeights', () => {
  const spec = parseArchSpec({ vocabSize: 500, contextLength: 64, blocks: [{ width: 64, ffnRatio: 4, layers: 8, heads: 4, headDim: 16 }] });

  it('is deterministic per seed and differs between seeds', () => {
    const a = initWeights(TINY, 42);
    const b = initWeights(TINY, 42);
    const c = initWeights(TINY, 43);
    for (const [name, t] of a) expect(Array.from(t.data)).toEqual(Array.from(b.get(name)!.data));
    expect(Array.from(a.get('embed_tokens.weight')!.data)).not.toEqual(Array.from(c.get('embed_tokens.weight')!.data));
  });

  it('follows the GPT-2 scheme: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layers), LN 1/0, biases 0', () => {
    const w = initWeights(spec, 1);
    const emb = stats(w.get('embed_tokens.weight')!.data);
    expect(Math.abs(emb.mean)).toBeLessThan(0.001);
    expect(emb.std).toBeGreaterThan(0.0195);
    expect(emb.std).toBeLessThan(0.0205);
    const q = stats(w.get('layers.3.attn.q.weight')!.data);
    expect(q.std).toBeCloseTo(0.02, 3);
    const residual = 0.02 / Math.sqrt(2 * 8);
    expect(stats(w.get('layers.3.attn.out.weight')!.data).std).toBeCloseTo(residual, 3);
    expect(stats(w.get('layers.3.ffn.down.weight')!.data).std).toBeCloseTo(residual, 3);
    expect(stats(w.get('layers.3.ffn.up.weight')!.data).std).toBeCloseTo(0.02, 3);
    expect(w.get('layers.0.ln1.weight')!.data.every((v) => v === 1)).toBe(true);
    expect(w.get('final_ln.bias')!.data.every((v) => v === 0)).toBe(true);
    expect(w.get('layers.5.ffn.up.bias')!.data.every((v) => v === 0)).toBe(true);
  });
});

describe('native layout', () => {
  it('counts the same parameters as the accounting for the presets', () => {
    for (const spec of [TINY, GPT2_SMALL]) expect(countWeightElements(spec)).toBe(countParameters(spec));
    expect(countWeightElements(GPT2_SMALL)).toBe(124_439_808);
  });

  it('gives shared-weight layers the first layer’s tensors and every layer its own cache index', () => {
    const plan = layerPlan(TINY);
    expect(plan.map((l) => l.index)).toEqual([0, 1, 2]);
    expect(plan.map((l) => l.prefix)).toEqual(['layers.0', 'layers.1', 'layers.1']);
    const names = [...expectedWeightShapes(TINY).keys()];
    expect(names.some((n) => n.startsWith('layers.2.'))).toBe(false);
    expect(expectedWeightShapes(TINY).get('block_proj.1.weight')).toEqual([16, 24]);
  });

  it('rejects unexpected tensors', () => {
    const w = initWeights(TINY, 1);
    w.set('layers.2.ln1.weight', { data: new Float32Array(24), shape: [24] });
    expect(() => validateWeights(TINY, w)).toThrow(/layers\.2\.ln1\.weight.*does not use/);
  });
});

describe('Llama-family layout', () => {
  it('gives a GPT-2 spec exactly the names, order and shapes it always had', () => {
    const spec = parseArchSpec({ vocabSize: 10, contextLength: 6, blocks: [{ width: 4, ffnRatio: 2, layers: 1, heads: 2, headDim: 2 }] });
    expect([...expectedWeightShapes(spec)]).toEqual([
      ['embed_tokens.weight', [10, 4]],
      ['embed_positions.weight', [6, 4]],
      ['layers.0.ln1.weight', [4]],
      ['layers.0.ln1.bias', [4]],
      ['layers.0.attn.q.weight', [4, 4]],
      ['layers.0.attn.q.bias', [4]],
      ['layers.0.attn.k.weight', [4, 4]],
      ['layers.0.attn.k.bias', [4]],
      ['layers.0.attn.v.weight', [4, 4]],
      ['layers.0.attn.v.bias', [4]],
      ['layers.0.attn.out.weight', [4, 4]],
      ['layers.0.attn.out.bias', [4]],
      ['layers.0.ln2.weight', [4]],
      ['layers.0.ln2.bias', [4]],
      ['layers.0.ffn.up.weight', [4, 8]],
      ['layers.0.ffn.up.bias', [8]],
      ['layers.0.ffn.down.weight', [8, 4]],
      ['layers.0.ffn.down.bias', [4]],
      ['final_ln.weight', [4]],
      ['final_ln.bias', [4]],
    ]);
  });

  it('lays out RMSNorm, rotary, GQA and SwiGLU without biases (tiny-llama)', () => {
    const shapes = expectedWeightShapes(TINY_LLAMA);
    expect(shapes.has('embed_positions.weight')).toBe(false);
    expect([...shapes.keys()].filter((n) => n.endsWith('.bias'))).toEqual([]);
    expect(shapes.get('layers.1.ln1.weight')).toEqual([32]);
    expect(shapes.get('layers.1.attn.q.weight')).toEqual([32, 32]);
    expect(shapes.get('layers.1.attn.k.weight')).toEqual([32, 16]);
    expect(shapes.get('layers.1.attn.v.weight')).toEqual([32, 16]);
    expect(shapes.get('layers.1.attn.out.weight')).toEqual([32, 32]);
    expect(shapes.get('layers.1.ffn.gate.weight')).toEqual([32, 48]);
    expect(shapes.get('layers.1.ffn.up.weight')).toEqual([32, 48]);
    expect(shapes.get('layers.1.ffn.down.weight')).toEqual([48, 32]);
    expect(shapes.get('final_ln.weight')).toEqual([32]);
    expect(shapes.get('lm_head.weight')).toEqual([32, 64]);
    expect(layerPlan(TINY_LLAMA).map((l) => [l.heads, l.kvHeads])).toEqual([[4, 2], [4, 2]]);
  });

  it('gives Qwen2 q/k/v biases only, and block projections a bias only with outputBias', () => {
    const shapes = expectedWeightShapes(QWEN25_05B);
    expect(shapes.get('layers.0.attn.k.bias')).toEqual([128]);
    expect(shapes.get('layers.0.attn.q.bias')).toEqual([896]);
    expect(shapes.has('layers.0.attn.out.bias')).toBe(false);
    expect(shapes.has('layers.0.ffn.gate.bias')).toBe(false);
    const twoBlocks = (outputBias: boolean) =>
      expectedWeightShapes(
        parseArchSpec({
          vocabSize: 10,
          contextLength: 6,
          positions: 'rotary',
          blocks: [
            { width: 8, ffnRatio: 2, layers: 1, heads: 2, headDim: 4, norm: 'rmsnorm' },
            { width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 4, norm: 'rmsnorm', mlp: 'swiglu', outputBias },
          ],
        }),
      );
    expect(twoBlocks(true).get('block_proj.1.bias')).toEqual([16]);
    expect(twoBlocks(false).has('block_proj.1.bias')).toBe(false);
    expect(twoBlocks(false).get('layers.1.ffn.gate.weight')).toEqual([16, 32]);
    expect(twoBlocks(true).get('layers.1.ffn.gate.bias')).toEqual([32]);
  });

  it('counts the published parameter totals of SmolLM2-135M, Qwen2.5-0.5B and TinyLlama-1.1B', () => {
    // Hugging Face model cards / safetensors index totals for the three configs.
    expect(countWeightElements(SMOLLM2_135M)).toBe(134_515_008);
    expect(countWeightElements(QWEN25_05B)).toBe(494_032_768);
    expect(countWeightElements(TINYLLAMA_11B)).toBe(1_100_048_384);
  });

  it('initialises RMSNorm gains to 1 and the SwiGLU gate like up', () => {
    const spec = parseArchSpec({
      vocabSize: 50,
      contextLength: 8,
      positions: 'rotary',
      blocks: [{ width: 64, ffnHidden: 256, layers: 2, heads: 4, kvHeads: 2, headDim: 16, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
    });
    const w = initWeights(spec, 3);
    validateWeights(spec, w);
    expect(w.get('layers.1.ln2.weight')!.data.every((v) => v === 1)).toBe(true);
    expect(w.get('final_ln.weight')!.data.every((v) => v === 1)).toBe(true);
    expect(stats(w.get('layers.1.ffn.gate.weight')!.data).std).toBeCloseTo(0.02, 3);
    expect(stats(w.get('layers.1.ffn.down.weight')!.data).std).toBeCloseTo(0.02 / Math.sqrt(4), 3);
  });
});
