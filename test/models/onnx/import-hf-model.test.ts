// Importing Hugging Face checkpoint folders (written by the test in transformers' exact layout) and
// checking the ONNX logits against the float64 reference forward pass on the same weights.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importHfModel } from '../../../models/onnx/import-hf-model.ts';
import { loadOnnxModel } from '../../../models/onnx/proto.ts';
import { countWeightElements } from '../../../models/arch/weights.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { prepareBundle } from '../../../fleet/publisher.ts';
import { referenceForward } from '../../reference/decoder-forward.ts';
import { tempDir } from '../../helpers/temp-dir.ts';
import { emptyCache, maxAbs, maxAbsDiff, runStep, sessionFor } from './ort-run.ts';
import { gpt2Fixture, llamaFixture, optFixture, writeHfFolder, type Fixture, type StoredDtype } from '../checkpoint/hf-fixtures.ts';

let root: string;
beforeAll(async () => {
  root = await tempDir('fleetlm-import-');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const IDS = [[3, 1, 4, 1, 5, 9, 2]];
const POS = [[0, 1, 2, 3, 4, 5, 6]];
const MASK = [[1, 1, 1, 1, 1, 1, 1]];

/** Imports `fx` and checks the ONNX logits against the reference within 1e-4. */
async function importAndCompare(name: string, fx: Fixture, dtype: StoredDtype, opts: { shards?: number; fused?: boolean; externalData?: 'always' | 'never' } = {}) {
  const hf = path.join(root, `${name}-hf`);
  const out = path.join(root, `${name}-out`);
  writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype, shards: opts.shards });
  const r = await importHfModel({ hfDir: hf, outDir: out, fused: opts.fused, externalData: opts.externalData });
  // The spec the config describes, spelled out by the fixture: config mapping mistakes (rope theta,
  // epsilon, head layout) show here, since the reference below runs on this spec, not the imported one.
  const expected = parseArchSpec({ name: `${name}-hf`, ...fx.spec });
  expect(r.spec).toEqual(expected);
  const session = await sessionFor(path.join(out, 'model.onnx'));
  try {
    const got = await runStep(session, { inputIds: IDS, positionIds: POS, attentionMask: MASK, past: emptyCache(r.spec) });
    const ref = referenceForward(expected, fx.native, { inputIds: IDS, ...(fx.activation ? { activation: fx.activation } : {}) });
    // The weights must move the logits: a graph that ignored a layer would still differ by far more than 1e-4.
    expect(maxAbs(ref.logits)).toBeGreaterThan(0.5);
    expect(maxAbsDiff(got.logits, ref.logits)).toBeLessThan(1e-4);
  } finally {
    await session.release();
  }
  return { r, out, hf };
}

describe('importHfModel: imported logits match the reference forward pass', () => {
  it('LlamaForCausalLM, F32, one file, untied head, GQA (plain)', async () => {
    const fx = llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 48, hidden: 32, intermediate: 40, layers: 2, heads: 4, kvHeads: 2, tied: false, dtype: 'F32', seed: 1 });
    const { r, out } = await importAndCompare('llama-f32', fx, 'F32');
    expect(r.architecture).toBe('LlamaForCausalLM');
    expect(r.dtypes).toEqual({ F32: fx.tensors.length });
    expect(r.parameters).toBe(countWeightElements(r.spec));
    expect(r.spec).toMatchObject({ positions: 'rotary', ropeTheta: 500, tiedHead: false, blocks: [{ norm: 'rmsnorm', mlp: 'swiglu', heads: 4, kvHeads: 2, headDim: 8, qkvBias: false, outputBias: false }] });
    expect(readdirSync(out).sort()).toEqual(['arch.json', 'generation.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']);
  });

  it('Qwen2ForCausalLM, BF16, two shards with an index, tied head, q/k/v biases (fused)', async () => {
    const fx = llamaFixture({ architecture: 'Qwen2ForCausalLM', vocab: 40, hidden: 24, intermediate: 36, layers: 2, heads: 6, kvHeads: 2, tied: true, dtype: 'BF16', seed: 2 });
    const { r } = await importAndCompare('qwen2-bf16', fx, 'BF16', { shards: 2, fused: true });
    expect(r.checkpointFiles.map((f) => f.name)).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(r.dtypes).toEqual({ BF16: fx.tensors.length });
    expect(r.spec.blocks[0]).toMatchObject({ qkvBias: true, outputBias: false });
  });

  it('MistralForCausalLM, F16, three shards, explicit head_dim != hidden/heads, external data', async () => {
    const fx = llamaFixture({ architecture: 'MistralForCausalLM', vocab: 40, hidden: 24, intermediate: 32, layers: 3, heads: 4, kvHeads: 1, headDim: 8, tied: false, dtype: 'F16', seed: 3 });
    const { r, out } = await importAndCompare('mistral-f16', fx, 'F16', { shards: 3, externalData: 'always' });
    expect(r.spec.blocks[0]!.headDim).toBe(8);
    expect(existsSync(path.join(out, 'model.onnx.data'))).toBe(true);
  });

  it('GPT2LMHeadModel, F16, Conv1D weights, fused c_attn and causal-mask buffers (gelu_new)', async () => {
    const fx = gpt2Fixture({ vocab: 40, positions: 16, hidden: 16, layers: 2, heads: 2, dtype: 'F16', seed: 4, maskBuffers: true });
    const { r } = await importAndCompare('gpt2-f16', fx, 'F16', { fused: true });
    expect(r.activation).toBe('gelu_tanh');
    expect(loadOnnxModel(path.join(root, 'gpt2-f16-out', 'model.onnx')).metadataProps?.find((p) => p.key === 'fleetlm.activation')?.value).toBe('gelu_tanh');
  });

  it('OPTForCausalLM, BF16, two shards, project_in/project_out and offset positions (relu)', async () => {
    const fx = optFixture({ vocab: 40, positions: 16, embed: 8, hidden: 16, ffn: 24, layers: 2, heads: 4, dtype: 'BF16', seed: 5 });
    const { r } = await importAndCompare('opt-bf16', fx, 'BF16', { shards: 2 });
    expect(r.spec).toMatchObject({ positionOffset: 2, embeddingWidth: 8 });
    expect(r.activation).toBe('relu');
  });
});

describe('importHfModel: the bundle', () => {
  it('is publishable as is: model, tokenizer, arch and generation defaults in the manifest', async () => {
    const fx = llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 48, hidden: 16, intermediate: 24, layers: 1, heads: 2, kvHeads: 1, tied: true, dtype: 'BF16', seed: 6 });
    const hf = path.join(root, 'bundle-hf');
    const out = path.join(root, 'bundle-out');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'BF16', generationConfig: { bos_token_id: 1, eos_token_id: [2, 7], do_sample: true, temperature: 0.6, top_p: 0.9 } });
    await importHfModel({ hfDir: hf, outDir: out });
    expect(readFileSync(path.join(out, 'tokenizer.json'))).toEqual(readFileSync(path.join(hf, 'tokenizer.json')));
    const bundle = await prepareBundle({ modelDir: out, modelId: 'tiny-llama', version: '1' });
    expect(bundle.manifest.files.map((f) => [f.name, f.role])).toEqual([
      ['model.onnx', 'model'],
      ['tokenizer.json', 'tokenizer'],
      ['tokenizer_config.json', 'tokenizer'],
    ]);
    expect(bundle.manifest.tokenizer).toEqual({ kind: 'huggingface', file: 'tokenizer.json', config: 'tokenizer_config.json' });
    expect(bundle.manifest.generation).toEqual({ maxTokens: 64, temperature: 0.6, topP: 0.9, topK: 50, stopTokens: [2, 7] });
    expect(bundle.manifest.arch).toMatchObject({ activation: 'silu', source: { architecture: 'LlamaForCausalLM', dtypes: { BF16: fx.tensors.length } } });
    expect((bundle.manifest.arch as { spec: { blocks: unknown[] } }).spec.blocks).toHaveLength(1);
  });

  it('greedy decoding and the config eos when generation_config.json does not sample', async () => {
    const fx = gpt2Fixture({ vocab: 40, positions: 16, hidden: 16, layers: 1, heads: 2, dtype: 'F32', seed: 7 });
    const hf = path.join(root, 'greedy-hf');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32' });
    await importHfModel({ hfDir: hf, outDir: path.join(root, 'greedy-out') });
    expect(JSON.parse(readFileSync(path.join(root, 'greedy-out', 'generation.json'), 'utf8'))).toEqual({ stopTokens: [0], temperature: 0 });
  });
});

describe('importHfModel: checkpoints that do not fit are refused by name, nothing written', () => {
  const base = (): Fixture => llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 32, hidden: 16, intermediate: 24, layers: 2, heads: 2, kvHeads: 1, tied: false, dtype: 'F32', seed: 8 });
  let n = 0;
  async function refused(edit: (fx: Fixture) => void, pattern: RegExp, opts: { shards?: number } = {}): Promise<void> {
    const fx = base();
    edit(fx);
    const hf = path.join(root, `bad-${++n}-hf`);
    const out = path.join(root, `bad-${n}-out`);
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32', shards: opts.shards });
    await expect(importHfModel({ hfDir: hf, outDir: out })).rejects.toThrow(pattern);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).filter((f) => f.includes(`bad-${n}-out`))).toEqual([]);
  }

  it('a missing tensor', () => refused((fx) => (fx.tensors = fx.tensors.filter(([k]) => k !== 'model.layers.1.mlp.up_proj.weight')), /missing tensor "model\.layers\.1\.mlp\.up_proj\.weight"/));
  it('a misshapen tensor', () =>
    refused((fx) => {
      const i = fx.tensors.findIndex(([k]) => k === 'model.layers.0.self_attn.k_proj.weight');
      fx.tensors[i] = [fx.tensors[i]![0], { data: new Float32Array(16 * 16), shape: [16, 16] }];
    }, /"model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[16, 16\]; the spec needs \[8, 16\]/));
  it('an unexpected extra weight', () => refused((fx) => fx.tensors.push(['model.layers.0.self_attn.q_norm.weight', { data: new Float32Array(8), shape: [8] }]), /"model\.layers\.0\.self_attn\.q_norm\.weight" has no place/));
  it('an untied config without lm_head.weight', () => refused((fx) => (fx.tensors = fx.tensors.filter(([k]) => k !== 'lm_head.weight')), /missing tensor "lm_head\.weight".*does not tie the head/));
  it('a tied config whose lm_head.weight differs from the embeddings', () => refused((fx) => (fx.config.tie_word_embeddings = true), /ties the head.*lm_head\.weight differs from model\.embed_tokens\.weight/));
  it('a config the builder cannot honour', () => refused((fx) => (fx.config.rope_scaling = { rope_type: 'llama3', factor: 8 }), /rope_scaling has rope_type "llama3"/));
  it('an index that maps a tensor to a shard without it', async () => {
    const hf = path.join(root, 'bad-index-hf');
    const fx = base();
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32', shards: 2 });
    const file = path.join(hf, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(file, 'utf8'));
    index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(file, JSON.stringify(index));
    await expect(importHfModel({ hfDir: hf, outDir: path.join(root, 'bad-index-out') })).rejects.toThrow(
      /maps tensor "model\.norm\.weight" to model-00001-of-00002\.safetensors, which does not hold it/,
    );
    expect(existsSync(path.join(root, 'bad-index-out'))).toBe(false);
  });

  it('integer weights, before anything is written', async () => {
    const fx = base();
    const hf = path.join(root, 'int-hf');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32' });
    // Rewrite one header entry's dtype as I32 (same 4-byte elements, so the file stays consistent).
    const file = path.join(hf, 'model.safetensors');
    const bytes = readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + n).toString('utf8').replace(/("model\.norm\.weight":\{"dtype":")F32/, '$1I32');
    writeFileSync(file, Buffer.concat([bytes.subarray(0, 8), Buffer.from(header.padEnd(n, ' ')), bytes.subarray(8 + n)]));
    await expect(importHfModel({ hfDir: hf, outDir: path.join(root, 'int-out') })).rejects.toThrow(/"model\.norm\.weight" is stored as I32; weights must be F32, F16, BF16 or F64/);
    expect(readdirSync(root).filter((f) => f.includes('int-out'))).toEqual([]);
  });

  it('creates missing parent folders of --out', async () => {
    const fx = base();
    const hf = path.join(root, 'nested-hf');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32' });
    await importHfModel({ hfDir: hf, outDir: path.join(root, 'a', 'b', 'bundle') });
    expect(existsSync(path.join(root, 'a', 'b', 'bundle', 'model.onnx'))).toBe(true);
  });

  it('ignores rotary inv_freq buffers older transformers saved', async () => {
    const fx = base();
    fx.tensors.push(['model.layers.0.self_attn.rotary_emb.inv_freq', { data: new Float32Array(4), shape: [4] }]);
    const hf = path.join(root, 'invfreq-hf');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32' });
    await expect(importHfModel({ hfDir: hf, outDir: path.join(root, 'invfreq-out') })).resolves.toMatchObject({ architecture: 'LlamaForCausalLM' });
  });

  it('refuses a non-empty --out without force, replaces it with force', async () => {
    const fx = base();
    const hf = path.join(root, 'force-hf');
    const out = path.join(root, 'force-out');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32' });
    await importHfModel({ hfDir: hf, outDir: out });
    writeFileSync(path.join(out, 'stale.txt'), 'x');
    await expect(importHfModel({ hfDir: hf, outDir: out })).rejects.toThrow(/--out .*force-out is not empty \(arch\.json, generation\.json, model\.onnx, stale\.txt, tokenizer\.json, \.\.\.\).*--force/);
    expect(existsSync(path.join(out, 'stale.txt'))).toBe(true);
    await importHfModel({ hfDir: hf, outDir: out, force: true });
    expect(existsSync(path.join(out, 'stale.txt'))).toBe(false);
    expect(existsSync(path.join(out, 'model.onnx'))).toBe(true);
  });

  it('refuses a folder with only pytorch_model.bin', async () => {
    const hf = path.join(root, 'bin-hf');
    writeHfFolder(hf, { config: base().config, tensors: [], dtype: 'F32' });
    rmSync(path.join(hf, 'model.safetensors'));
    writeFileSync(path.join(hf, 'pytorch_model.bin'), 'x');
    await expect(importHfModel({ hfDir: hf, outDir: path.join(root, 'bin-out') })).rejects.toThrow(/neither model\.safetensors nor model\.safetensors\.index\.json \(it has pytorch_model\.bin/);
  });

  it('refuses a Llama vocabulary without tokenizer.json', async () => {
    const fx = base();
    const hf = path.join(root, 'notok-hf');
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'F32', tokenizer: false });
    await expect(importHfModel({ hfDir: hf, outDir: path.join(root, 'notok-out') })).rejects.toThrow(/no tokenizer\.json.*vocab_size 32/);
  });
});
