// Loading GPT-2 and OPT checkpoints (Hugging Face tensor names and layouts) that the tests write,
// and building runnable models from them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { TINY, TINY_LLAMA } from '../../../models/arch/presets.ts';
import { readSafetensors, writeSafetensors } from '../../../models/checkpoint/safetensors.ts';
import { weightsFromCheckpoint, weightsToCheckpoint, type CheckpointLayout } from '../../../models/checkpoint/layouts.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { initWeights, type DecoderWeights, type WeightTensor } from '../../../models/arch/weights.ts';
import { referenceForward } from '../../reference/decoder-forward.ts';
import { emptyCache, maxAbsDiff, runStep, sessionFor, testWeights } from '../onnx/ort-run.ts';

const GPT2_TINY = parseArchSpec({ name: 'gpt2-tiny', vocabSize: 40, contextLength: 16, blocks: [{ width: 16, ffnRatio: 4, layers: 2, heads: 2, headDim: 8 }] });
const OPT_TINY = parseArchSpec({
  name: 'opt-tiny',
  vocabSize: 40,
  contextLength: 16,
  positionOffset: 2,
  embeddingWidth: 8,
  blocks: [{ width: 16, ffnRatio: 4, layers: 2, heads: 4, headDim: 4 }],
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-layouts-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const at = (t: WeightTensor, r: number, c: number): number => t.data[r * t.shape[1]! + c]!;

function expectSameWeights(a: DecoderWeights, b: DecoderWeights): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [name, t] of a) {
    expect(b.get(name)!.shape, name).toEqual(t.shape);
    expect(maxAbsDiff(b.get(name)!.data, t.data), name).toBe(0);
  }
}

describe('GPT-2 layout', () => {
  const native = initWeights(GPT2_TINY, 11);
  const ckpt = weightsToCheckpoint(GPT2_TINY, native, 'gpt2');

  it('uses Hugging Face names with Conv1D [in, out] weights and a fused c_attn', () => {
    const cAttn = ckpt.get('transformer.h.1.attn.c_attn.weight')!;
    expect(cAttn.shape).toEqual([16, 48]);
    const k = native.get('layers.1.attn.k.weight')!;
    expect(at(cAttn, 3, 16 + 5)).toBe(at(k, 3, 5));
    expect(ckpt.get('transformer.h.0.mlp.c_fc.weight')!.shape).toEqual([16, 64]);
    expect(ckpt.get('transformer.wpe.weight')!.shape).toEqual([16, 16]);
    expect(ckpt.has('lm_head.weight')).toBe(false);
  });

  it('loads a safetensors checkpoint with or without the transformer. prefix, ignoring mask buffers', async () => {
    const file = path.join(dir, 'gpt2.safetensors');
    await writeSafetensors(file, ckpt);
    expectSameWeights(native, weightsFromCheckpoint(GPT2_TINY, await readSafetensors(file), 'gpt2'));
    const bare = new Map([...weightsToCheckpoint(GPT2_TINY, native, 'gpt2', '')]);
    bare.set('h.0.attn.bias', { data: new Float32Array(16 * 16), shape: [1, 1, 16, 16] });
    bare.set('lm_head.weight', native.get('embed_tokens.weight')!);
    expectSameWeights(native, weightsFromCheckpoint(GPT2_TINY, bare, 'gpt2'));
  });

  it('maps an untied lm_head [V, E] to the native [E, V]', () => {
    const untied = parseArchSpec({ ...GPT2_TINY, tiedHead: false });
    const w = initWeights(untied, 2);
    const c = weightsToCheckpoint(untied, w, 'gpt2');
    expect(c.get('lm_head.weight')!.shape).toEqual([40, 16]);
    expect(at(c.get('lm_head.weight')!, 7, 3)).toBe(at(w.get('lm_head.weight')!, 3, 7));
    expectSameWeights(w, weightsFromCheckpoint(untied, c, 'gpt2'));
  });

  it('refuses specs the layout cannot hold', () => {
    expect(() => weightsToCheckpoint(TINY, initWeights(TINY, 1), 'gpt2')).toThrow(/one layer width/);
  });
});

describe('OPT layout', () => {
  const native = initWeights(OPT_TINY, 12);
  const ckpt = weightsToCheckpoint(OPT_TINY, native, 'opt');

  it('uses Hugging Face names with nn.Linear [out, in] weights and offset position rows', () => {
    const q = ckpt.get('model.decoder.layers.0.self_attn.q_proj.weight')!;
    expect(q.shape).toEqual([16, 16]);
    expect(at(q, 2, 9)).toBe(at(native.get('layers.0.attn.q.weight')!, 9, 2));
    expect(ckpt.get('model.decoder.layers.1.fc1.weight')!.shape).toEqual([64, 16]);
    expect(ckpt.get('model.decoder.embed_positions.weight')!.shape).toEqual([18, 8]);
    expect(ckpt.get('model.decoder.project_in.weight')!.shape).toEqual([16, 8]);
    expect(ckpt.get('model.decoder.project_out.weight')!.shape).toEqual([8, 16]);
  });

  it('round-trips through a safetensors file under either prefix', async () => {
    const file = path.join(dir, 'opt.safetensors');
    await writeSafetensors(file, ckpt);
    expectSameWeights(native, weightsFromCheckpoint(OPT_TINY, await readSafetensors(file), 'opt'));
    expectSameWeights(native, weightsFromCheckpoint(OPT_TINY, weightsToCheckpoint(OPT_TINY, native, 'opt', 'decoder.'), 'opt'));
  });
});

describe('Llama layout', () => {
  const native = initWeights(TINY_LLAMA, 13);
  const ckpt = weightsToCheckpoint(TINY_LLAMA, native, 'llama');

  it('uses LlamaForCausalLM names with nn.Linear [out, in] weights and no biases', () => {
    const k = ckpt.get('model.layers.1.self_attn.k_proj.weight')!;
    expect(k.shape).toEqual([16, 32]);
    expect(at(k, 5, 9)).toBe(at(native.get('layers.1.attn.k.weight')!, 9, 5));
    expect(ckpt.get('model.layers.0.mlp.gate_proj.weight')!.shape).toEqual([48, 32]);
    expect(ckpt.get('model.layers.0.input_layernorm.weight')!.shape).toEqual([32]);
    expect(ckpt.get('lm_head.weight')!.shape).toEqual([64, 32]);
    expect([...ckpt.keys()].filter((n) => n.endsWith('.bias'))).toEqual([]);
  });

  it('round-trips with or without the model. prefix and ignores rotary buffers', () => {
    expectSameWeights(native, weightsFromCheckpoint(TINY_LLAMA, ckpt, 'llama'));
    const bare = weightsToCheckpoint(TINY_LLAMA, native, 'llama', '');
    bare.set('layers.0.self_attn.rotary_emb.inv_freq', { data: new Float32Array(4), shape: [4] });
    expectSameWeights(native, weightsFromCheckpoint(TINY_LLAMA, bare, 'llama'));
  });
});

describe('checkpoints that do not fit', () => {
  const native = initWeights(GPT2_TINY, 3);
  it('names a missing tensor', () => {
    const c = weightsToCheckpoint(GPT2_TINY, native, 'gpt2');
    c.delete('transformer.h.1.mlp.c_proj.bias');
    expect(() => weightsFromCheckpoint(GPT2_TINY, c, 'gpt2')).toThrow(/missing tensor "transformer\.h\.1\.mlp\.c_proj\.bias"/);
  });
  it('names an unexpected tensor', () => {
    const c = weightsToCheckpoint(GPT2_TINY, native, 'gpt2');
    c.set('transformer.h.2.ln_1.weight', { data: new Float32Array(16), shape: [16] });
    expect(() => weightsFromCheckpoint(GPT2_TINY, c, 'gpt2')).toThrow(/"transformer\.h\.2\.ln_1\.weight" has no place/);
  });
  it('names a tensor with the wrong shape', () => {
    const c = weightsToCheckpoint(GPT2_TINY, native, 'fleetlm');
    c.set('embed_positions.weight', { data: new Float32Array(8 * 16), shape: [8, 16] });
    expect(() => weightsFromCheckpoint(GPT2_TINY, c, 'fleetlm')).toThrow(/embed_positions\.weight.*\[8, 16\].*\[16, 16\]/);
  });
});

describe('buildModelFile from checkpoints', () => {
  const cases: Array<[CheckpointLayout, typeof GPT2_TINY]> = [
    ['gpt2', GPT2_TINY],
    ['opt', OPT_TINY],
    ['fleetlm', TINY],
    ['llama', TINY_LLAMA],
  ];
  for (const [layout, spec] of cases) {
    it(`builds a ${layout} checkpoint into a model matching the reference (fused)`, async () => {
      const native = testWeights(initWeights(spec, 21));
      const file = path.join(dir, `${layout}-build.safetensors`);
      await writeSafetensors(file, weightsToCheckpoint(spec, native, layout));
      const out = path.join(dir, `${layout}.onnx`);
      const result = await buildModelFile(spec, { outPath: out, fused: true, weightsPath: file, layout });
      expect(result.activation).toBe({ opt: 'relu', gpt2: 'gelu_tanh', fleetlm: 'gelu', llama: 'gelu' }[layout]);
      const ids = [[1, 2, 3, 4, 5]];
      const session = await sessionFor(out);
      const got = await runStep(session, { inputIds: ids, positionIds: [[0, 1, 2, 3, 4]], attentionMask: [[1, 1, 1, 1, 1]], past: emptyCache(spec) });
      const ref = referenceForward(spec, native, { inputIds: ids, activation: result.activation });
      expect(maxAbsDiff(got.logits, ref.logits)).toBeLessThan(1e-4);
      await session.release();
    });
  }
});
