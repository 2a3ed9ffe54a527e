// Byte-level BPE: exact round trips on any UTF-8, learned merges that compress the corpus, the
// JSON file's validation, and determinism.
import { describe, expect, it } from 'vitest';
import { BpeFileSchema, bpeTokenizer, trainBpe } from '../../../models/training/bpe-trainer.ts';
import { StreamingDecoder } from '../../../models/runtime/tokenizer.ts';

const corpus = ['the cat sat on the mat. the cat ate the rat.', 'a whale! a whale! thar she blows — über café 🐋'];

describe('byte-level BPE', () => {
  it('learns frequent pairs first and compresses the corpus', () => {
    const file = trainBpe(corpus, 300);
    const tok = bpeTokenizer(file);
    // "at" occurs 6 times inside pre-tokens (cat x2, sat, mat, ate, rat), more than any other pair.
    expect(tok.decode([256])).toBe('at');
    const bytes = new TextEncoder().encode(corpus[0]!).length;
    expect(tok.encode(corpus[0]!).length).toBeLessThan(bytes * 0.6);
    expect(tok.eosTokenId).toBe(file.vocabSize - 1);
    expect(tok.decode([tok.eosTokenId!])).toBe('<|endoftext|>');
  });

  it('round-trips unseen text, including multi-byte characters, also when streamed', () => {
    const tok = bpeTokenizer(trainBpe(corpus, 320));
    const text = 'Zoë saw 3 whales — 🐳🐋 — and said "thar!"\n\ttabs too';
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    const stream = new StreamingDecoder(tok);
    expect(ids.map((id) => stream.push(id)).join('') + stream.flush()).toBe(text);
    expect(Math.max(...ids)).toBeLessThan(tok.vocabSize);
  });

  it('is deterministic and its file validates; a corrupt file is refused', () => {
    const a = trainBpe(corpus, 290);
    expect(trainBpe(corpus, 290)).toEqual(a);
    expect(BpeFileSchema.safeParse(JSON.parse(JSON.stringify(a))).success).toBe(true);
    const broken = { ...a, merges: [[a.vocabSize + 5, 1], ...a.merges.slice(1)] };
    const parsed = BpeFileSchema.safeParse(broken);
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues[0]!.message).toMatch(/does not exist yet/);
    expect(() => trainBpe(corpus, 100)).toThrow(/--vocab must be an integer in \[257, 65536\]/);
  });
});
