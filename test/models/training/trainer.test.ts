// The training loop end to end: a tiny model overfits a tiny text, checkpoints round-trip and resume
// bit-exactly, bad checkpoints are refused clearly, and the trained weights built into ONNX by the
// builder give the trainer's logits under onnxruntime.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { initWeights } from '../../../models/arch/weights.ts';
import { loadWeights, saveCheckpoint, statePathFor } from '../../../models/training/checkpoint.ts';
import { BatchSampler, splitDocuments, tokenizeDocuments } from '../../../models/training/data.ts';
import { TrainableDecoder } from '../../../models/training/model.ts';
import { learningRate } from '../../../models/training/optimizer.ts';
import { trainingInitWeights } from '../../../models/training/init.ts';
import { trainModel } from '../../../models/training/trainer.ts';
import { gpt2Tokenizer } from '../../../models/runtime/tokenizer.ts';
import { emptyCache, maxAbs, maxAbsDiff, runStep, sessionFor, testWeights } from '../onnx/ort-run.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-train-'));

/** Bytes of a text as token ids (vocab 256): no tokenizer needed for the loop tests. */
const bytesOf = (text: string): Int32Array => Int32Array.from(new TextEncoder().encode(text));

const TEXT = 'the quick brown fox jumps over the lazy dog. '.repeat(12);

const tiny = parseArchSpec({
  vocabSize: 256,
  contextLength: 32,
  blocks: [{ width: 32, ffnRatio: 2, layers: 2, heads: 2, headDim: 16 }],
});

/** Projections, a shared-weight block, A != E and an untied head: every layer kind the builder emits. */
const mixed = parseArchSpec({
  vocabSize: 256,
  contextLength: 16,
  positionOffset: 2,
  embeddingWidth: 24,
  blocks: [
    { width: 32, ffnRatio: 2, layers: 1, heads: 2, headDim: 12 },
    { width: 40, ffnRatio: 1.5, layers: 2, heads: 2, headDim: 8, shareWeights: true },
  ],
  tiedHead: true,
});

describe('trainer', () => {
  it('overfits a tiny repeated text (loss from ~ln 256 to below 0.5)', async () => {
    const stream = bytesOf(TEXT);
    const result = await trainModel({ spec: tiny, train: stream, validation: stream, tokenizer: 'bytes', tokens: 150 * 4 * 32, seq: 32, batch: 4, lr: 3e-3, warmup: 10, seed: 1 });
    expect(result.history[0]!.loss).toBeGreaterThan(5);
    expect(result.finalLoss).toBeLessThan(0.5);
    expect(result.evalLoss!).toBeLessThan(0.5);
    expect(result.tokensPerSecond).toBeGreaterThan(0);
  }, 60_000);

  it('resumes from a checkpoint with the same next-step losses as an uninterrupted run', async () => {
    const stream = bytesOf(TEXT);
    const base = { spec: mixed, train: stream, validation: stream.subarray(0, 100), tokenizer: 'bytes', tokens: 8 * 2 * 16, seq: 16, batch: 2, lr: 2e-3, warmup: 2, seed: 5, evalEvery: 0 };
    const straight = await trainModel({ ...base, out: path.join(dir, 'straight.safetensors') });
    const out = path.join(dir, 'resumed.safetensors');
    const first = await trainModel({ ...base, out, maxStepsThisRun: 3 });
    expect(first.stepsThisRun).toBe(3);
    const second = await trainModel({ ...base, out, resume: out });
    expect(second.stepsThisRun).toBe(5);
    expect(second.history.map((h) => h.loss)).toEqual(straight.history.slice(3).map((h) => h.loss));
    expect(readFileSync(out)).toEqual(readFileSync(path.join(dir, 'straight.safetensors')));
  }, 60_000);

  it('round-trips weights through a checkpoint and refuses corrupt or mismatched ones', async () => {
    const weights = initWeights(mixed, 11);
    const file = path.join(dir, 'rt.safetensors');
    await saveCheckpoint(file, mixed, weights, { tokenizer: 'bytes' });
    const loaded = await loadWeights(file, mixed);
    for (const [name, t] of weights) expect(loaded.weights.get(name)!.data, name).toEqual(t.data);
    expect(loaded.tokenizer).toBe('bytes');

    await expect(loadWeights(file, tiny)).rejects.toThrow(/different architecture/);
    const bytes = readFileSync(file);
    const truncated = path.join(dir, 'truncated.safetensors');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 10));
    await expect(loadWeights(truncated, mixed)).rejects.toThrow(/past the data buffer/);
    await expect(loadWeights(path.join(dir, 'missing.safetensors'), mixed)).rejects.toThrow(/cannot read checkpoint .*ENOENT/);

    // A sidecar from another save is refused on resume.
    const stream = bytesOf(TEXT);
    const base = { spec: mixed, train: stream, validation: stream, tokenizer: 'bytes', tokens: 2 * 2 * 16, seq: 16, batch: 2, lr: 1e-3, seed: 2 };
    const a = path.join(dir, 'a.safetensors');
    await trainModel({ ...base, out: a });
    const tampered = Buffer.from(readFileSync(a));
    tampered[tampered.length - 1]! ^= 0x40;
    writeFileSync(a, tampered);
    await expect(trainModel({ ...base, out: a, resume: a })).rejects.toThrow(/belongs to other weights/);
    // Changed settings are refused by name.
    const b = path.join(dir, 'b.safetensors');
    await trainModel({ ...base, out: b });
    await expect(trainModel({ ...base, batch: 3, out: b, resume: b })).rejects.toThrow(/batch = 2, this run has 3/);
    writeFileSync(statePathFor(b), 'garbage');
    await expect(trainModel({ ...base, out: b, resume: b })).rejects.toThrow(/training state .*header/);
  }, 60_000);

  it('ONNX model built from the checkpoint (fleetlm layout) gives the trainer logits within 1e-4', async () => {
    const stream = bytesOf(TEXT);
    const ckpt = path.join(dir, 'onnx.safetensors');
    const trained = await trainModel({ spec: mixed, train: stream, validation: stream, tokenizer: 'bytes', tokens: 5 * 2 * 16, seq: 16, batch: 2, lr: 3e-3, seed: 3, out: ckpt,
      // Scaled-up init (the builder tests' helper) so that logits are large and every path matters.
      initialWeights: testWeights(initWeights(mixed, 3)) });
    const onnxPath = path.join(dir, 'onnx.onnx');
    await buildModelFile(mixed, { outPath: onnxPath, weightsPath: ckpt, layout: 'fleetlm' });
    const session = await sessionFor(onnxPath);
    const ids = [Array.from(stream.subarray(0, 16)), Array.from(stream.subarray(20, 36))];
    const out = await runStep(session, {
      inputIds: ids,
      positionIds: ids.map((row) => row.map((_, i) => i)),
      attentionMask: ids.map((row) => row.map(() => 1)),
      past: emptyCache(mixed),
    });
    const mine = trained.model.logits(Int32Array.from(ids.flat()), 2);
    expect(out.dims).toEqual([2, 16, 256]);
    expect(maxAbs(mine)).toBeGreaterThan(1);
    expect(maxAbsDiff(out.logits, mine)).toBeLessThan(1e-4);
    // The reloaded checkpoint gives the same logits as the live model.
    const reloaded = new TrainableDecoder(mixed, (await loadWeights(ckpt, mixed)).weights);
    expect(maxAbsDiff(reloaded.logits(Int32Array.from(ids.flat()), 2), mine)).toBe(0);
  }, 60_000);
});

describe('schedule and data', () => {
  it('initialises width projections at std 1/sqrt(fan_in) and everything else as the builder does', () => {
    const base = initWeights(mixed, 4);
    const init = trainingInitWeights(mixed, 4);
    for (const [name, t] of init) {
      if (/^(project_in|project_out|block_proj\.\d+)\.weight$/.test(name)) {
        const std = Math.sqrt(t.data.reduce((s, v) => s + v * v, 0) / t.data.length);
        expect(std, name).toBeGreaterThan(0.8 / Math.sqrt(t.shape[0]!));
        expect(std, name).toBeLessThan(1.2 / Math.sqrt(t.shape[0]!));
      } else expect(t.data, name).toEqual(base.get(name)!.data);
    }
    expect([...init.keys()].filter((n) => /proj/.test(n))).toEqual(['project_in.weight', 'block_proj.1.weight', 'block_proj.1.bias', 'project_out.weight']);
  });

  it('warms up linearly, then decays by cosine to the floor', () => {
    expect(learningRate(0, 1, 10, 110)).toBeCloseTo(0.1, 12);
    expect(learningRate(9, 1, 10, 110)).toBeCloseTo(1, 12);
    expect(learningRate(60, 1, 10, 110)).toBeCloseTo(0.55, 12);
    expect(learningRate(110, 1, 10, 110)).toBeCloseTo(0.1, 12);
  });

  it('splits by whole documents and visits every window once per epoch', () => {
    const docs = Array.from({ length: 10 }, (_, i) => ({ id: `d${i}`, text: `document number ${i}. `.repeat(5) }));
    const { train, validation } = splitDocuments(docs, 0.2, 1);
    expect(validation).toHaveLength(2);
    expect(train).toHaveLength(8);
    expect(new Set([...train, ...validation].map((d) => d.id)).size).toBe(10);
    const stream = tokenizeDocuments(train, gpt2Tokenizer());
    expect(stream.filter((t) => t === 50256)).toHaveLength(8);
    const seq = 4;
    const sampler = new BatchSampler(Int32Array.from({ length: 41 }, (_, i) => i), seq, 7);
    expect(sampler.windows).toBe(10);
    const starts = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const b = sampler.next(2);
      starts.add(b[0]!);
      starts.add(b[5]!);
      expect(b[1]! - b[0]!).toBe(1);
    }
    expect([...starts].sort((x, y) => x - y)).toEqual([0, 4, 8, 12, 16, 20, 24, 28, 32, 36]);
    expect(sampler.position).toEqual({ epoch: 0, index: 10 });
  });
});
