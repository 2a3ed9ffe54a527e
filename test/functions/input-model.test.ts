// The pipeline's model steps on trained inputs instead of random weights: a FleetLM checkpoint (as `fleetlm
// train` leaves it, with its BPE tokenizer) and a Hugging Face folder under inputs/, through search (the
// model's own figures), build (the tokenizer beside the model), compress (tokenizer carried) and evaluate
// (perplexity with the model's tokenizer). A checkpoint without its tokenizer is refused at build.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler as search } from '../../functions/search.ts';
import { handler as build } from '../../functions/build.ts';
import { handler as compress } from '../../functions/compress.ts';
import { handler as evaluate } from '../../functions/evaluate.ts';
import type { Shard } from '../../functions/shared/events.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { initWeights } from '../../models/arch/weights.ts';
import { saveCheckpoint } from '../../models/training/checkpoint.ts';
import { saveBpe, trainBpe } from '../../models/training/bpe-trainer.ts';
import { llamaFixture, writeHfFolder } from '../models/checkpoint/hf-fixtures.ts';
import { startHandlerFixture, tinyShard, type HandlerFixture } from './fixture.ts';

let fx: HandlerFixture;
let s3: S3Client;
let dir: string;
const SPEC = parseArchSpec({ name: 'ckpt-tiny', vocabSize: 320, contextLength: 64, blocks: [{ width: 32, ffnRatio: 2, layers: 1, heads: 2, headDim: 16 }] });

async function upload(localDir: string, prefix: string, skip: string[] = []): Promise<void> {
  for (const name of readdirSync(localDir)) {
    if (skip.includes(name)) continue;
    await s3.send(new PutObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: `${prefix}${name}`, Body: readFileSync(path.join(localDir, name)) }));
  }
}

function shard(runId: string, model: Shard['model']): Shard {
  return { ...tinyShard(), runId, model };
}

beforeAll(async () => {
  fx = await startHandlerFixture();
  s3 = new S3Client({ region: fx.hub.endpoints.region, endpoint: fx.hub.endpoints.s3.endpoint, forcePathStyle: true, credentials: fx.hub.endpoints.credentials });
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-input-model-'));
  // What `fleetlm train --tokenizer bpe --out m.safetensors` leaves: arch, checkpoint (metadata names its tokenizer), tokenizer.
  const ckpt = path.join(dir, 'ckpt');
  const text = 'The whale swam past the ship, and the sailors sang of the sea. '.repeat(40);
  await saveBpe(path.join(ckpt, 'm.tokenizer.json'), trainBpe([text], 320));
  await saveCheckpoint(path.join(ckpt, 'm.safetensors'), SPEC, initWeights(SPEC, 3), { tokenizer: 'bpe:m.tokenizer.json' });
  writeFileSync(path.join(ckpt, 'arch.json'), JSON.stringify(SPEC));
  await upload(ckpt, 'inputs/ckpt/');
  await upload(ckpt, 'inputs/ckpt-no-tokenizer/', ['m.tokenizer.json']);
  const hf = path.join(dir, 'hf');
  const f = llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 48, hidden: 32, intermediate: 40, layers: 2, heads: 4, kvHeads: 2, tied: false, dtype: 'F32', seed: 1 });
  writeHfFolder(hf, { config: f.config, tensors: f.tensors, dtype: 'F32', generationConfig: { eos_token_id: 0, do_sample: false } });
  await upload(hf, 'inputs/hf/');
}, 60_000);

afterAll(async () => {
  await fx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('model steps on a trained input model', () => {
  it('a FleetLM checkpoint: search reports its own figures, build carries its tokenizer, compress keeps it, evaluate scores with it', async () => {
    const searched = await search(shard('ckpt-run', { kind: 'checkpoint', prefix: 'inputs/ckpt/' }));
    expect(searched.search.parameters).toBeGreaterThan(0);
    expect(searched.search.latencyMs).toBeNull();
    const built = await build(searched);
    expect(built.build.files).toEqual(['arch.json', 'model.onnx', 'tokenizer.json']);
    const compressed = await compress(built);
    expect(compressed.compress.files).toEqual(['arch.json', 'compression.json', 'model.onnx', 'tokenizer.json']);
    const evaluated = await evaluate(compressed);
    // GPT-2's 50,257 ids would not fit this 320-id model: evaluate ran with the checkpoint's BPE.
    expect(evaluated.evaluate.baselinePerplexity).toBeGreaterThan(1);
    expect(evaluated.evaluate.tokens).toBeGreaterThan(10);
  }, 120_000);

  it('a Hugging Face folder: build imports it with its tokenizer and generation defaults', async () => {
    const searched = await search(shard('hf-run', { kind: 'huggingface', prefix: 'inputs/hf/' }));
    expect(searched.search.parameters).toBeGreaterThan(0);
    const built = await build(searched);
    expect(built.build.files).toEqual(expect.arrayContaining(['arch.json', 'generation.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']));
  }, 60_000);

  it('a checkpoint whose tokenizer was not uploaded: build refuses it, naming the tokenizer', async () => {
    const searched = await search(shard('no-tok-run', { kind: 'checkpoint', prefix: 'inputs/ckpt-no-tokenizer/' }));
    await expect(build(searched)).rejects.toThrow(/was trained with tokenizer bpe:m\.tokenizer\.json .* not beside it/);
  }, 60_000);
});
