// The model a pipeline run ships when it is not random weights: its architecture (for the search step's
// figures) and its ONNX build (for the build step), from a FleetLM checkpoint or a Hugging Face folder under inputs/.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { S3Client } from '@aws-sdk/client-s3';
import { ValidationError } from '../../common/errors.ts';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { parseArchSpec, type ArchSpec } from '../../models/arch/spec.ts';
import { specFromHfConfig } from '../../models/checkpoint/hf-config.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { importHfModel } from '../../models/onnx/import-hf-model.ts';
import type { ModelSource } from './events.ts';
import { downloadPrefix, getJson } from './s3.ts';

type TrainedModel = Exclude<ModelSource, { kind: 'random-weights' }>;

/** The architecture of an input model, read from its arch.json (checkpoint) or config.json (Hugging Face). */
export async function inputModelSpec(s3: S3Client, bucket: string, model: TrainedModel): Promise<ArchSpec> {
  if (model.kind === 'huggingface') return specFromHfConfig(await getJson(s3, bucket, `${model.prefix}config.json`, z.unknown()), model.prefix).spec;
  const raw = await getJson(s3, bucket, `${model.prefix}arch.json`, z.unknown());
  // arch.json may hold a spec or a search result with a `spec` field (what `fleetlm search --out` writes).
  const spec = typeof raw === 'object' && raw !== null && 'spec' in raw && !('blocks' in raw) ? (raw as { spec: unknown }).spec : raw;
  return parseArchSpec(spec);
}

/** The checkpoint file of a FleetLM checkpoint folder: its one .safetensors (the optimizer sidecar aside). */
async function checkpointFile(dir: string, prefix: string): Promise<string> {
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.safetensors') && !n.endsWith('.train-state.safetensors'));
  if (names.length !== 1) {
    throw new ValidationError(`checkpoint folder ${prefix} must hold exactly one .safetensors checkpoint (besides *.train-state.safetensors); it has ${names.length ? names.join(', ') : 'none'}`);
  }
  return path.join(dir, names[0]!);
}

/**
 * Downloads the input model and writes its ONNX bundle into `outDir` (model.onnx, arch.json, tokenizer.json
 * and its config, generation.json): `fleetlm build --weights` for a checkpoint, `fleetlm import --hf` for a
 * Hugging Face folder. `scratch` is an empty directory for the download.
 */
export async function buildInputModel(s3: S3Client, bucket: string, model: TrainedModel, scratch: string, outDir: string): Promise<ArchSpec> {
  const src = path.join(scratch, 'input');
  await fs.mkdir(src, { recursive: true });
  const files = await downloadPrefix(s3, bucket, model.prefix, src);
  if (files.length === 0) throw new ValidationError(`the input model s3://${bucket}/${model.prefix} is empty: upload the ${model.kind} folder there first`);
  if (model.kind === 'huggingface') {
    // importHfModel creates its folder and refuses a non-empty one: build it aside, then move the files.
    const imported = path.join(scratch, 'imported');
    await importHfModel({ hfDir: src, outDir: imported, externalData: 'auto' });
    for (const name of await fs.readdir(imported)) await fs.rename(path.join(imported, name), path.join(outDir, name));
    return inputModelSpec(s3, bucket, model);
  }
  const spec = await inputModelSpec(s3, bucket, model);
  // The tokenizer the checkpoint records is found beside it and copied beside the model (or refused when missing).
  await buildModelFile(spec, { outPath: path.join(outDir, 'model.onnx'), weightsPath: await checkpointFile(src, model.prefix) });
  await writeJsonAtomic(path.join(outDir, 'arch.json'), spec);
  const generation = path.join(src, 'generation.json');
  if ((await fs.stat(generation).catch(() => undefined))?.isFile()) await fs.copyFile(generation, path.join(outDir, 'generation.json'));
  return spec;
}
