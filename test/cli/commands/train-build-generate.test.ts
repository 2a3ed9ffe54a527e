// `fleetlm train` -> `build` -> `generate`/`perplexity` through the CLI entry, with a corpus BPE: build carries
// the checkpoint's tokenizer beside the model (and records its size in the ONNX metadata), so the chain
// works; without it, generate names the tokenizer.json it looked for, and build names the checkpoint's.
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { copyFileSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareBundle } from '../../../fleet/publisher.ts';

let dir: string;
const ckpt = (): string => path.join(dir, 'ckpt', 'm.safetensors');
const out = (): string => path.join(dir, 'bundle');

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-chain-'));
  mkdirSync(path.join(dir, 'ckpt'));
  const para = (i: number): string => `Chapter ${i}. The whale swam past the ship, and the sailors sang of the sea. `.repeat(6);
  await writeFile(path.join(dir, 'a.txt'), [1, 2, 3].map(para).join('\n\n'));
  await writeFile(path.join(dir, 'b.txt'), [4, 5, 6].map(para).join('\n\n'));
  // vocabSize well above what a BPE learns from this text: the tokenizer ends up smaller than the logits.
  await writeFile(path.join(dir, 'arch.json'), JSON.stringify({ name: 'chain-tiny', vocabSize: 2048, contextLength: 32, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }] }));
  const trained = await runCliCaptured(['train', '--arch', path.join(dir, 'arch.json'), '--text', path.join(dir, 'a.txt'), path.join(dir, 'b.txt'), '--seq', '16', '--batch', '2', '--tokens', '64', '--tokenizer', 'bpe', '--out', ckpt(), '--json']);
  expect(trained.stderr).toBe('');
  expect(trained.code).toBe(0);
  expect(existsSync(path.join(dir, 'ckpt', 'm.tokenizer.json'))).toBe(true);
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('train -> build -> generate', () => {
  it('build carries the checkpoint tokenizer beside the model; generate, perplexity and the publish check use it', async () => {
    const built = await runCliCaptured(['build', '--arch', path.join(dir, 'arch.json'), '--weights', ckpt(), '--out', path.join(out(), 'model.onnx'), '--json']);
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    const summary = JSON.parse(built.stdout) as { tokenizer: { source: string; from: string; path: string; vocabSize: number } };
    expect(summary.tokenizer).toMatchObject({ source: 'file', from: path.join(dir, 'ckpt', 'm.tokenizer.json'), path: path.join(out(), 'tokenizer.json') });
    expect(summary.tokenizer.vocabSize).toBeLessThan(2048);

    const gen = await runCliCaptured(['generate', '--model', path.join(out(), 'model.onnx'), '--prompt', 'The whale', '--max-tokens', '4', '--ignore-eos', '--json']);
    expect(gen.stderr).toBe('');
    expect(gen.code).toBe(0);
    const g = JSON.parse(gen.stdout) as { tokens?: number[]; model?: { tokenizer: string } };
    expect(g.model?.tokenizer).toBe(path.join(out(), 'tokenizer.json'));

    const ppl = await runCliCaptured(['perplexity', '--model', path.join(out(), 'model.onnx'), '--text', path.join(dir, 'b.txt'), '--json']);
    expect(ppl.code).toBe(0);
    expect(JSON.parse(ppl.stdout).perplexity).toBeGreaterThan(1);

    // The bundle check accepts the smaller tokenizer because the model records its exact size.
    const bundle = await prepareBundle({ modelDir: out(), modelId: 'chain', version: '1' });
    expect(bundle.check).toMatchObject({ tokenizerVocabSize: summary.tokenizer.vocabSize, modelVocabSize: 2048 });
  }, 60_000);

  it('generate and perplexity name the missing tokenizer.json instead of failing on a token id', async () => {
    const moved = path.join(dir, 'elsewhere.tokenizer.json');
    renameSync(path.join(out(), 'tokenizer.json'), moved);
    try {
      for (const args of [
        ['generate', '--model', path.join(out(), 'model.onnx'), '--prompt', 'The whale', '--max-tokens', '4'],
        ['perplexity', '--model', path.join(out(), 'model.onnx'), '--text', path.join(dir, 'b.txt')],
      ]) {
        const r = await runCliCaptured(args);
        expect(r.code, args[0]).toBe(2);
        expect(r.stderr).not.toMatch(/token id must be an integer/);
        expect(r.stderr).toContain(`no tokenizer.json beside the model (looked for ${path.join(out(), 'tokenizer.json')})`);
        expect(r.stderr).toMatch(/the tokenizer has 50257 ids but the model's logits cover 2048/);
      }
      // --tokenizer points at the file wherever it is.
      const other = await runCliCaptured(['generate', '--model', path.join(out(), 'model.onnx'), '--prompt', 'x', '--tokenizer', path.join(dir, 'ckpt', 'm.tokenizer.json'), '--max-tokens', '1']);
      expect(other.code).toBe(0);
    } finally {
      renameSync(moved, path.join(out(), 'tokenizer.json'));
    }
  }, 60_000);

  it("build refuses a checkpoint whose recorded tokenizer is not beside it, naming it and where it looked", async () => {
    const lone = path.join(dir, 'lone');
    mkdirSync(lone);
    copyFileSync(ckpt(), path.join(lone, 'm.safetensors'));
    const r = await runCliCaptured(['build', '--arch', path.join(dir, 'arch.json'), '--weights', path.join(lone, 'm.safetensors'), '--out', path.join(lone, 'out', 'model.onnx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('was trained with tokenizer bpe:m.tokenizer.json');
    expect(r.stderr).toContain(path.join(lone, 'm.tokenizer.json'));
    expect(existsSync(path.join(lone, 'out', 'model.onnx'))).toBe(false);
    // --tokenizer names it explicitly.
    const ok = await runCliCaptured(['build', '--arch', path.join(dir, 'arch.json'), '--weights', path.join(lone, 'm.safetensors'), '--tokenizer', path.join(dir, 'ckpt', 'm.tokenizer.json'), '--out', path.join(lone, 'out', 'model.onnx')]);
    expect(ok.code).toBe(0);
    expect(existsSync(path.join(lone, 'out', 'tokenizer.json'))).toBe(true);
  }, 60_000);
});
