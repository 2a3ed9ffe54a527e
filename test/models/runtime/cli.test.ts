import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { buildTiny, tempDir } from './fixtures.ts';

// A GPT-2-vocabulary model small enough to build in a moment, so the CLI's default tokenizer applies.
const SPEC = parseArchSpec({ name: 'gpt2-vocab-tiny', vocabSize: 50257, contextLength: 64, blocks: [{ width: 16, ffnRatio: 2, layers: 2, heads: 2, headDim: 8 }] });

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCliCaptured(args);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('fleetlm generate / perplexity', () => {
  const dir = tempDir('runtime-cli');
  let model = '';
  beforeAll(async () => {
    model = await buildTiny(dir, false, SPEC);
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('generates JSON with timings, and streams text otherwise', async () => {
    const json = await cli(['generate', '--model', model, '--prompt', 'Hello world', '--max-tokens', '5', '--ignore-eos', '--threads', '1', '--json']);
    expect(json.code).toBe(0);
    const r = JSON.parse(json.out) as { tokens: number[]; text: string; promptTokens: number; stopReason: string; firstTokenMs: number };
    expect(r.tokens).toHaveLength(5);
    expect(r.promptTokens).toBe(2);
    expect(r.stopReason).toBe('max-tokens');
    expect(r.firstTokenMs).toBeGreaterThan(0);
    const streamed = await cli(['generate', '--model', model, '--prompt', 'Hello world', '--max-tokens', '5', '--ignore-eos', '--threads', '1']);
    expect(streamed.code).toBe(0);
    expect(streamed.out).toBe(`${r.text}\n`);
    expect(streamed.err).toMatch(/5 tokens \(max-tokens\).*tokens\/s/);
  });

  it('computes perplexity of a text file', async () => {
    const text = path.join(dir, 'text.txt');
    await fs.writeFile(text, 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.');
    const r = await cli(['perplexity', '--model', model, '--text', text, '--window', '16', '--stride', '8', '--threads', '1', '--json']);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.out) as { perplexity: number; scoredTokens: number; totalTokens: number; window: number };
    expect(res.window).toBe(16);
    expect(res.scoredTokens).toBe(res.totalTokens - 1);
    // Random weights: close to the uniform perplexity over 50,257 ids.
    expect(Math.log(res.perplexity)).toBeGreaterThan(9);
    expect(Math.log(res.perplexity)).toBeLessThan(12);
  });

  it('exits 2 on bad flags and 1 on a bad model, with one-line reasons', async () => {
    const bad = await cli(['generate', '--model', model, '--prompt', 'x', '--top-p', '2']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--top-p/);
    const garbage = path.join(dir, 'garbage.onnx');
    await fs.writeFile(garbage, 'not a model');
    const broken = await cli(['generate', '--model', garbage, '--prompt', 'x']);
    expect(broken.code).toBe(1);
    expect(broken.err).toMatch(/not a valid ONNX model/);
    const noText = await cli(['perplexity', '--model', model, '--text', path.join(dir, 'missing.txt')]);
    expect(noText.code).toBe(2);
    expect(noText.err).toMatch(/cannot read the file \(ENOENT\)/);
  });
});
