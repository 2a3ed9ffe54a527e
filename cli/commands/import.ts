// `fleetlm import --hf DIR --out OUTDIR`: a Hugging Face checkpoint folder (GPT-2, OPT, Llama, Qwen2,
// Mistral; safetensors, fp32/fp16/bf16, sharded or not) to a bundle `fleetlm publish` takes as it is.
import type { Command } from 'commander';
import { z } from 'zod';
import { parseFlags } from '../flag-names.ts';
import { importHfModel } from '../../models/onnx/import-hf-model.ts';

const OptionsSchema = z
  .object({
    hf: z.string().min(1),
    out: z.string().min(1),
    fused: z.boolean().default(false),
    externalData: z.enum(['auto', 'always', 'never']).default('auto'),
    force: z.boolean().default(false),
    json: z.boolean().default(false),
    verbose: z.boolean().default(false),
  })
  .strict();

const MB = 1024 * 1024;
const size = (bytes: number): string => (bytes >= MB ? `${(bytes / MB).toFixed(1)} MiB` : `${bytes.toLocaleString('en-US')} bytes`);

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('import')
    .description('Import a Hugging Face checkpoint folder (GPT-2, OPT, Llama, Qwen2, Mistral) as an ONNX model bundle')
    .requiredOption('--hf <dir>', 'checkpoint folder: config.json, model.safetensors or sharded model-*.safetensors + index, tokenizer.json')
    .requiredOption('--out <dir>', 'bundle folder to create (model.onnx, tokenizer files, arch.json, generation.json)')
    .option('--fused', 'use onnxruntime com.microsoft fused operators')
    .option('--external-data <mode>', 'auto (above the 2 GB protobuf limit) | always | never')
    .option('--force', 'replace a non-empty --out folder')
    .option('--json', 'print a JSON summary')
    .option('--verbose', 'print the effective options and the imported spec on stderr')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'import options');
      if (opts.verbose) process.stderr.write(`import options: ${JSON.stringify(opts)}\n`);
      const started = Date.now();
      const r = await importHfModel({ hfDir: opts.hf, outDir: opts.out, fused: opts.fused, externalData: opts.externalData, force: opts.force });
      const seconds = (Date.now() - started) / 1000;
      if (opts.verbose) process.stderr.write(`spec: ${JSON.stringify(r.spec)}\n`);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ ...r, seconds }, null, 2)}\n`);
        return;
      }
      const b = r.spec.blocks[0]!;
      const dtypes = Object.entries(r.dtypes).map(([d, n]) => `${d} x${n}`).join(', ');
      const lines = [
        `imported ${opts.hf} -> ${r.outDir} (${r.fused ? 'fused' : 'plain'}, ${r.nodes} nodes) in ${seconds.toFixed(1)} s`,
        `  architecture: ${r.architecture}: ${b.layers} layers x ${b.width}, ${b.heads} heads${b.kvHeads !== b.heads ? ` (${b.kvHeads} KV)` : ''} of ${b.headDim}, FFN ${b.ffnHidden ?? Math.round(b.ffnRatio * b.width)} ${r.activation}, vocab ${r.spec.vocabSize}, ${r.spec.tiedHead ? 'tied' : 'untied'} head`,
        `  parameters:   ${r.parameters.toLocaleString('en-US')}`,
        `  checkpoint:   ${r.checkpointFiles.map((f) => `${f.name} (${size(f.bytes)})`).join(', ')}; dtypes ${dtypes} -> float32`,
        '  files:',
        ...r.files.map((f) => `    ${f.name.padEnd(24)} ${size(f.bytes)}`),
        ...r.warnings.map((w) => `  warning: ${w}`),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
