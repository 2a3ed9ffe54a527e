// The agent's model runtime with a bundle that ships its own byte-level BPE (manifest tokenizer
// { kind: 'bpe', file }): the tokenizer is loaded from the installed version's directory, and a
// missing or broken tokenizer file fails the load with a ModelError (so the health check fails).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../common/errors.ts';
import { OnnxModelRuntime } from '../../edge-agent/onnx-model-runtime.ts';
import { parseWith } from '../../common/validate.ts';
import { ManifestSchema, type Manifest } from '../../contracts/manifest.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { loadLanguageModel, loadTokenizer } from '../../models/runtime/index.ts';
import { tempDir } from './agent-fixture.ts';

const DEMO_TOKENIZER = fileURLToPath(new URL('../../assets/demo-model/tokenizer.json', import.meta.url));
// The same merges in the older fleetlm/bpe@1 format (what bundles published before carry).
const OLD_DEMO_TOKENIZER = fileURLToPath(new URL('../models/runtime/testdata/demo-bpe-v1.tokenizer.json', import.meta.url));
// The BPE's 4,096 ids: with GPT-2's tokenizer the prompt's ids would fall outside this embedding.
const SPEC = parseArchSpec({ name: 'bpe-agent-test', vocabSize: 4096, contextLength: 64, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }], tiedHead: true });
const PROMPT = 'Call me Ishmael.';
const ref = { modelId: 'bpe-test', version: '1.0.0' };

// Sizes and hashes are the installer's business (verified before load); the runtime reads only entry and tokenizer.
const files: Manifest['files'] = [
  { name: 'model.onnx', size: 1, sha256: '0'.repeat(64), role: 'model' },
  { name: 'tokenizer.json', size: 1, sha256: '0'.repeat(64), role: 'tokenizer' },
];

function manifest(tokenizer: Manifest['tokenizer'], generation: Partial<Manifest['generation']> = {}): Manifest {
  return parseWith(ManifestSchema, { format: 'fleetlm/manifest@1', modelId: ref.modelId, version: ref.version, createdAt: new Date().toISOString(), entry: 'model.onnx', files, tokenizer, generation }, 'test manifest');
}

let dir: string;
beforeAll(async () => {
  dir = await tempDir('fleetlm-agent-bpe-');
  await buildModelFile(SPEC, { outPath: path.join(dir, 'model.onnx'), seed: 3, fused: false, externalData: 'never' });
  await fs.copyFile(DEMO_TOKENIZER, path.join(dir, 'tokenizer.json'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('OnnxModelRuntime with a bundled BPE tokenizer', () => {
  it("serves with the bundle's tokenizer: the same text as the runtime with that tokenizer file", async () => {
    const served = await new OnnxModelRuntime(1).load(dir, manifest({ kind: 'bpe', file: 'tokenizer.json' }), ref);
    let text = '';
    try {
      const stats = await served.generate({ prompt: PROMPT, maxTokens: 6, temperature: 0, topP: 1, ignoreEos: true }, (t) => (text += t));
      expect(stats.tokens).toBe(6);
    } finally {
      await served.dispose();
    }
    const lm = await loadLanguageModel(path.join(dir, 'model.onnx'), { tokenizer: await loadTokenizer(DEMO_TOKENIZER), intraOpNumThreads: 1 });
    try {
      const expected = await lm.generateText(PROMPT, { maxTokens: 6, temperature: 0, ignoreEos: true });
      expect(text).toBe(expected.text);
      expect(text.length).toBeGreaterThan(0);
    } finally {
      await lm.dispose();
    }
  });

  it("serves a bundle of either format the same: { kind: 'bpe' } with an old file, { kind: 'huggingface' } with a new one", async () => {
    await fs.copyFile(OLD_DEMO_TOKENIZER, path.join(dir, 'old-tokenizer.json'));
    const rt = new OnnxModelRuntime(1);
    const texts: string[] = [];
    for (const tokenizer of [{ kind: 'bpe', file: 'old-tokenizer.json' }, { kind: 'huggingface', file: 'tokenizer.json' }] as const) {
      const served = await rt.load(dir, manifest(tokenizer), ref);
      let text = '';
      try {
        const stats = await served.generate({ prompt: PROMPT, maxTokens: 6, temperature: 0, topP: 1, ignoreEos: true }, (t) => (text += t));
        expect(stats.promptTokens).toBe(5);
      } finally {
        await served.dispose();
      }
      texts.push(text);
    }
    expect(texts[0]).toBe(texts[1]);
  });

  it("ends generation at the manifest's generation.stopTokens, finish_reason 'stop'", async () => {
    const lm = await loadLanguageModel(path.join(dir, 'model.onnx'), { tokenizer: await loadTokenizer(DEMO_TOKENIZER), intraOpNumThreads: 1 });
    let greedy: number[];
    try {
      greedy = (await lm.generateText(PROMPT, { maxTokens: 6, temperature: 0, ignoreEos: true })).tokens;
    } finally {
      await lm.dispose();
    }
    // The first position whose greedy token has not appeared before: generation must stop right there.
    const at = greedy.findIndex((t, i) => i > 0 && !greedy.slice(0, i).includes(t));
    expect(at).toBeGreaterThan(0);
    const served = await new OnnxModelRuntime(1).load(dir, manifest({ kind: 'huggingface', file: 'tokenizer.json' }, { stopTokens: [greedy[at]!] }), ref);
    try {
      const stats = await served.generate({ prompt: PROMPT, maxTokens: 6, temperature: 0, topP: 1 }, () => {});
      expect(stats).toMatchObject({ tokens: at, finishReason: 'stop' });
      const full = await served.generate({ prompt: PROMPT, maxTokens: 6, temperature: 0, topP: 1, ignoreEos: true }, () => {});
      expect(full).toMatchObject({ tokens: 6, finishReason: 'length' });
    } finally {
      await served.dispose();
    }
  });

  it('fails the load with a ModelError when the tokenizer file is missing or not a BPE file', async () => {
    const rt = new OnnxModelRuntime(1);
    await expect(rt.load(dir, manifest({ kind: 'bpe', file: 'missing.json' }), ref)).rejects.toThrow(ModelError);
    await fs.writeFile(path.join(dir, 'bad.json'), '{"format":"fleetlm/bpe@1"}');
    await expect(rt.load(dir, manifest({ kind: 'bpe', file: 'bad.json' }), ref)).rejects.toThrow(/the bundle's tokenizer bad.json cannot be loaded/);
  });
});
