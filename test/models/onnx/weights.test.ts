// Seeded GPT-2-scheme initialisation and the native weight layout.
import { describe, expect, it } from 'vitest';
import { TINY, GPT2_SMALL } from '../../../models/arch/presets.ts';
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
