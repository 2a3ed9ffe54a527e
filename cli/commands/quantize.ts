// `fleetlm quantize`: rewrite an ONNX decoder's weight matmuls to block-quantized int4/int8
// (onnxruntime MatMulNBits), optionally judge the perplexity change and record it in quality.json.
import type { Command } from 'commander';
import { existsSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseJsonWith } from '../../common/validate.ts';
import { parseFlags } from '../flag-names.ts';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { loadOnnxModel, onnx, resolveExternalData, saveOnnxModel } from '../../models/onnx/proto.ts';
import { DEFAULT_ACCURACY_LEVEL, quantizeModel, type AccuracyLevel } from '../../models/quantization/onnx-quantize.ts';
import { formatQuantizationReport, quantizationReport, type QuantizationReport } from '../../models/quantization/report.ts';
import { validateQuantConfig, type QuantBits } from '../../models/quantization/block-quantizer.ts';
import { BUNDLE_METADATA_FILES } from '../../fleet/publisher.ts';
import { appendQualityStep, formatQuality, qualityStep, QualityRecordSchema, QUALITY_FILE, type QualityRecord } from '../../models/quality/quality-gate.ts';

const OptionsSchema = z
  .object({
    model: z.string().min(1),
    out: z.string().min(1),
    bits: z.coerce.number().int(),
    block: z.coerce.number().int().default(32),
    symmetric: z.boolean().default(false),
    accuracyLevel: z.coerce.number().int().default(DEFAULT_ACCURACY_LEVEL),
    /** undefined = auto: quantize a table a tied head shares (the float table would otherwise stay beside the head's blocks). */
    embedding: z.boolean().optional(),
    externalData: z.enum(['auto', 'always', 'never', 'same']).default('same'),
    report: z.string().min(1).optional(),
    evalText: z.string().min(1).optional(),
    evalTokens: z.coerce.number().int().min(16).default(512),
    tokenizer: z.string().min(1).optional(),
    quality: z.string().min(1).optional(),
    maxIncrease: z.coerce.number().nonnegative().max(10).optional(),
    json: z.boolean().default(false),
  })
  .strict();
type Options = z.output<typeof OptionsSchema>;

async function perplexityOf(modelPath: string, text: string, maxTokens: number, tokenizerFor: string, tokenizerChoice?: string): Promise<{ perplexity: number; tokens: number }> {
  const { loadLanguageModel, perplexity, tokenizerForModel } = await import('../../models/runtime/index.ts');
  const lm = await loadLanguageModel(modelPath, { tokenizer: (await tokenizerForModel(tokenizerFor, tokenizerChoice)).tokenizer });
  try {
    const r = await perplexity(lm, text, { maxTokens });
    return { perplexity: r.perplexity, tokens: r.scoredTokens };
  } finally {
    await lm.dispose();
  }
}

/** What `fleetlm quantize --json` prints. */
export type QuantizeCommandReport = QuantizationReport & {
  input: { path: string; bytes: number; externalData: boolean };
  output: { path: string; bytes: number; externalDataPath: string | null };
  seconds: number;
  /** Bundle files (tokenizer, arch, generation defaults, gate record...) copied beside --out from beside --model. */
  carried: string[];
  quality?: QualityRecord & { path: string };
};

/**
 * Copies the files `publish` reads from a bundle (tokenizer, tokenizer config, arch, generation defaults,
 * compression and evaluation reports, the quality record) from the input model's folder to the output's,
 * so the quantized model is a publishable bundle; a file already there is left as it is.
 */
async function carryBundleFiles(fromDir: string, toDir: string): Promise<string[]> {
  if (path.resolve(fromDir) === path.resolve(toDir)) return [];
  const m = BUNDLE_METADATA_FILES;
  const names = [m.arch, ...m.compression, m.evaluation, m.lineage, m.generation, m.tokenizer, m.tokenizerConfig, m.quality];
  const carried: string[] = [];
  for (const name of names) {
    const from = path.join(fromDir, name);
    const to = path.join(toDir, name);
    if (!existsSync(from) || existsSync(to)) continue;
    await fs.copyFile(from, to);
    carried.push(name);
  }
  return carried;
}

/** Runs the whole command; returns the JSON report (with the gate record when --eval-text was given). */
export async function runQuantize(opts: Options): Promise<QuantizeCommandReport> {
  const config = { bits: opts.bits as QuantBits, blockSize: opts.block, symmetric: opts.symmetric, accuracyLevel: opts.accuracyLevel as AccuracyLevel };
  validateQuantConfig(config);
  if (path.resolve(opts.model) === path.resolve(opts.out)) {
    throw new ValidationError(`--out ${opts.out} is the input model; write the quantized model to a new path`);
  }
  if ((opts.quality || opts.maxIncrease !== undefined) && !opts.evalText) {
    throw new ValidationError('--quality and --max-increase need --eval-text (the gate compares perplexity on that text)');
  }
  let text: string | undefined;
  if (opts.evalText) {
    text = await fs.readFile(opts.evalText, 'utf8').catch((err: unknown) => {
      throw new ValidationError(`--eval-text ${opts.evalText}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    });
  }
  const started = performance.now();
  const model = loadOnnxModel(opts.model, { resolveExternalData: false });
  const hadExternal = (model.graph?.initializer ?? []).some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
  resolveExternalData(model, path.dirname(opts.model), `ONNX model ${opts.model}`);
  const result = quantizeModel(model, { ...config, embedding: opts.embedding ?? 'tied' });
  if (result.weights.length === 0) {
    const why = result.skipped.slice(0, 6).map((s) => `${s.node}: ${s.reason}`).join('; ');
    throw new ValidationError(
      `no weight to quantize in ${opts.model}: expected MatMul nodes whose B is a 2-D float initializer (or Gemm with a constant B)${why ? `; matmuls seen: ${why}` : '; the graph has no MatMul or Gemm'}`,
      { code: 'VALIDATION_NOTHING_TO_QUANTIZE' },
    );
  }
  const externalData = opts.externalData === 'same' ? (hadExternal ? 'always' : 'auto') : opts.externalData;
  const saved = await saveOnnxModel(result.model, opts.out, { externalData });
  const carried = await carryBundleFiles(path.dirname(opts.model), path.dirname(opts.out));
  const report: QuantizeCommandReport = {
    ...quantizationReport(result, config),
    input: { path: opts.model, bytes: statSync(opts.model).size + (hadExternal ? externalBytes(opts.model) : 0), externalData: hadExternal },
    output: { path: opts.out, bytes: saved.modelBytes + saved.externalDataBytes, externalDataPath: saved.externalDataPath },
    seconds: (performance.now() - started) / 1000,
    carried,
  };
  if (text !== undefined) {
    const before = await perplexityOf(opts.model, text, opts.evalTokens, opts.model, opts.tokenizer);
    const after = await perplexityOf(opts.out, text, opts.evalTokens, opts.model, opts.tokenizer);
    const qualityPath = opts.quality ?? path.join(path.dirname(opts.out), QUALITY_FILE);
    const previous: QualityRecord | undefined = existsSync(qualityPath)
      ? parseJsonWith(QualityRecordSchema, await fs.readFile(qualityPath, 'utf8'), qualityPath)
      : undefined;
    const step = qualityStep(`quantize int${config.bits} block ${config.blockSize} ${config.symmetric ? 'sym' : 'asym'}`, before.perplexity, after.perplexity, {
      detail: { bits: config.bits, blockSize: config.blockSize, symmetric: config.symmetric, accuracyLevel: config.accuracyLevel, model: path.basename(opts.out) },
    });
    const record = appendQualityStep(previous, step, { text: path.basename(opts.evalText!), tokens: before.tokens, maxPerplexityIncrease: opts.maxIncrease });
    await writeJsonAtomic(qualityPath, record);
    report.quality = { path: qualityPath, ...record };
  }
  if (opts.report) await writeJsonAtomic(opts.report, report);
  return report;
}

/** Bytes of the input's external data files (each counted once). */
function externalBytes(modelPath: string): number {
  const dir = path.dirname(modelPath);
  const base = path.basename(modelPath);
  const candidates = [`${base}.data`, `${base}_data`, `${base.replace(/\.onnx$/, '')}.onnx_data`];
  return candidates.map((c) => path.join(dir, c)).filter((p) => existsSync(p)).reduce((s, p) => s + statSync(p).size, 0);
}

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('quantize')
    .description('Quantize the weight matrices of an ONNX decoder to int4/int8 blocks (onnxruntime MatMulNBits)')
    .requiredOption('--model <path>', 'input .onnx model (FleetLM build, imported or Optimum export; external data is read)')
    .requiredOption('--out <path>', 'output .onnx path')
    .requiredOption('--bits <n>', '4 or 8')
    .option('--block <n>', 'elements of K per quantization block: a power of two >= 16 (default 32)')
    .option('--symmetric', 'symmetric blocks (no zero points); default asymmetric')
    .option('--embedding', 'quantize every embedding table read by Gather (GatherBlockQuantized); default: only a table a tied head shares, so the model never keeps a float copy beside the head')
    .option('--no-embedding', 'keep every embedding table in float (a tied head then adds its int blocks beside the float table)')
    .option('--accuracy-level <n>', `MatMulNBits accuracy_level: 0 (A stays float) .. 4 (A quantized to int8 per block: the fast CPU path, needed for int8 speed); default ${DEFAULT_ACCURACY_LEVEL}`)
    .option('--external-data <mode>', 'same (as the input, default) | auto | always | never')
    .option('--report <path>', 'write the JSON report here')
    .option('--eval-text <file>', 'measure perplexity before and after on this text and record the step in the quality gate')
    .option('--eval-tokens <n>', 'tokens of --eval-text to score (default 512)')
    .option('--tokenizer <name|file>', 'tokenizer for --eval-text (default: tokenizer.json beside --model, else gpt2)')
    .option('--quality <path>', `gate record to extend (default: ${QUALITY_FILE} beside --out); publish refuses a bundle whose record fails`)
    .option('--max-increase <f>', 'largest allowed perplexity increase over the dense model, as a fraction (default: the record\'s, else 0.15)')
    .option('--json', 'print the report as JSON')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'quantize options');
      const report = await runQuantize(opts);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const r = report;
      const lines = [
        `quantized ${opts.model} -> ${opts.out} in ${r.seconds.toFixed(1)} s`,
        `  ${formatQuantizationReport(r).split('\n').join('\n  ')}`,
        `  file: ${r.input.bytes.toLocaleString('en-US')} -> ${r.output.bytes.toLocaleString('en-US')} bytes`,
      ];
      if (r.carried.length > 0) lines.push(`  bundle files copied beside the output: ${r.carried.join(', ')}`);
      if (r.quality) lines.push(`  ${formatQuality(r.quality).split('\n').join('\n  ')}`, `  gate record: ${r.quality.path}`);
      if (opts.report) lines.push(`  report: ${opts.report}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
