import { describe, it, expect } from 'vitest';
import { gpt2Tokenizer, StreamingDecoder, tokenizerByName } from '../../../models/runtime/tokenizer.ts';
import { ValidationError } from '../../../common/errors.ts';

describe('gpt2Tokenizer', () => {
  const tok = gpt2Tokenizer();

  it('has GPT-2 vocabulary facts', () => {
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eosTokenId).toBe(50256);
    expect(tok.decode([50256])).toBe('<|endoftext|>');
  });

  it('encodes known answers', () => {
    // Ids as Hugging Face's GPT2TokenizerFast gives them for these strings.
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' the')).toEqual([262]);
  });

  it('round-trips text, including multi-byte characters', () => {
    for (const text of ['The quick brown fox.', 'café naïve — 東京 🙂', '  spaces\n\nnewlines\t']) {
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  it('treats special-token spellings in user text as plain text', () => {
    const ids = tok.encode('a <|endoftext|> b');
    expect(ids).not.toContain(50256);
    expect(tok.decode(ids)).toBe('a <|endoftext|> b');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([50257])).toThrow(RangeError);
  });

  it('is found by name', () => {
    expect(tokenizerByName('gpt2')).toBe(tok);
    expect(() => tokenizerByName('llama')).toThrow(ValidationError);
  });
});

describe('StreamingDecoder', () => {
  it('holds back bytes of a character split across tokens', () => {
    const tok = gpt2Tokenizer();
    const ids = tok.encode('ok 🙂 東京!');
    const d = new StreamingDecoder(tok);
    const pieces = ids.map((id) => d.push(id));
    expect(pieces.join('') + d.flush()).toBe('ok 🙂 東京!');
    expect(pieces.every((p) => !p.includes('\uFFFD'))).toBe(true);
    // '🙂' alone is two byte-level tokens: the first completes nothing.
    const emoji = tok.encode('🙂');
    expect(emoji.length).toBe(2);
    const d2 = new StreamingDecoder(tok);
    expect(d2.push(emoji[0]!)).toBe('');
    expect(d2.push(emoji[1]!)).toBe('🙂');
  });

  it('flushes an incomplete character as U+FFFD', () => {
    const tok = gpt2Tokenizer();
    const d = new StreamingDecoder(tok);
    d.push(tok.encode('🙂')[0]!);
    expect(d.flush()).toBe('\uFFFD');
  });
});
