// `fleetlm train`: train an architecture from scratch on CPU on text files or the built-in public-
// domain corpora, writing a safetensors checkpoint that `fleetlm build --weights` turns into ONNX.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseFlags } from '../flag-names.ts';
import { countParameters } from '../../models/arch/accounting.ts';
import { loadArchSpec } from '../../models/onnx/build-model-file.ts';
import { gpt2Tokenizer, type Tokenizer } from '../../models/runtime/tokenizer.ts';
import { bpeTokenizer, loadBpeTokenizer, saveBpe, tokenizerPathFor, trainBpe } from '../../models/training/bpe-trainer.ts';
import { loadDocuments, splitDocuments, tokenizeDocuments } from '../../models/training/data.ts';
import { trainModel, type TrainProgress } from '../../models/training/trainer.ts';
import { gemmThreads, setGemmThreads } from '../../models/training/wasm-gemm.ts';

const int = (min: number) => z.coerce.number().int().min(min);

const OptionsSchema = z
  .object({
    arch: z.string().min(1),
    text: z.array(z.string().min(1)).min(1),
    tokens: int(1),
    out: z.string().regex(/\.safetensors$/, 'must end in .safetensors'),
    seq: int(1).default(128),
    batch: int(1).default(8),
    lr: z.coerce.number().positive().max(1).default(3e-4),
    warmup: int(0).optional(),
    evalEvery: int(0).default(0),
    evalTokens: int(1).default(16384),
    checkpointEvery: int(0).default(0),
    valFraction: z.coerce.number().gt(0).lt(1).default(0.1),
    weightDecay: z.coerce.number().nonnegative().default(0.1),
    clip: z.coerce.number().nonnegative().default(1),
    resume: z.string().min(1).optional(),
    seed: int(0).default(0),
    tokenizer: z.enum(['gpt2', 'bpe']).default('gpt2'),
    vocab: int(257).optional(),
    threads: int(1).max(2).optional(),
    json: z.boolean().default(false),
  })
  .strict();

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('train')
    .description('Train an architecture from scratch on CPU; writes a FleetLM-native safetensors checkpoint')
    .requiredOption('--arch <spec>', 'architecture JSON, search result JSON, or preset')
    .requiredOption('--text <files...>', 'text files, or built-in corpora: moby-dick, sotu')
    .requiredOption('--tokens <n>', 'training tokens to process (steps = tokens / (batch x seq))')
    .requiredOption('--out <ckpt.safetensors>', 'checkpoint path (optimizer state goes to <out>.train-state.safetensors)')
    .option('--seq <n>', 'sequence length (default 128)')
    .option('--batch <n>', 'sequences per step (default 8)')
    .option('--lr <x>', 'peak learning rate (default 3e-4)')
    .option('--warmup <n>', 'linear warm-up steps (default 5% of steps)')
    .option('--eval-every <n>', 'held-out evaluation every N steps (default: at the end only)')
    .option('--eval-tokens <n>', 'validation tokens per evaluation (default 16384)')
    .option('--checkpoint-every <n>', 'also write the checkpoint every N steps')
    .option('--val-fraction <x>', 'fraction of documents held out for validation (default 0.1)')
    .option('--weight-decay <x>', 'AdamW decoupled weight decay on matrices (default 0.1)')
    .option('--clip <x>', 'global gradient-norm clip, 0 = off (default 1)')
    .option('--resume <ckpt>', 'continue from this checkpoint and its train-state sidecar')
    .option('--seed <n>', 'seed of init, split and batch order (default 0)')
    .option('--tokenizer <kind>', 'gpt2 | bpe (byte-level BPE trained on the training documents; default gpt2)')
    .option('--vocab <n>', 'BPE vocabulary size (default: the architecture vocabSize)')
    .option('--threads <n>', 'GEMM threads, 1 or 2; same results either way (default: FLEETLM_TRAIN_THREADS, else the cores, at most 2)')
    .option('--json', 'print a JSON summary')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'train options');
      // Flag over FLEETLM_TRAIN_THREADS; reading it here refuses a bad value before any work.
      if (opts.threads !== undefined) setGemmThreads(opts.threads);
      else gemmThreads();
      const spec = await loadArchSpec(opts.arch);
      const docs = await loadDocuments(opts.text);
      const { train, validation } = splitDocuments(docs, opts.valFraction, opts.seed);
      let tokenizer: Tokenizer;
      let tokenizerName: string;
      if (opts.tokenizer === 'gpt2') {
        tokenizer = gpt2Tokenizer();
        tokenizerName = 'gpt2';
      } else {
        const tokPath = tokenizerPathFor(opts.out);
        if (opts.resume && existsSync(tokenizerPathFor(opts.resume))) {
          tokenizer = await loadBpeTokenizer(tokenizerPathFor(opts.resume));
          if (tokPath !== tokenizerPathFor(opts.resume)) await saveBpe(tokPath, (tokenizer as ReturnType<typeof bpeTokenizer>).file);
        } else {
          const file = trainBpe(train.map((d) => d.text), opts.vocab ?? spec.vocabSize);
          await saveBpe(tokPath, file);
          tokenizer = bpeTokenizer(file);
        }
        tokenizerName = `bpe:${tokPath.split(/[\\/]/).pop()}`;
      }
      if (tokenizer.vocabSize > spec.vocabSize) {
        throw new ValidationError(`tokenizer ${opts.tokenizer} has ${tokenizer.vocabSize} ids but the architecture's vocabSize is ${spec.vocabSize}; use --tokenizer bpe --vocab ${spec.vocabSize} or a larger vocabSize`);
      }
      const trainTokens = tokenizeDocuments(train, tokenizer);
      const valTokens = tokenizeDocuments(validation, tokenizer);
      const showBar = !opts.json && process.stderr.isTTY === true;
      const bar = showBar
        ? new cliProgress.SingleBar(
            { format: 'train [{bar}] {value}/{total} steps | loss {loss} | eval {evalLoss} | {tps} tok/s | eta {eta_formatted}', stream: process.stderr },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      if (!opts.json) {
        process.stderr.write(
          `training ${spec.name ?? opts.arch}: ${countParameters(spec).toLocaleString('en-US')} parameters; ${train.length} train / ${validation.length} validation documents; ` +
            `${trainTokens.length.toLocaleString('en-US')} / ${valTokens.length.toLocaleString('en-US')} tokens (${tokenizer.name}, ${tokenizer.vocabSize} ids)\n`,
        );
      }
      let lastEval = '-';
      let barStarted = false;
      let lastLine = 0;
      const onProgress = (p: TrainProgress): void => {
        if (p.evalLoss !== undefined) lastEval = p.evalLoss.toFixed(3);
        if (bar) {
          if (!barStarted) {
            bar.start(p.steps, p.step - 1, { loss: '-', evalLoss: '-', tps: '-' });
            barStarted = true;
          }
          bar.update(p.step, { loss: p.loss.toFixed(3), evalLoss: lastEval, tps: Math.round(p.tokensPerSecond) });
        } else if (!opts.json && (Date.now() - lastLine > 10_000 || p.step === p.steps || p.evalLoss !== undefined)) {
          lastLine = Date.now();
          process.stderr.write(`step ${p.step}/${p.steps} loss ${p.loss.toFixed(3)} eval ${lastEval} lr ${p.lr.toExponential(2)} ${Math.round(p.tokensPerSecond)} tok/s\n`);
        }
      };
      let result;
      try {
        result = await trainModel({
          spec,
          train: trainTokens,
          validation: valTokens,
          tokenizer: tokenizerName,
          tokens: opts.tokens,
          seq: opts.seq,
          batch: opts.batch,
          lr: opts.lr,
          warmup: opts.warmup,
          evalEvery: opts.evalEvery,
          evalTokens: opts.evalTokens,
          checkpointEvery: opts.checkpointEvery,
          weightDecay: opts.weightDecay,
          clip: opts.clip,
          seed: opts.seed,
          out: opts.out,
          resume: opts.resume,
          onProgress,
        });
      } finally {
        bar?.stop();
      }
      const summary = {
        out: opts.out,
        tokenizer: tokenizerName,
        tokenizerPath: opts.tokenizer === 'bpe' ? tokenizerPathFor(opts.out) : null,
        parameters: countParameters(spec),
        steps: result.steps,
        stepsThisRun: result.stepsThisRun,
        tokensSeen: result.tokensSeen,
        finalLoss: result.finalLoss,
        evalLoss: result.evalLoss,
        evalPerplexity: result.evalLoss === null ? null : Math.exp(result.evalLoss),
        tokensPerSecond: result.tokensPerSecond,
        gemmThreads: gemmThreads(),
        seconds: result.seconds,
        trainDocuments: train.length,
        validationDocuments: validation.length,
      };
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        [
          `trained ${opts.out} in ${result.seconds.toFixed(1)} s (${result.stepsThisRun} steps this run, ${result.tokensSeen.toLocaleString('en-US')} tokens in all)`,
          `  train loss:      ${result.finalLoss.toFixed(4)}`,
          `  validation loss: ${result.evalLoss === null ? 'n/a' : `${result.evalLoss.toFixed(4)} (perplexity ${Math.exp(result.evalLoss).toFixed(1)})`}`,
          `  throughput:      ${Math.round(result.tokensPerSecond)} tokens/s (${gemmThreads()} GEMM thread${gemmThreads() === 1 ? '' : 's'})`,
          summary.tokenizerPath ? `  tokenizer:       ${summary.tokenizerPath}` : `  tokenizer:       gpt2`,
        ].join('\n') + '\n',
      );
    });
}
