// Hugging Face tokenizer.json (+ tokenizer_config.json) behind the runtime's Tokenizer interface.
// Encoding is @huggingface/tokenizers; decoding uses a per-id byte table so streaming never splits a character.
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseWith } from '../../common/validate.ts';
import { ChatTemplate, chatTemplateSource, type ChatMessage } from './chat-template.ts';
import { ByteVocabulary, type Tokenizer } from './tokenizer.ts';

const AddedTokenSchema = z.object({ id: z.number().int().nonnegative(), content: z.string(), special: z.boolean().default(false) }).loose();

/** The parts of a tokenizer.json this module reads itself; the library reads the whole file. */
export const HfTokenizerJsonSchema = z
  .object({
    added_tokens: z.array(AddedTokenSchema).default([]),
    decoder: z.unknown().optional(),
    model: z.object({ type: z.string().optional(), vocab: z.record(z.string(), z.number().int().nonnegative()) }).loose(),
  })
  .loose();

/** A tokenizer_config.json's special tokens are strings or AddedToken objects ({ content }). */
const TokenSpellingSchema = z.union([z.string(), z.object({ content: z.string() }).loose(), z.null()]).optional();

export const HfTokenizerConfigSchema = z
  .object({
    bos_token: TokenSpellingSchema,
    eos_token: TokenSpellingSchema,
    unk_token: TokenSpellingSchema,
    pad_token: TokenSpellingSchema,
    chat_template: z.unknown().optional(),
  })
  .loose();

export type HfTokenizerJson = z.input<typeof HfTokenizerJsonSchema>;
export type HfTokenizerConfig = z.input<typeof HfTokenizerConfigSchema>;

/** A Tokenizer from Hugging Face files, with the model's chat template when its config has one. */
export interface HfTokenizer extends Tokenizer {
  readonly kind: 'huggingface';
  readonly bosTokenId: number | undefined;
  /** Undefined when tokenizer_config.json has no chat_template (a base model). */
  readonly chatTemplate: ChatTemplate | undefined;
  /** Text to ids. `addSpecialTokens` (default true) lets the tokenizer add its BOS, as transformers does. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** Renders `messages` with the chat template and encodes the result (no extra BOS: templates write their own). */
  encodeChat(messages: readonly ChatMessage[]): number[];
  /** The id of a token spelled exactly `token`, if the vocabulary has one. */
  tokenId(token: string): number | undefined;
}

/**
 * GPT-2's reversible byte <-> printable character table (Radford et al. 2019, openai/gpt-2
 * encoder.py `bytes_to_unicode`): printable Latin-1 bytes map to themselves, the rest to U+0100 onwards.
 */
export function byteToUnicodeTable(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  return table;
}

type DecodeStyle = 'byte-level' | 'sentencepiece';

/** Which decoder family a tokenizer.json uses: byte-level (GPT-2, Qwen, SmolLM) or SentencePiece ▁ (Llama, Mistral). */
function decodeStyle(decoder: unknown): { style: DecodeStyle; byteFallback: boolean } {
  const types: string[] = [];
  let replacesMetaspace = false;
  const walk = (d: unknown): void => {
    if (typeof d !== 'object' || d === null) return;
    const o = d as { type?: unknown; decoders?: unknown; pattern?: { String?: unknown } };
    if (typeof o.type === 'string') types.push(o.type);
    if (o.type === 'Replace' && o.pattern?.String === '\u2581') replacesMetaspace = true;
    if (Array.isArray(o.decoders)) o.decoders.forEach(walk);
  };
  walk(decoder);
  if (types.includes('ByteLevel')) return { style: 'byte-level', byteFallback: false };
  if (types.includes('Metaspace') || replacesMetaspace) return { style: 'sentencepiece', byteFallback: types.includes('ByteFallback') };
  throw new ValidationError(`tokenizer.json decoder must be ByteLevel (GPT-2 style) or Metaspace/Replace("\u2581") (SentencePiece style); got ${types.length ? types.join(', ') : 'none'}`);
}

function spelling(v: z.output<typeof TokenSpellingSchema>): string | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : v.content;
}

/**
 * Builds a tokenizer from parsed tokenizer.json and tokenizer_config.json objects. Throws
 * ValidationError for files the library cannot read or a decoder family the runtime cannot stream.
 */
export function huggingFaceTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown = {}, name = 'huggingface'): HfTokenizer {
  const json = parseWith(HfTokenizerJsonSchema, tokenizerJson, 'tokenizer.json');
  const config = parseWith(HfTokenizerConfigSchema, tokenizerConfig ?? {}, 'tokenizer_config.json');
  const { style, byteFallback } = decodeStyle(json.decoder);
  let lib: HfLibTokenizer;
  try {
    lib = new HfLibTokenizer(tokenizerJson as object, (tokenizerConfig ?? {}) as object);
  } catch (err) {
    throw new ValidationError(`tokenizer.json cannot be loaded by @huggingface/tokenizers: ${(err as Error).message}`, { cause: err });
  }

  // Id -> bytes, as llama.cpp's token_to_piece does: special tokens decode to nothing (they are
  // control, not text), other added tokens to their spelling, vocabulary entries per decoder family.
  const added = new Map<number, { content: string; special: boolean }>();
  for (const t of json.added_tokens) added.set(t.id, { content: t.content, special: t.special });
  let size = 0;
  for (const id of Object.values(json.model.vocab)) size = Math.max(size, id + 1);
  for (const id of added.keys()) size = Math.max(size, id + 1);
  const texts = new Array<string | undefined>(size);
  for (const [token, id] of Object.entries(json.model.vocab)) texts[id] = token;
  const encoder = new TextEncoder();
  const unicodeToByte = new Map<string, number>(byteToUnicodeTable().map((c, b) => [c, b]));
  const empty = new Uint8Array(0);
  const tokens: Uint8Array[] = new Array<Uint8Array>(size);
  for (let id = 0; id < size; id++) {
    const a = added.get(id);
    if (a) {
      tokens[id] = a.special ? empty : encoder.encode(a.content);
      continue;
    }
    const t = texts[id];
    if (t === undefined) {
      tokens[id] = empty; // a hole in the id space: nothing to print
    } else if (style === 'byte-level') {
      const bytes: number[] = [];
      for (const ch of t) {
        const b = unicodeToByte.get(ch);
        if (b !== undefined) bytes.push(b);
        else for (const x of encoder.encode(ch)) bytes.push(x);
      }
      tokens[id] = Uint8Array.from(bytes);
    } else {
      const m = byteFallback ? /^<0x([0-9A-Fa-f]{2})>$/.exec(t) : null;
      tokens[id] = m ? Uint8Array.of(parseInt(m[1]!, 16)) : encoder.encode(t.replace(/\u2581/g, ' '));
    }
  }
  const vocab = new ByteVocabulary(tokens);
  const decoder = new TextDecoder('utf-8');

  const tokenId = (token: string): number | undefined => lib.token_to_id(token);
  const idOf = (v: string | undefined): number | undefined => (v === undefined ? undefined : tokenId(v));
  const bosToken = spelling(config.bos_token);
  // Without a config, the conventional end-of-text spellings of the GPT-2 and SentencePiece families.
  const eosToken = spelling(config.eos_token) ?? ['<|endoftext|>', '</s>'].find((s) => [...added.values()].some((a) => a.content === s));
  const source = chatTemplateSource(config.chat_template);
  const chatTemplate = source === undefined ? undefined : new ChatTemplate(source, { bosToken, eosToken, unkToken: spelling(config.unk_token), padToken: spelling(config.pad_token) });
  const encode = (text: string, opts: { addSpecialTokens?: boolean } = {}): number[] => lib.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  return {
    kind: 'huggingface',
    name,
    vocabSize: vocab.size,
    eosTokenId: idOf(eosToken),
    bosTokenId: idOf(bosToken),
    chatTemplate,
    encode,
    encodeChat: (messages) => {
      if (!chatTemplate) throw new ValidationError(`tokenizer ${name} has no chat_template in its tokenizer_config.json; send a plain prompt instead`);
      return encode(chatTemplate.render(messages), { addSpecialTokens: false });
    },
    tokenId,
    decodeBytes: (ids) => vocab.decodeBytes(ids),
    decode: (ids) => decoder.decode(vocab.decodeBytes(ids)),
  };
}

