// Text <-> token ids for the runtime. GPT-2's byte-level BPE comes from `gpt-tokenizer` (r50k_base);
// decoding uses our own byte table so that streaming never splits a UTF-8 character.
import { encode as r50kEncode } from 'gpt-tokenizer/encoding/r50k_base';
import r50kRanks from 'gpt-tokenizer/bpeRanks/r50k_base';
import { ValidationError } from '../../common/errors.ts';

/** What the runtime needs from a tokenizer: GPT-2 here, Hugging Face files in tokenizer-hf.ts. */
export interface Tokenizer {
  /** Short name, e.g. "gpt2". */
  readonly name: string;
  /** Number of token ids the tokenizer can produce (ids are 0..vocabSize-1). */
  readonly vocabSize: number;
  /** End-of-text id, or undefined when the vocabulary has none. */
  readonly eosTokenId: number | undefined;
  /**
   * Text to ids, with the tokenizer's own special tokens (a Llama BOS) added. GPT-2 encodes special-token
   * spellings in the text as plain text; Hugging Face tokenizers map them to their ids, as transformers does.
   */
  encode(text: string): number[];
  /** Ids to UTF-8 bytes. */
  decodeBytes(ids: readonly number[]): Uint8Array;
  /** Ids to text; an incomplete trailing UTF-8 sequence becomes U+FFFD. */
  decode(ids: readonly number[]): string;
}

/** A byte-level vocabulary: token id -> bytes, stored flat. */
export class ByteVocabulary {
  private readonly bytes: Uint8Array;
  private readonly offsets: Uint32Array;

  constructor(tokens: readonly Uint8Array[]) {
    let total = 0;
    for (const t of tokens) total += t.length;
    this.bytes = new Uint8Array(total);
    this.offsets = new Uint32Array(tokens.length + 1);
    let at = 0;
    tokens.forEach((t, i) => {
      this.bytes.set(t, at);
      at += t.length;
      this.offsets[i + 1] = at;
    });
  }

  get size(): number {
    return this.offsets.length - 1;
  }

  /** The bytes of one token (a view, not a copy). Throws RangeError for an id outside the vocabulary. */
  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.size) {
      throw new RangeError(`token id must be an integer in [0, ${this.size}), got ${id}`);
    }
    return this.bytes.subarray(this.offsets[id]!, this.offsets[id + 1]!);
  }

  /** Concatenated bytes of a token sequence. */
  decodeBytes(ids: readonly number[]): Uint8Array {
    let n = 0;
    for (const id of ids) n += this.tokenBytes(id).length;
    const out = new Uint8Array(n);
    let at = 0;
    for (const id of ids) {
      const b = this.tokenBytes(id);
      out.set(b, at);
      at += b.length;
    }
    return out;
  }
}

const GPT2_EOS = '<|endoftext|>';
let gpt2: Tokenizer | undefined;

/** GPT-2's tokenizer (50,257 ids; 50256 is <|endoftext|>). Built once per process. */
export function gpt2Tokenizer(): Tokenizer {
  if (gpt2 !== undefined) return gpt2;
  const encoder = new TextEncoder();
  const tokens: Uint8Array[] = r50kRanks.map((t) => (typeof t === 'string' ? encoder.encode(t) : Uint8Array.from(t)));
  const eosTokenId = tokens.length;
  tokens.push(encoder.encode(GPT2_EOS));
  const vocab = new ByteVocabulary(tokens);
  const decoder = new TextDecoder('utf-8');
  gpt2 = {
    name: 'gpt2',
    vocabSize: vocab.size,
    eosTokenId,
    // An empty disallowed set makes "<|endoftext|>" in user text plain text rather than an error.
    encode: (text) => r50kEncode(text, { disallowedSpecial: new Set() }),
    decodeBytes: (ids) => vocab.decodeBytes(ids),
    decode: (ids) => decoder.decode(vocab.decodeBytes(ids)),
  };
  return gpt2;
}

/** Built-in tokenizers by name (tokenizer.json files load with `loadTokenizer` in tokenizer-file.ts). */
export function tokenizerByName(name: string): Tokenizer {
  if (name === 'gpt2') return gpt2Tokenizer();
  throw new ValidationError(`unknown tokenizer "${name}"; allowed: gpt2`);
}

/**
 * Turns a stream of token ids into text pieces. Bytes of a character split across tokens are held
 * back until the character is complete, so concatenating the pieces equals decoding all ids at once.
 */
export class StreamingDecoder {
  private readonly decoder = new TextDecoder('utf-8');
  constructor(private readonly tokenizer: Tokenizer) {}

  /** The text that token `id` completes (possibly empty). */
  push(id: number): string {
    return this.decoder.decode(this.tokenizer.decodeBytes([id]), { stream: true });
  }

  /** Whatever is still held back, as U+FFFD for an incomplete character. */
  flush(): string {
    return this.decoder.decode();
  }
}
