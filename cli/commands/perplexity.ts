// `fleetlm perplexity`: sliding-window perplexity of an ONNX causal LM on a text file.
import { promises as fs } from 'node:fs';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseFlags } from '../flag-names.ts';
import { assertTokenizerFits, loadLanguageModel, perplexity, tokenizerForModel } from '../../models/runtime/index.ts';

const OptionsSchema = z
  .object({
    model: z.string().min(1),
    text: z.string().min(1),
    window: z.coerce.number().int().min(2).optional(),
    stride: z.coerce.number().int().min(1).optional(),
    chunk: z.coerce.number().int().min(1).max(65536).optional(),
    maxTokens: z.coerce.number().int().min(2).optional(),
    threads: z.coerce.number().int().min(1).max(256).optional(),
    contextLength: z.coerce.number().int().min(1).optional(),
    tokenizer: z.string().min(1).optional(),
    json: z.boolean().default(false),
  })
  .strict();

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('perplexity')
    .description('Sliding-window perplexity of an ONNX causal LM on a UTF-8 text file')
    .requiredOption('--model <path>', 'ONNX model file')
    .requiredOption('--text <file>', 'UTF-8 text file')
    .option('--window <n>', 'tokens per window (default: the model context length)')
    .option('--stride <n>', 'tokens the window moves (default: half the window)')
    .option('--chunk <n>', 'tokens per forward pass inside a window (default 128)')
    .option('--max-tokens <n>', 'score only the first n tokens of the text')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--context-length <n>', 'override the context length the model states')
    .option('--tokenizer <name|file>', "gpt2, or a tokenizer.json file: Hugging Face format or FleetLM's older fleetlm/bpe@1 (default: tokenizer.json beside the model, with its tokenizer_config.json, else gpt2)")
    .option('--json', 'print a JSON result')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'perplexity options');
      let text: string;
      try {
        text = await fs.readFile(opts.text, 'utf8');
      } catch (err) {
        throw new ValidationError(`--text ${opts.text}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
      }
      const tok = await tokenizerForModel(opts.model, opts.tokenizer);
      const model = await loadLanguageModel(opts.model, {
        tokenizer: tok.tokenizer,
        intraOpNumThreads: opts.threads,
        contextLength: opts.contextLength,
      });
      try {
        assertTokenizerFits(model.info, tok.tokenizer, tok);
      } catch (err) {
        await model.dispose();
        throw err;
      }
      const showBar = !opts.json && process.stderr.isTTY === true;
      const bar = showBar
        ? new cliProgress.SingleBar({ format: 'perplexity [{bar}] {value}/{total} tokens', stream: process.stderr }, cliProgress.Presets.shades_classic)
        : undefined;
      let started = false;
      try {
        const result = await perplexity(model, text, {
          window: opts.window,
          stride: opts.stride,
          chunk: opts.chunk,
          maxTokens: opts.maxTokens,
          onProgress: (done, total) => {
            if (!bar) return;
            if (!started) {
              bar.start(total, 0);
              started = true;
            }
            bar.update(done);
          },
        });
        bar?.stop();
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ model: opts.model, text: opts.text, ...result }, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          [
            `perplexity ${result.perplexity.toFixed(3)} (mean NLL ${result.meanNll.toFixed(4)} nats/token)`,
            `  tokens scored: ${result.scoredTokens} of ${result.totalTokens}`,
            `  windows:       ${result.windows} (window ${result.window}, stride ${result.stride})`,
            `  time:          ${(result.ms / 1000).toFixed(1)} s`,
          ].join('\n') + '\n',
        );
      } finally {
        bar?.stop();
        await model.dispose();
      }
    });
}
