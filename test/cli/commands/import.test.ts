// `fleetlm import`: what it prints, the files it writes, and its exit codes (2 for bad input, as the
// other commands; 1 for a checkpoint that does not match its config).
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { tempDir } from '../../helpers/temp-dir.ts';
import { llamaFixture, writeHfFolder } from '../../models/checkpoint/hf-fixtures.ts';

let root: string;
let hf: string;
beforeAll(async () => {
  root = await tempDir('fleetlm-import-cli-');
  hf = path.join(root, 'smol-hf');
  const fx = llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 48, hidden: 32, intermediate: 40, layers: 2, heads: 4, kvHeads: 2, tied: true, dtype: 'BF16', seed: 11 });
  writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'BF16', shards: 2, generationConfig: { eos_token_id: 2 } });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('fleetlm import', () => {
  it('imports a sharded bf16 Llama folder and says what it wrote', async () => {
    const out = path.join(root, 'bundle');
    const r = await runCliCaptured(['import', '--hf', hf, '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^imported .*smol-hf -> .*bundle \(plain, \d+ nodes\) in [\d.]+ s$/m);
    expect(r.stdout).toMatch(/architecture: LlamaForCausalLM: 2 layers x 32, 4 heads \(2 KV\) of 8, FFN 40 silu, vocab 48, tied head/);
    // embed 48*32 + 2 layers * (2 norms 32 + q 32*32 + k,v 2*32*16 + o 32*32 + gate,up,down 3*32*40) + final norm 32
    expect(r.stdout).toMatch(/parameters: {3}15,520$/m);
    expect(r.stdout).toMatch(/checkpoint: {3}model-00001-of-00002\.safetensors \([\d,]+ bytes\), model-00002-of-00002\.safetensors \([\d,]+ bytes\); dtypes BF16 x20 -> float32/);
    for (const f of ['arch.json', 'generation.json', 'generation_config.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']) {
      expect(r.stdout).toMatch(new RegExp(`^ {4}${f.replace('.', '\\.')} +[\\d,.]+ (bytes|MiB)$`, 'm'));
    }
    expect(readdirSync(out).sort()).toEqual(['arch.json', 'generation.json', 'generation_config.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']);
  });

  it('prints JSON with --json and builds the fused graph with --fused', async () => {
    const r = await runCliCaptured(['import', '--hf', hf, '--out', path.join(root, 'fused'), '--fused', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ architecture: 'LlamaForCausalLM', fused: true, parameters: 15520, dtypes: { BF16: 20 } });
  });

  it('refuses a non-empty --out with exit 2 and leaves it alone', async () => {
    const out = path.join(root, 'taken');
    await runCliCaptured(['import', '--hf', hf, '--out', out]);
    writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const r = await runCliCaptured(['import', '--hf', hf, '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^fleetlm: error: --out .*taken is not empty .*pass --force to replace it \(run 'fleetlm import --help'\)\n$/);
    expect(existsSync(path.join(out, 'notes.txt'))).toBe(true);
    const forced = await runCliCaptured(['import', '--hf', hf, '--out', out, '--force']);
    expect(forced.code).toBe(0);
    expect(existsSync(path.join(out, 'notes.txt'))).toBe(false);
  });

  it('exits 2 for an unsupported config, a missing folder or a bad option, naming the problem', async () => {
    const gemma = path.join(root, 'gemma-hf');
    writeHfFolder(gemma, { config: { architectures: ['GemmaForCausalLM'], model_type: 'gemma', vocab_size: 10 }, tensors: [], dtype: 'F32' });
    const a = await runCliCaptured(['import', '--hf', gemma, '--out', path.join(root, 'g')]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/unsupported architecture GemmaForCausalLM/);
    const b = await runCliCaptured(['import', '--hf', path.join(root, 'nope'), '--out', path.join(root, 'n')]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--hf .*nope is not a directory/);
    const c = await runCliCaptured(['import', '--hf', hf, '--out', path.join(root, 'c'), '--external-data', 'sometimes']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--external-data \(got "sometimes"\)/);
    expect(existsSync(path.join(root, 'g')) || existsSync(path.join(root, 'n')) || existsSync(path.join(root, 'c'))).toBe(false);
  });

  it('exits 1 for a checkpoint that does not match its config, writing nothing', async () => {
    const bad = path.join(root, 'bad-hf');
    const fx = llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 48, hidden: 32, intermediate: 40, layers: 2, heads: 4, kvHeads: 2, tied: true, dtype: 'F32', seed: 12 });
    writeHfFolder(bad, { config: { ...fx.config, num_hidden_layers: 3 }, tensors: fx.tensors, dtype: 'F32' });
    const r = await runCliCaptured(['import', '--hf', bad, '--out', path.join(root, 'bad-out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/missing tensor "model\.layers\.2\.input_layernorm\.weight"/);
    expect(readdirSync(root).filter((f) => f.includes('bad-out'))).toEqual([]);
  });
});
