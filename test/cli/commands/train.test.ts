// `fleetlm train` through the CLI entry: a byte-level BPE trained on the text, a checkpoint that
// `fleetlm build --weights` accepts, resume, and errors for bad input.
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadBpeTokenizer } from '../../../models/training/bpe-trainer.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-train-cli-'));
  const para = (i: number): string => `Chapter ${i}. The whale swam past the ship, and the sailors sang of the sea. `.repeat(6);
  await writeFile(path.join(dir, 'a.txt'), [1, 2, 3].map(para).join('\n\n'));
  await writeFile(path.join(dir, 'b.txt'), [4, 5, 6].map(para).join('\n\n'));
  await writeFile(
    path.join(dir, 'arch.json'),
    JSON.stringify({ name: 'cli-tiny', vocabSize: 300, contextLength: 16, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }] }),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = runCliCaptured;

describe('fleetlm train', () => {
  it('trains with a corpus BPE, writes checkpoint + tokenizer, builds to ONNX, and resumes', async () => {
    const out = path.join(dir, 'm.safetensors');
    const common = ['--arch', path.join(dir, 'arch.json'), '--text', path.join(dir, 'a.txt'), path.join(dir, 'b.txt'), '--seq', '16', '--batch', '2', '--lr', '3e-3', '--tokenizer', 'bpe', '--json'];
    const r = await run(['train', ...common, '--tokens', '96', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.steps).toBe(3);
    // Two files are two documents: one trains, one validates.
    expect([summary.trainDocuments, summary.validationDocuments]).toEqual([1, 1]);
    expect(summary.evalLoss).toBeGreaterThan(0);
    expect(existsSync(path.join(dir, 'm.train-state.safetensors'))).toBe(true);
    const tok = await loadBpeTokenizer(path.join(dir, 'm.tokenizer.json'));
    expect(tok.vocabSize).toBeLessThanOrEqual(300);
    expect(tok.decode(tok.encode('The whale swam.'))).toBe('The whale swam.');

    const built = await run(['build', '--arch', path.join(dir, 'arch.json'), '--weights', out, '--out', path.join(dir, 'm.onnx'), '--json']);
    expect(built.code).toBe(0);
    expect(JSON.parse(built.stdout).weights.source).toBe('checkpoint');

    const resumed = await run(['train', ...common, '--tokens', '160', '--out', out, '--resume', out]);
    expect(resumed.code).toBe(0);
    const s2 = JSON.parse(resumed.stdout);
    expect(s2.steps).toBe(5);
    expect(s2.stepsThisRun).toBe(2);
    expect(s2.tokensSeen).toBe(160);
  }, 60_000);

  it('rejects a tokenizer larger than the vocabulary and bad flags with exit 2', async () => {
    const base = ['train', '--arch', path.join(dir, 'arch.json'), '--text', path.join(dir, 'a.txt'), '--tokens', '10', '--out', path.join(dir, 'x.safetensors')];
    const r = await run(base);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/tokenizer gpt2 has 50257 ids but the architecture's vocabSize is 300/);
    const bad = await run([...base, '--seq', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/seq/);
    const badOut = await run(['train', '--arch', path.join(dir, 'arch.json'), '--text', 'moby-dick', '--tokens', '10', '--out', path.join(dir, 'x.bin')]);
    expect(badOut.code).toBe(2);
    expect(badOut.stderr).toMatch(/--out \(got "[^"]*"\): must end in \.safetensors/);
  });
});
