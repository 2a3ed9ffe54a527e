// `fleetlm compress`: replace an ONNX model's token embedding with a compressed one (per-row TT,
// TT-matrix, truncated SVD, or the best of them) and write the model plus a JSON report.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { promises as fs, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseFlags } from '../flag-names.ts';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { compressEmbedding, type CompressOutcome } from '../../models/compression/auto.ts';
import { formatReport } from '../../models/compression/report.ts';
import { extractEmbedding, rewriteEmbedding, type TiedHeadMode } from '../../models/compression/onnx-rewrite.ts';
import { encodeOnnxModel, initializerBytes, loadOnnxModel, saveOnnxModel, PROTOBUF_LIMIT_BYTES, type ModelProto } from '../../models/onnx/proto.ts';
import type { CompressedEmbedding } from '../../models/compression/embedding.ts';

const positive = z.coerce.number().positive();
const OptionsSchema = z
  .object({
    model: z.string().min(1),
    out: z.string().min(1),
    method: z.enum(['tt-row', 'tt-matrix', 'svd', 'auto']).default('tt-row'),
    ratio: z.coerce.number().min(1).optional(),
    maxRank: z.coerce.number().int().min(1).optional(),
    eps: positive.max(1).optional(),
    shape: z
      .string()
      .regex(/^\d+(x\d+)+$/, 'must be factors joined by x, e.g. 8x8x12')
      .optional(),
    tiedHead: z.enum(['dense', 'reconstruct']).default('reconstruct'),
    report: z.string().min(1).optional(),
    evalText: z.string().min(1).optional(),
    evalTokens: z.coerce.number().int().min(16).default(512),
    workers: z.coerce.number().int().min(1).max(64).optional(),
    seed: z.coerce.number().int().nonnegative().default(1),
    json: z.boolean().default(false),
  })
  .strict();
type Options = z.output<typeof OptionsSchema>;

/** Model bytes when saved as one file (initializer bytes when over the protobuf limit). */
function modelSize(model: ModelProto): number {
  return initializerBytes(model) > PROTOBUF_LIMIT_BYTES - 64 * 2 ** 20 ? initializerBytes(model) : encodeOnnxModel(model).length;
}

/** Perplexity of the rewritten model on the eval text, for `--method auto --eval-text`. */
async function perplexityEvaluator(model: ModelProto, text: string, tiedHead: TiedHeadMode, maxTokens: number): Promise<(e: CompressedEmbedding) => Promise<number>> {
  const { loadLanguageModel, perplexity } = await import('../../models/runtime/index.ts');
  return async (e) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-auto-'));
    try {
      const file = path.join(dir, 'candidate.onnx');
      await saveOnnxModel(rewriteEmbedding(model, e, { tiedHead }).model, file);
      const lm = await loadLanguageModel(file);
      try {
        return (await perplexity(lm, text, { maxTokens })).perplexity;
      } finally {
        await lm.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** Runs the whole command; returns the JSON report. */
export async function runCompress(opts: Options): Promise<Record<string, unknown>> {
  if (opts.ratio === undefined && opts.maxRank === undefined && opts.eps === undefined) {
    throw new ValidationError('give a target size: --ratio R (e.g. 2), or --max-rank R and/or --eps E');
  }
  if (path.resolve(opts.model) === path.resolve(opts.out)) {
    throw new ValidationError(`--out ${opts.out} is the input model; write the compressed model to a new path`);
  }
  const started = performance.now();
  const model = loadOnnxModel(opts.model);
  const { site, matrix } = extractEmbedding(model);
  let text: string | undefined;
  if (opts.evalText) {
    if (opts.method !== 'auto') throw new ValidationError('--eval-text only applies to --method auto (it ranks the methods by perplexity)');
    text = await fs.readFile(opts.evalText, 'utf8').catch((err: unknown) => {
      throw new ValidationError(`--eval-text ${opts.evalText}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    });
  }
  const showBar = !opts.json && process.stderr.isTTY === true;
  const bar = showBar
    ? new cliProgress.SingleBar({ format: 'compress {stage} [{bar}] {percentage}%', stream: process.stderr }, cliProgress.Presets.shades_classic)
    : undefined;
  let barStarted = false;
  let outcome: CompressOutcome;
  try {
    outcome = await compressEmbedding(matrix, site.vocab, site.dim, {
      method: opts.method,
      ratio: opts.ratio,
      maxRank: opts.maxRank,
      eps: opts.eps,
      shape: opts.shape?.split('x').map(Number),
      workers: opts.workers,
      seed: opts.seed,
      evaluate: text !== undefined ? await perplexityEvaluator(model, text, opts.tiedHead, opts.evalTokens) : undefined,
      evaluateName: text !== undefined ? `perplexity on ${opts.evalText}` : undefined,
      onProgress: (stage, done, total) => {
        if (!bar) return;
        if (!barStarted) {
          bar.start(1000, 0, { stage });
          barStarted = true;
        }
        bar.update(Math.round((1000 * done) / Math.max(total, 1)), { stage });
      },
    });
  } finally {
    bar?.stop();
  }
  const rewritten = rewriteEmbedding(model, outcome.embedding, { tiedHead: opts.tiedHead });
  const saved = await saveOnnxModel(rewritten.model, opts.out);
  const inputBytes = statSync(opts.model).size;
  const outputBytes = saved.modelBytes + saved.externalDataBytes;
  const sizes: Record<string, number> = { [opts.tiedHead]: outputBytes };
  if (rewritten.tiedHead) {
    const other: TiedHeadMode = opts.tiedHead === 'dense' ? 'reconstruct' : 'dense';
    sizes[other] = modelSize(rewriteEmbedding(model, outcome.embedding, { tiedHead: other }).model);
  }
  const report = {
    format: 'fleetlm/compress-report@1',
    input: { path: opts.model, bytes: inputBytes, embedding: site.name, vocab: site.vocab, width: site.dim },
    output: { path: opts.out, bytes: outputBytes, externalDataPath: saved.externalDataPath },
    embedding: outcome.report,
    why: outcome.why,
    candidates: opts.method === 'auto' ? outcome.candidates : undefined,
    tiedHead: rewritten.tiedHead
      ? {
          mode: rewritten.tiedHeadMode,
          fileBytes: sizes,
          note: 'dense keeps a copy of the full table for the LM head; reconstruct rebuilds it from the factors in-graph (onnxruntime constant-folds it once at session start)',
        }
      : null,
    seconds: (performance.now() - started) / 1000,
  };
  if (opts.report) await writeJsonAtomic(opts.report, report);
  return report;
}

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('compress')
    .description('Compress the token embedding of an ONNX model (tensor-train, TT-matrix or SVD)')
    .requiredOption('--model <path>', 'input .onnx model whose token embedding is a Gather on an initializer')
    .requiredOption('--out <path>', 'output .onnx path')
    .option('--method <m>', 'tt-row | tt-matrix | svd | auto (default tt-row)')
    .option('--ratio <r>', 'target compression ratio of the embedding, dense elements / stored elements (e.g. 2)')
    .option('--max-rank <r>', 'cap on every TT bond rank (or the SVD rank)')
    .option('--eps <e>', 'relative accuracy of the TT-SVD (per row for tt-row)')
    .option('--shape <IxJxK>', 'TT factorisation of the width, e.g. 8x8x12 (must multiply to the width)')
    .option('--tied-head <mode>', 'tied LM head: dense (keep a dense head matrix) | reconstruct (rebuild it from the factors); default reconstruct')
    .option('--report <path>', 'write the JSON report here')
    .option('--eval-text <file>', 'with --method auto: rank methods by perplexity on this text instead of reconstruction error')
    .option('--eval-tokens <n>', 'tokens of --eval-text to score (default 512)')
    .option('--workers <n>', 'worker threads for per-row TT (default: cores)')
    .option('--seed <n>', 'seed of the row sample used for shape selection')
    .option('--json', 'print the report as JSON')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'compress options');
      const report = await runCompress(opts);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const r = outcomeReport(report);
      const lines = [
        `compressed ${opts.model} -> ${opts.out} in ${(report.seconds as number).toFixed(1)} s`,
        `  ${formatReport(r)}`,
        `  why: ${report.why as string}`,
        `  file: ${(report.input as { bytes: number }).bytes.toLocaleString('en-US')} -> ${(report.output as { bytes: number }).bytes.toLocaleString('en-US')} bytes`,
      ];
      const tied = report.tiedHead as { mode: string; fileBytes: Record<string, number> } | null;
      if (tied) {
        lines.push(
          `  tied head: ${tied.mode}; file bytes dense-head ${tied.fileBytes.dense!.toLocaleString('en-US')}, reconstruct ${tied.fileBytes.reconstruct!.toLocaleString('en-US')}`,
        );
      }
      if (opts.report) lines.push(`  report: ${opts.report}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

function outcomeReport(report: Record<string, unknown>): CompressOutcome['report'] {
  return report.embedding as CompressOutcome['report'];
}
