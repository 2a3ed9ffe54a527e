import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadLanguageModel, type LanguageModel } from '../../../models/runtime/index.ts';
import { argmax } from '../../../models/runtime/sampling.ts';
import { ModelError, ValidationError } from '../../../common/errors.ts';
import { buildTiny, charTokenizer, tempDir } from './fixtures.ts';
import { TINY } from '../../../models/arch/presets.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { GraphBuilder } from '../../../models/onnx/graph-builder.ts';
import { DataType, saveOnnxModel } from '../../../models/onnx/proto.ts';

const dir = tempDir('runtime-lm');
const PROMPT = [5, 9, 1, 22, 40];

async function collect(model: LanguageModel, prompt: string | number[], opts: Parameters<LanguageModel['generate']>[1]): Promise<number[]> {
  const out: number[] = [];
  for await (const t of model.generate(prompt, opts)) out.push(t.tokenId);
  return out;
}

const models: Record<string, LanguageModel> = {};
let plainPath = '';

beforeAll(async () => {
  plainPath = await buildTiny(dir, false);
  const fusedPath = await buildTiny(dir, true);
  const tokenizer = charTokenizer();
  models.plain = await loadLanguageModel(plainPath, { tokenizer, intraOpNumThreads: 1 });
  models.fused = await loadLanguageModel(fusedPath, { tokenizer, intraOpNumThreads: 1 });
  models.plainNoReuse = await loadLanguageModel(plainPath, { tokenizer, intraOpNumThreads: 1, reuseBuffers: false });
});

afterAll(async () => {
  for (const m of Object.values(models)) await m.dispose();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('loadLanguageModel', () => {
  it('discovers the Optimum inputs and the spec facts', () => {
    const info = models.plain!.info;
    expect(info.vocabSize).toBe(64);
    expect(info.numLayers).toBe(3);
    expect(info.heads).toEqual([2, 3, 3]);
    expect(info.headDims).toEqual([8, 8, 8]);
    expect(info.contextLength).toBe(32);
    expect(info.hasPositionIds).toBe(true);
    expect(info.variant).toBe('plain');
    expect(models.fused!.info.variant).toBe('fused');
    expect(models.plain!.reusesBuffers).toBe(true);
    expect(models.plainNoReuse!.reusesBuffers).toBe(false);
  });
});

describe('generation', () => {
  for (const name of ['plain', 'fused', 'plainNoReuse']) {
    it(`${name}: incremental decoding matches full recomputation`, async () => {
      const model = models[name]!;
      const V = model.info.vocabSize;
      const state = model.createState(20);
      let last = await model.step(state, PROMPT);
      const seq = [...PROMPT];
      for (let i = 0; i < 10; i++) {
        const full = await model.logits(seq);
        const ref = full.subarray((seq.length - 1) * V, seq.length * V);
        let diff = 0;
        for (let j = 0; j < V; j++) diff = Math.max(diff, Math.abs(ref[j]! - last[j]!));
        expect(diff).toBeLessThan(1e-4);
        const next = argmax(last);
        seq.push(next);
        last = await model.step(state, [next]);
      }
    });

    it(`${name}: greedy is deterministic and equals argmax over full passes`, async () => {
      const model = models[name]!;
      const V = model.info.vocabSize;
      const a = await collect(model, PROMPT, { maxTokens: 12, ignoreEos: true });
      const b = await collect(model, PROMPT, { maxTokens: 12, ignoreEos: true });
      expect(a).toEqual(b);
      const seq = [...PROMPT];
      for (let i = 0; i < 12; i++) {
        const full = await model.logits(seq);
        seq.push(argmax(full, (seq.length - 1) * V, V));
      }
      expect(a).toEqual(seq.slice(PROMPT.length));
    });
  }

  it('plain and fused graphs generate the same greedy tokens', async () => {
    const a = await collect(models.plain!, PROMPT, { maxTokens: 16, ignoreEos: true });
    const b = await collect(models.fused!, PROMPT, { maxTokens: 16, ignoreEos: true });
    expect(b).toEqual(a);
  });

  it('respects maxTokens exactly', async () => {
    const r = await models.plain!.generateText(PROMPT, { maxTokens: 7, ignoreEos: true });
    expect(r.tokens).toHaveLength(7);
    expect(r.stopReason).toBe('max-tokens');
    expect(r.promptTokens).toBe(PROMPT.length);
  });

  it('stops at a stop token without emitting it', async () => {
    const greedy = await collect(models.plain!, PROMPT, { maxTokens: 16, ignoreEos: true });
    // The first position whose token did not occur before it.
    const k = greedy.findIndex((t, i) => i > 0 && !greedy.slice(0, i).includes(t));
    expect(k).toBeGreaterThan(0);
    const r = await models.plain!.generateText(PROMPT, { maxTokens: 16, stopTokens: [greedy[k]!] });
    expect(r.tokens).toEqual(greedy.slice(0, k));
    expect(r.stopReason).toBe('stop-token');
  });

  it('stops at end-of-text unless told to ignore it', async () => {
    const greedy = await collect(models.plain!, PROMPT, { maxTokens: 16, ignoreEos: true });
    const eos = greedy[2]!;
    const tokenizer = { ...charTokenizer(), eosTokenId: eos };
    const m = await loadLanguageModel(plainPath, { tokenizer, intraOpNumThreads: 1 });
    try {
      const stopped = await m.generateText(PROMPT, { maxTokens: 16 });
      expect(stopped.tokens).toEqual(greedy.slice(0, greedy.indexOf(eos)));
      expect((await m.generateText(PROMPT, { maxTokens: 16, ignoreEos: true })).tokens).toEqual(greedy);
    } finally {
      await m.dispose();
    }
  });

  it('stops when the context is full', async () => {
    const prompt = Array.from({ length: 30 }, (_, i) => i % 60);
    const r = await models.plain!.generateText(prompt, { maxTokens: 10, ignoreEos: true });
    // 30 prompt tokens + 2 fed back = 32 positions; the third token is predicted from position 31.
    expect(r.tokens).toHaveLength(3);
    expect(r.stopReason).toBe('context-full');
    expect(() => models.plain!.generate(Array.from({ length: 32 }, () => 1))).toThrow(/context length is 32/);
  });

  it('top-k 1 equals greedy', async () => {
    const greedy = await collect(models.plain!, PROMPT, { maxTokens: 12, ignoreEos: true });
    const topk = await collect(models.plain!, PROMPT, { maxTokens: 12, ignoreEos: true, temperature: 1.3, topK: 1, seed: 99 });
    expect(topk).toEqual(greedy);
  });

  it('temperature sampling is deterministic for a seed', async () => {
    const opts = { maxTokens: 16, ignoreEos: true, temperature: 1, topP: 0.95, seed: 1234 };
    const a = await collect(models.plain!, PROMPT, opts);
    const b = await collect(models.fused!, PROMPT, opts);
    const c = await collect(models.plain!, PROMPT, { ...opts, seed: 4321 });
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it('overlapping generations on one model do not interfere', async () => {
    const prompts = [PROMPT, [1, 2, 3], [60, 61, 62, 0, 0, 7]];
    const sequential: number[][] = [];
    for (const p of prompts) sequential.push(await collect(models.plain!, p, { maxTokens: 10, ignoreEos: true }));
    const parallel = await Promise.all(prompts.map((p) => collect(models.plain!, p, { maxTokens: 10, ignoreEos: true })));
    expect(parallel).toEqual(sequential);
  });

  it('streams text for a string prompt and reports timings', async () => {
    const pieces: string[] = [];
    let index = 0;
    for await (const t of models.plain!.generate('hello world', { maxTokens: 8, ignoreEos: true })) {
      expect(t.index).toBe(index++);
      pieces.push(t.text);
    }
    const r = await models.plain!.generateText('hello world', { maxTokens: 8, ignoreEos: true });
    expect(pieces.join('')).toBe(r.text);
    expect(r.text).toBe(charTokenizer().decode(r.tokens));
    expect(r.firstTokenMs).toBeGreaterThan(0);
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    expect(r.totalMs).toBeGreaterThanOrEqual(r.firstTokenMs);
  });

  it('aborts on a signal', async () => {
    const ac = new AbortController();
    const got: number[] = [];
    for await (const t of models.plain!.generate(PROMPT, { maxTokens: 20, ignoreEos: true, signal: ac.signal })) {
      got.push(t.tokenId);
      if (got.length === 3) ac.abort();
    }
    expect(got).toHaveLength(3);
  });

  it('validates options and prompts', () => {
    expect(() => models.plain!.generate(PROMPT, { maxTokens: 0 })).toThrow(ValidationError);
    expect(() => models.plain!.generate(PROMPT, { temperature: -1 })).toThrow(/temperature/);
    expect(() => models.plain!.generate([64])).toThrow(/\[0, 64\)/);
  });
});

describe('a model exported without a KV cache', () => {
  it('recomputes the whole sequence each step', async () => {
    // logits_t = (sum of embed[token_i] for i <= t) x W: every step depends on the whole history,
    // so feeding only the new token would give different logits.
    const V = 8;
    const E = 4;
    const embed = Float32Array.from({ length: V * E }, (_, i) => Math.sin(i + 1));
    const w = Float32Array.from({ length: E * V }, (_, i) => Math.cos(3 * i));
    const g = new GraphBuilder();
    g.input('input_ids', DataType.INT64, ['batch_size', 'sequence_length']);
    g.initFloat('embed_tokens.weight', embed, [V, E]);
    g.initFloat('head', w, [E, V]);
    const h = g.op('Gather', ['embed_tokens.weight', 'input_ids']);
    const c = g.op('CumSum', [h, g.constInt64([1], [])]);
    g.op('MatMul', [c, 'head'], {}, 'logits');
    g.output('logits', DataType.FLOAT, ['batch_size', 'sequence_length', V]);
    const p = path.join(dir, 'cumsum.onnx');
    await saveOnnxModel(g.toModel({ graphName: 'cumsum', opsets: { '': 17 } }), p);
    const tokenizer = { ...charTokenizer(), vocabSize: V, eosTokenId: undefined };
    const m = await loadLanguageModel(p, { tokenizer, contextLength: 16 });
    try {
      expect(m.info.numLayers).toBe(0);
      const sum = new Float64Array(E);
      const next = (t: number) => {
        for (let k = 0; k < E; k++) sum[k] += embed[t * E + k]!;
        let best = 0;
        let bestValue = -Infinity;
        for (let j = 0; j < V; j++) {
          let v = 0;
          for (let k = 0; k < E; k++) v += sum[k]! * w[k * V + j]!;
          if (v > bestValue) [best, bestValue] = [j, v];
        }
        return best;
      };
      next(1);
      const expected: number[] = [];
      let t = next(3);
      for (let i = 0; i < 6; i++) {
        expected.push(t);
        t = next(t);
      }
      expect((await m.generateText([1, 3], { maxTokens: 6 })).tokens).toEqual(expected);
    } finally {
      await m.dispose();
    }
  });
});

describe('bad model files', () => {
  it('a missing file', async () => {
    await expect(loadLanguageModel(path.join(dir, 'nope.onnx'))).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
  });

  it('garbage bytes', async () => {
    const p = path.join(dir, 'garbage.onnx');
    await fs.writeFile(p, Buffer.from('this is not an onnx model at all, just text'.repeat(10)));
    const err = await loadLanguageModel(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).message).toMatch(/not a valid ONNX model/);
  });

  it('a truncated model', async () => {
    const bytes = await fs.readFile(plainPath);
    const p = path.join(dir, 'truncated.onnx');
    await fs.writeFile(p, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const err = await loadLanguageModel(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).message).toMatch(/truncated/);
  });

  it('a model whose graph bytes are corrupted', async () => {
    const bytes = Buffer.from(await fs.readFile(plainPath));
    // Overwrite the first node (protobufjs writes GraphProto.node first), breaking tags and lengths.
    const at = bytes.indexOf('input_ids');
    expect(at).toBeGreaterThan(0);
    bytes.fill(0xff, at - 8, at + 56);
    const p = path.join(dir, 'corrupt.onnx');
    await fs.writeFile(p, bytes);
    const err = await loadLanguageModel(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).message).toMatch(/corrupt\.onnx/);
  });

  it('a valid ONNX model that is not a causal LM', async () => {
    const g = new GraphBuilder();
    g.input('x', DataType.FLOAT, [1, 4]);
    g.op('Identity', ['x'], {}, 'y');
    g.output('y', DataType.FLOAT, [1, 4]);
    const p = path.join(dir, 'identity.onnx');
    await saveOnnxModel(g.toModel({ graphName: 'identity', opsets: { '': 17 } }), p);
    await expect(loadLanguageModel(p)).rejects.toThrow(/needs an int64 input "input_ids"; inputs are x:float32\[1,4\]/);
  });

  it('external data: loads, then fails cleanly when the data file is truncated or missing', async () => {
    const outPath = path.join(dir, 'ext', 'tiny.onnx');
    const built = await buildModelFile(TINY, { outPath, seed: 7, externalData: 'always' });
    const m = await loadLanguageModel(outPath, { tokenizer: charTokenizer(), intraOpNumThreads: 1 });
    expect((await m.generateText(PROMPT, { maxTokens: 8, ignoreEos: true })).tokens).toEqual(
      (await models.plain!.generateText(PROMPT, { maxTokens: 8, ignoreEos: true })).tokens,
    );
    await m.dispose();
    const data = await fs.readFile(built.externalDataPath!);
    await fs.writeFile(built.externalDataPath!, data.subarray(0, data.length >> 1));
    await expect(loadLanguageModel(outPath)).rejects.toThrow(/cannot load ONNX model .*out of bounds/);
    await fs.rm(built.externalDataPath!);
    await expect(loadLanguageModel(outPath)).rejects.toThrow(/does not exist/);
  });

  it('an empty file', async () => {
    const p = path.join(dir, 'empty.onnx');
    await fs.writeFile(p, '');
    await expect(loadLanguageModel(p)).rejects.toThrow(/empty/);
  });

  it('a disposed model refuses to generate', async () => {
    const m = await loadLanguageModel(plainPath, { tokenizer: charTokenizer(), intraOpNumThreads: 1 });
    await m.dispose();
    await expect(m.generateText(PROMPT, { maxTokens: 2 })).rejects.toMatchObject({ code: 'MODEL_DISPOSED' });
  });
});
