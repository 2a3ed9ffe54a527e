// One call from a Hugging Face checkpoint folder to a FleetLM model bundle (model.onnx, tokenizer
// files, arch.json, generation.json) that `fleetlm publish` takes as it is. Weights stream from the
// safetensors files into the ONNX file one tensor at a time; the bundle appears whole or not at all.
import { existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ModelError, ValidationError } from '../../common/errors.ts';
import { fsyncDir, writeFileAtomic } from '../../common/atomic-file.ts';
import type { ArchSpec } from '../arch/spec.ts';
import { specFromHfConfig, type HfModelConfig } from '../checkpoint/hf-config.ts';
import { HfCheckpoint } from '../checkpoint/hf-checkpoint.ts';
import { checkpointPrefix, checkpointWeightSource } from '../checkpoint/layouts.ts';
import { tensorToFloat32 } from '../checkpoint/safetensors.ts';
import { buildDecoderModel, parameterInitializerNames } from './build-decoder.ts';
import { saveOnnxModel, tensorElementCount } from './proto.ts';

/** Files copied from the checkpoint folder when present. */
export const COPIED_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'] as const;
/** Vocabulary sizes of the GPT-2 BPE (GPT-2, OPT), which a bundle without tokenizer.json falls back to. */
const GPT2_BPE_VOCABS = new Set([50257, 50272]);

export interface ImportHfOptions {
  /** Checkpoint folder (config.json, safetensors, tokenizer files). */
  hfDir: string;
  /** Bundle folder to create; must be absent or empty unless `force`. */
  outDir: string;
  fused?: boolean;
  externalData?: 'auto' | 'always' | 'never';
  /** Replace a non-empty outDir. */
  force?: boolean;
}

export interface ImportedFile {
  name: string;
  bytes: number;
}

export interface ImportHfResult {
  outDir: string;
  architecture: HfModelConfig['architecture'];
  spec: ArchSpec;
  /** FFN activation ('silu' for SwiGLU blocks). */
  activation: string;
  parameters: number;
  /** Stored tensor dtypes of the checkpoint and how many tensors use each. */
  dtypes: Record<string, number>;
  checkpointFiles: ImportedFile[];
  fused: boolean;
  nodes: number;
  files: ImportedFile[];
  warnings: string[];
}

function readConfig(hfDir: string): unknown {
  const file = path.join(hfDir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ValidationError(`${hfDir} is not a Hugging Face checkpoint folder: cannot read config.json (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
      code: 'VALIDATION_HF_CHECKPOINT',
    });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`${file} is not valid JSON (${(err as Error).message})`, { code: 'VALIDATION_HF_CONFIG' });
  }
}

function readJsonIfPresent(file: string): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const v: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch (err) {
    throw new ValidationError(`${file} is not valid JSON (${(err as Error).message})`, { code: 'VALIDATION_HF_CONFIG' });
  }
}

/** Refuses an existing non-empty (or non-directory) outDir unless forced. */
async function checkOutDir(outDir: string, force: boolean): Promise<void> {
  if (!existsSync(outDir)) return;
  if (!statSync(outDir).isDirectory()) throw new ValidationError(`--out ${outDir} exists and is not a directory`, { code: 'VALIDATION_OUT_DIR' });
  const entries = await fs.readdir(outDir);
  if (entries.length > 0 && !force) {
    throw new ValidationError(`--out ${outDir} is not empty (${entries.slice(0, 5).join(', ')}${entries.length > 5 ? ', ...' : ''}); choose a new folder or pass --force to replace it`, {
      code: 'VALIDATION_OUT_DIR',
    });
  }
}

/**
 * A tied config with an lm_head.weight in the checkpoint: transformers ignores the stored head and
 * uses the embeddings, so a head that differs means the config and the weights disagree. Compared in
 * chunks, so memory stays small.
 */
function checkTiedHead(ckpt: HfCheckpoint, embedName: string): void {
  const head = ckpt.tensors.get('lm_head.weight');
  const embed = ckpt.tensors.get(embedName);
  if (!head || !embed) return;
  const count = embed.shape.reduce((a, b) => a * b, 1);
  const chunk = 1 << 20;
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    const a = tensorToFloat32('lm_head.weight', ckpt.readRawRange('lm_head.weight', start, n)).data;
    const b = tensorToFloat32(embedName, ckpt.readRawRange(embedName, start, n)).data;
    for (let i = 0; i < n; i++) {
      if (a[i] !== b[i]) {
        throw new ModelError(
          `config.json ties the head to the embeddings (tie_word_embeddings true) but the checkpoint's lm_head.weight differs from ${embedName} (element ${start + i}: ${a[i]} vs ${b[i]}); fix tie_word_embeddings`,
          { code: 'MODEL_CHECKPOINT' },
        );
      }
    }
  }
}

/** FleetLM generation defaults from generation_config.json and config.json (stop tokens, sampling). */
function generationDefaults(hf: HfModelConfig, genConfig: Record<string, unknown> | undefined): Record<string, unknown> {
  const ids = (v: unknown): number[] =>
    (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]).filter((x): x is number => Number.isInteger(x) && (x as number) >= 0);
  const stop = genConfig && 'eos_token_id' in genConfig ? ids(genConfig.eos_token_id) : hf.eosTokenIds;
  const out: Record<string, unknown> = { stopTokens: [...new Set(stop)] };
  const num = (k: string): number | undefined => (typeof genConfig?.[k] === 'number' ? (genConfig[k] as number) : undefined);
  const maxNew = num('max_new_tokens');
  if (maxNew !== undefined && Number.isInteger(maxNew) && maxNew > 0 && maxNew <= 4096) out.maxTokens = maxNew;
  if (genConfig?.do_sample === true) {
    // transformers' defaults when sampling: temperature 1, top_p 1, top_k 50.
    const t = num('temperature') ?? 1;
    const p = num('top_p') ?? 1;
    const k = num('top_k') ?? 50;
    if (t >= 0 && t <= 10) out.temperature = t;
    if (p > 0 && p <= 1) out.topP = p;
    if (Number.isInteger(k) && k >= 0) out.topK = k;
  } else {
    // Without do_sample, transformers decodes greedily; temperature 0 is FleetLM's greedy.
    out.temperature = 0;
  }
  return out;
}

/** Moves the finished temp folder into place, replacing an empty or (forced) existing outDir. */
async function publishDir(tmp: string, outDir: string): Promise<void> {
  if (!existsSync(outDir)) {
    await fs.rename(tmp, outDir);
    return;
  }
  const old = `${tmp}.old`;
  await fs.rename(outDir, old);
  try {
    await fs.rename(tmp, outDir);
  } catch (err) {
    await fs.rename(old, outDir);
    throw err;
  }
  await fs.rm(old, { recursive: true, force: true });
}

/** Imports a Hugging Face checkpoint folder as a FleetLM bundle in outDir (see the file comment). */
export async function importHfModel(options: ImportHfOptions): Promise<ImportHfResult> {
  const hfDir = path.resolve(options.hfDir);
  const outDir = path.resolve(options.outDir);
  if (!existsSync(hfDir) || !statSync(hfDir).isDirectory()) {
    throw new ValidationError(`--hf ${options.hfDir} is not a directory`, { code: 'VALIDATION_HF_CHECKPOINT' });
  }
  // --force replaces outDir, so it must never hold the checkpoint itself.
  if (outDir === hfDir || hfDir.startsWith(`${outDir}${path.sep}`)) {
    throw new ValidationError(`--out ${options.outDir} must not be the checkpoint folder or contain it`, { code: 'VALIDATION_OUT_DIR' });
  }
  const hf = specFromHfConfig(readConfig(hfDir), path.basename(hfDir));
  await checkOutDir(outDir, options.force === true);
  const warnings: string[] = [];
  if (!existsSync(path.join(hfDir, 'tokenizer.json'))) {
    if (!GPT2_BPE_VOCABS.has(hf.spec.vocabSize)) {
      throw new ValidationError(
        `${hfDir} has no tokenizer.json; without it a bundle falls back to the GPT-2 BPE (50257 tokens), which cannot serve vocab_size ${hf.spec.vocabSize}`,
        { code: 'VALIDATION_HF_CHECKPOINT' },
      );
    }
    warnings.push('no tokenizer.json in the checkpoint folder: the bundle will use the GPT-2 BPE');
  }
  const genConfig = readJsonIfPresent(path.join(hfDir, 'generation_config.json'));

  const ckpt = HfCheckpoint.open(hfDir);
  const tmp = path.join(path.dirname(outDir), `.${path.basename(outDir)}.import-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const source = checkpointWeightSource(hf.spec, ckpt, hf.layout);
    if (hf.spec.tiedHead) checkTiedHead(ckpt, `${checkpointPrefix(hf.layout, ckpt.tensors)}${hf.layout === 'gpt2' ? 'wte.weight' : 'embed_tokens.weight'}`);
    const fused = options.fused === true;
    const model = buildDecoderModel(hf.spec, source, { fused, ...(hf.activation ? { activation: hf.activation } : {}) });
    const params = new Set(parameterInitializerNames(model));
    const parameters = (model.graph?.initializer ?? []).filter((t) => params.has(t.name ?? '')).reduce((n, t) => n + tensorElementCount(t), 0);

    await fs.mkdir(path.dirname(outDir), { recursive: true });
    await fs.mkdir(tmp);
    await saveOnnxModel(model, path.join(tmp, 'model.onnx'), { externalData: options.externalData ?? 'auto' });
    for (const name of COPIED_FILES) {
      const from = path.join(hfDir, name);
      if (existsSync(from)) await fs.copyFile(from, path.join(tmp, name));
    }
    const activation = hf.activation ?? 'silu';
    await writeFileAtomic(
      path.join(tmp, 'arch.json'),
      `${JSON.stringify(
        {
          spec: hf.spec,
          activation,
          parameters,
          source: {
            format: 'huggingface',
            architecture: hf.architecture,
            folder: path.basename(hfDir),
            torchDtype: hf.torchDtype ?? null,
            dtypes: ckpt.dtypeCounts(),
            files: ckpt.files,
          },
        },
        null,
        2,
      )}\n`,
    );
    await writeFileAtomic(path.join(tmp, 'generation.json'), `${JSON.stringify(generationDefaults(hf, genConfig), null, 2)}\n`);
    await fsyncDir(tmp);
    await publishDir(tmp, outDir);
    await fsyncDir(path.dirname(outDir));
    const files = (await fs.readdir(outDir)).sort().map((name) => ({ name, bytes: statSync(path.join(outDir, name)).size }));
    return {
      outDir,
      architecture: hf.architecture,
      spec: hf.spec,
      activation,
      parameters,
      dtypes: ckpt.dtypeCounts(),
      checkpointFiles: [...ckpt.files],
      fused,
      nodes: model.graph?.node?.length ?? 0,
      files,
      warnings,
    };
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    ckpt.close();
  }
}
