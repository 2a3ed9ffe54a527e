import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValidationError } from '../../../common/errors.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { loadTokenizer, tokenizerForModel, gpt2Tokenizer } from '../../../models/runtime/index.ts';
import { buildTiny, tempDir } from './fixtures.ts';

// The committed demo model's byte-level BPE (a Hugging Face tokenizer.json, 4,096 ids, trained on Moby-Dick).
const DEMO_TOKENIZER = fileURLToPath(new URL('../../../assets/demo-model/tokenizer.json', import.meta.url));
// A tiny model with the BPE's vocabulary: GPT-2 ids (up to 50,256) would fall outside its embedding.
const SPEC = parseArchSpec({ name: 'bpe-vocab-tiny', vocabSize: 4096, contextLength: 64, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }] });
const PROMPT = 'Call me Ishmael. Some years ago';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCliCaptured(args);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('loadTokenizer', () => {
  it('gives GPT-2 by name and a tokenizer.json file by path', async () => {
    expect(await loadTokenizer('gpt2')).toBe(gpt2Tokenizer());
    const bpe = await loadTokenizer(DEMO_TOKENIZER);
    expect(bpe.name).toBe('tokenizer.json');
    expect(bpe.vocabSize).toBe(4096);
    expect(bpe.eosTokenId).toBe(4095);
    const ids = bpe.encode(PROMPT);
    expect(ids.every((id) => id >= 0 && id < 4096)).toBe(true);
    // Trained on Moby-Dick: its opening words are few tokens, and different ids from GPT-2's.
    expect(ids.length).toBeLessThan(PROMPT.length / 2);
    expect(ids).not.toEqual(gpt2Tokenizer().encode(PROMPT));
    expect(bpe.decode(ids)).toBe(PROMPT);
  });

  it('refuses an unknown name, a missing file and a file that is not a BPE tokenizer', async () => {
    await expect(loadTokenizer('gpt3')).rejects.toThrow(/"gpt2" or an existing tokenizer.json file; got "gpt3"/);
    await expect(loadTokenizer('/nonexistent/tokenizer.json')).rejects.toBeInstanceOf(ValidationError);
    const dir = tempDir('tok-bad');
    try {
      const bad = path.join(dir, 'tokenizer.json');
      await fs.writeFile(bad, JSON.stringify({ format: 'fleetlm/bpe@1', vocabSize: 300, merges: [], eosTokenId: 299 }));
      await expect(loadTokenizer(bad)).rejects.toThrow(/vocabSize 300 must be 256 \+ 0 merges \+ 1/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('tokenizer beside the model, and fleetlm generate / perplexity --tokenizer', () => {
  const root = tempDir('tok-cli');
  const withTok = path.join(root, 'with');
  const without = path.join(root, 'without');
  let modelWith = '';
  let modelWithout = '';
  beforeAll(async () => {
    await fs.mkdir(withTok);
    await fs.mkdir(without);
    modelWith = await buildTiny(withTok, false, SPEC);
    modelWithout = await buildTiny(without, false, SPEC);
    await fs.copyFile(DEMO_TOKENIZER, path.join(withTok, 'tokenizer.json'));
  });
  afterAll(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  it('finds tokenizer.json beside the model, else falls back to GPT-2; an explicit choice wins', async () => {
    expect((await tokenizerForModel(modelWith)).source).toBe(path.join(withTok, 'tokenizer.json'));
    expect((await tokenizerForModel(modelWith)).tokenizer.vocabSize).toBe(4096);
    expect((await tokenizerForModel(modelWithout)).source).toBe('gpt2');
    expect((await tokenizerForModel(modelWith, 'gpt2')).tokenizer.vocabSize).toBe(50257);
  });

  it('generate and perplexity use the detected or the given BPE file', async () => {
    const bpeIds = (await loadTokenizer(DEMO_TOKENIZER)).encode(PROMPT);
    const auto = await cli(['generate', '--model', modelWith, '--prompt', PROMPT, '--max-tokens', '3', '--ignore-eos', '--threads', '1', '--json']);
    expect(auto.code).toBe(0);
    const a = JSON.parse(auto.out) as { promptTokens: number; tokens: number[]; model: { tokenizer: string } };
    expect(a.promptTokens).toBe(bpeIds.length);
    expect(a.model.tokenizer).toBe(path.join(withTok, 'tokenizer.json'));
    const given = await cli(['generate', '--model', modelWithout, '--tokenizer', DEMO_TOKENIZER, '--prompt', PROMPT, '--max-tokens', '3', '--ignore-eos', '--threads', '1', '--json']);
    expect(given.code).toBe(0);
    // Same seed-7 weights and the same tokenizer: the same greedy tokens.
    expect((JSON.parse(given.out) as { tokens: number[] }).tokens).toEqual(a.tokens);

    const text = path.join(root, 'text.txt');
    await fs.writeFile(text, PROMPT);
    const ppl = await cli(['perplexity', '--model', modelWith, '--text', text, '--threads', '1', '--json']);
    expect(ppl.code).toBe(0);
    expect((JSON.parse(ppl.out) as { totalTokens: number }).totalTokens).toBe(bpeIds.length);
  });

  it('exits 2 for a tokenizer that is neither gpt2 nor a file', async () => {
    const r = await cli(['generate', '--model', modelWith, '--tokenizer', 'nope', '--prompt', 'x']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/tokenizer must be "gpt2" or an existing tokenizer.json file/);
  });

  it('generate --chat renders the chat template from the tokenizer_config.json beside the model', async () => {
    const noTemplate = await cli(['generate', '--model', modelWith, '--chat', '--prompt', 'Hi', '--max-tokens', '2', '--threads', '1']);
    expect(noTemplate.code).toBe(2);
    expect(noTemplate.err).toMatch(/--chat needs a tokenizer_config.json with a chat_template/);
    const template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";
    await fs.writeFile(path.join(withTok, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', chat_template: template }));
    try {
      const r = await cli(['generate', '--model', modelWith, '--chat', '--system', 'Be brief.', '--prompt', PROMPT, '--max-tokens', '2', '--ignore-eos', '--threads', '1', '--json']);
      expect(r.code).toBe(0);
      const rendered = `system: Be brief.\nuser: ${PROMPT}\nassistant:`;
      expect((JSON.parse(r.out) as { promptTokens: number }).promptTokens).toBe((await loadTokenizer(DEMO_TOKENIZER)).encode(rendered).length);
    } finally {
      await fs.rm(path.join(withTok, 'tokenizer_config.json'));
    }
  });
});
