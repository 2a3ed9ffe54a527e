// `fleetlm build`: turn an architecture spec (file, search result or preset) into an ONNX decoder,
// with random GPT-2-scheme weights or a safetensors checkpoint in FleetLM, GPT-2 or OPT layout.
import type { Command } from 'commander';
import { z } from 'zod';
import { parseFlags } from '../flag-names.ts';
import { CHECKPOINT_LAYOUTS } from '../../models/checkpoint/layouts.ts';
import { buildModelFile, loadArchSpec } from '../../models/onnx/build-model-file.ts';
import { ACTIVATIONS } from '../../models/onnx/build-decoder.ts';

const OptionsSchema = z
  .object({
    arch: z.string().min(1),
    out: z.string().min(1),
    fused: z.boolean().default(false),
    seed: z.coerce.number().int().nonnegative().max(2 ** 32 - 1).default(0),
    weights: z.string().min(1).optional(),
    layout: z.enum(CHECKPOINT_LAYOUTS).default('fleetlm'),
    activation: z.enum(ACTIVATIONS).optional(),
    externalData: z.enum(['auto', 'always', 'never']).default('auto'),
    tokenizer: z.string().min(1).optional(),
    json: z.boolean().default(false),
  })
  .strict();

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('build')
    .description('Build an ONNX decoder (KV cache, Optimum I/O names) from an architecture spec')
    .requiredOption('--arch <spec>', 'architecture JSON, search result JSON with `spec`, or preset (gpt2-small, opt-125m, opt-350m, tiny)')
    .requiredOption('--out <path>', 'output .onnx path')
    .option('--fused', 'use onnxruntime com.microsoft fused operators')
    .option('--seed <n>', 'seed of the random GPT-2-scheme initialisation')
    .option('--weights <path>', 'safetensors checkpoint to load instead of random weights')
    .option('--layout <layout>', `checkpoint tensor layout: ${CHECKPOINT_LAYOUTS.join(', ')}`)
    .option('--activation <fn>', `FFN activation ${ACTIVATIONS.join('|')} (default: gelu_tanh for --layout gpt2, relu for opt, else gelu)`)
    .option('--external-data <mode>', 'auto (above the 2 GB protobuf limit) | always | never')
    .option('--tokenizer <file>', 'tokenizer.json to write beside the model (default with --weights: the one the checkpoint was trained with, found beside it)')
    .option('--json', 'print a JSON summary')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'build options');
      const spec = await loadArchSpec(opts.arch);
      const started = Date.now();
      const result = await buildModelFile(spec, {
        outPath: opts.out,
        fused: opts.fused,
        seed: opts.seed,
        weightsPath: opts.weights,
        layout: opts.layout,
        activation: opts.activation,
        externalData: opts.externalData,
        tokenizerPath: opts.tokenizer,
      });
      const seconds = (Date.now() - started) / 1000;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ ...result, arch: spec.name ?? null, seconds }, null, 2)}\n`);
        return;
      }
      const weights = result.weights.source === 'random' ? `random (seed ${result.weights.seed})` : `${result.weights.path} (${result.weights.layout} layout)`;
      const lines = [
        `built ${result.modelPath} (${result.fused ? 'fused' : 'plain'}, ${result.nodes} nodes) in ${seconds.toFixed(1)} s`,
        `  architecture: ${spec.name ?? opts.arch}`,
        `  parameters:   ${result.parameters.toLocaleString('en-US')}`,
        `  weights:      ${weights}, activation ${result.activation}`,
        `  model file:   ${result.modelBytes.toLocaleString('en-US')} bytes`,
      ];
      const tok = result.tokenizer;
      lines.push(
        tok.source === 'file'
          ? `  tokenizer:    ${tok.path} (${tok.vocabSize} ids, from ${tok.from}${tok.configPath ? ', with its tokenizer_config.json' : ''})`
          : tok.source === 'gpt2'
            ? '  tokenizer:    gpt2 (built in; the checkpoint was trained with it)'
            : '  tokenizer:    none written (generate and publish use gpt2 unless a tokenizer.json is put beside the model)',
      );
      if (result.externalDataPath) lines.push(`  external data: ${result.externalDataPath} (${result.externalDataBytes.toLocaleString('en-US')} bytes)`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
