// The publish-time bundle check against real onnxruntime sessions: a tiny model passes; a text file, a
// tokenizer of another vocabulary, NaN weights and all-zero weights are refused with their own codes.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { ValidationError } from '../../../common/errors.ts';
import { initWeights } from '../../../models/arch/weights.ts';
import { buildDecoderModel } from '../../../models/onnx/build-decoder.ts';
import { saveOnnxModel } from '../../../models/onnx/proto.ts';
import { checkBundle } from '../../../models/runtime/bundle-check.ts';
import { gpt2Tokenizer } from '../../../models/runtime/tokenizer.ts';
import { bpeTokenizer, trainBpe } from '../../../models/training/bpe-trainer.ts';
import { TINY_GPT2_SPEC, writeTinyModel } from '../../helpers/tiny-model.ts';
import { tempDir } from './fixtures.ts';

let dir: string;
let good: string;

/** A tiny model whose weights `edit` changed before the graph was built. */
async function modelWith(name: string, edit: (w: ReturnType<typeof initWeights>) => void): Promise<string> {
  const weights = initWeights(TINY_GPT2_SPEC, 4);
  edit(weights);
  const out = path.join(dir, name, 'model.onnx');
  await saveOnnxModel(buildDecoderModel(TINY_GPT2_SPEC, weights, { fused: false, activation: 'gelu' }), out, { externalData: 'never' });
  return out;
}

async function refusal(p: Promise<unknown>): Promise<ValidationError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ValidationError);
  return err as ValidationError;
}

beforeAll(async () => {
  dir = tempDir('bundle-check');
  await writeTinyModel(dir, { seed: 2 });
  good = path.join(dir, 'model.onnx');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('checkBundle', () => {
  it('passes a model that loads, fits GPT-2 and yields finite logits, and names the greedy first token', async () => {
    const r = await checkBundle({ modelPath: good, tokenizer: gpt2Tokenizer(), tokenizerSource: 'gpt2' });
    expect(r).toMatchObject({ modelVocabSize: 50257, tokenizerVocabSize: 50257, promptTokens: 1 });
    expect(r.tokenId).toBeGreaterThanOrEqual(0);
    expect(r.tokenId).toBeLessThan(50257);
    expect(r.tokenText).toBe(gpt2Tokenizer().decode([r.tokenId]));
  });

  it('refuses a text file named model.onnx with VALIDATION_BUNDLE_LOAD', async () => {
    const fake = path.join(dir, 'fake.onnx');
    writeFileSync(fake, 'this is a text file, not a model\n');
    const err = await refusal(checkBundle({ modelPath: fake, tokenizer: gpt2Tokenizer(), tokenizerSource: 'gpt2' }));
    expect(err.code).toBe('VALIDATION_BUNDLE_LOAD');
    expect(err.message).toMatch(/must load in onnxruntime; .*fake\.onnx does not/);
  });

  it('refuses a tokenizer of another vocabulary with VALIDATION_BUNDLE_VOCAB, naming both sizes', async () => {
    const small = bpeTokenizer(trainBpe(['the quick brown fox jumps over the lazy dog '.repeat(20)], 300));
    const err = await refusal(checkBundle({ modelPath: good, tokenizer: small, tokenizerSource: 'small/tokenizer.json' }));
    expect(err.code).toBe('VALIDATION_BUNDLE_VOCAB');
    expect(err.message).toMatch(new RegExp(`logits cover 50257 ids but the tokenizer has ${small.vocabSize}`));
    expect(err.message).toContain('small/tokenizer.json');
  });

  it('refuses NaN weights and all-zero weights with VALIDATION_BUNDLE_LOGITS', async () => {
    const nan = await modelWith('nan', (w) => w.get('final_ln.weight')!.data.fill(Number.NaN));
    const e1 = await refusal(checkBundle({ modelPath: nan, tokenizer: gpt2Tokenizer(), tokenizerSource: 'gpt2' }));
    expect(e1.code).toBe('VALIDATION_BUNDLE_LOGITS');
    expect(e1.message).toMatch(/finite logits; \d+ of 50257 values/);
    const zero = await modelWith('zero', (w) => w.get('embed_tokens.weight')!.data.fill(0));
    const e2 = await refusal(checkBundle({ modelPath: zero, tokenizer: gpt2Tokenizer(), tokenizerSource: 'gpt2' }));
    expect(e2.code).toBe('VALIDATION_BUNDLE_LOGITS');
    expect(e2.message).toMatch(/equal for every token/);
  });
});
