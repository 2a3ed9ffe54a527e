// `fleetlm generate`: run an ONNX causal LM on a prompt (or, with --chat, a chat turn rendered with the
// tokenizer's chat template) and stream the generated text to stdout.
import type { Command } from 'commander';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseFlags } from '../flag-names.ts';
import { assertTokenizerFits, isHfTokenizer, loadLanguageModel, tokenizerForModel, type ChatMessage, type Tokenizer } from '../../models/runtime/index.ts';

const OptionsSchema = z
  .object({
    model: z.string().min(1),
    prompt: z.string(),
    maxTokens: z.coerce.number().int().min(1).max(100_000).default(64),
    temperature: z.coerce.number().min(0).max(100).default(0),
    topP: z.coerce.number().gt(0).max(1).default(1),
    topK: z.coerce.number().int().min(0).default(0),
    seed: z.coerce.number().int().min(0).max(2 ** 32 - 1).optional(),
    stop: z.array(z.coerce.number().int().min(0)).optional(),
    ignoreEos: z.boolean().default(false),
    threads: z.coerce.number().int().min(1).max(256).optional(),
    contextLength: z.coerce.number().int().min(1).optional(),
    tokenizer: z.string().min(1).optional(),
    chat: z.boolean().default(false),
    system: z.string().optional(),
    json: z.boolean().default(false),
  })
  .strict()
  .refine((o) => o.system === undefined || o.chat, { message: '--system needs --chat', path: ['system'] });

/** The prompt as token ids: a chat turn through the tokenizer's chat template, or the text itself. */
function promptOf(tokenizer: Tokenizer, prompt: string, chat: boolean, system: string | undefined): string | number[] {
  if (!chat) return prompt;
  if (!isHfTokenizer(tokenizer) || !tokenizer.chatTemplate) {
    throw new ValidationError(`--chat needs a tokenizer_config.json with a chat_template beside the tokenizer.json; tokenizer ${tokenizer.name} has none`);
  }
  const messages: ChatMessage[] = [...(system === undefined ? [] : [{ role: 'system' as const, content: system }]), { role: 'user', content: prompt }];
  return tokenizer.encodeChat(messages);
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('generate')
    .description('Generate text with an ONNX causal LM (KV cache, Optimum I/O names), streaming tokens to stdout')
    .requiredOption('--model <path>', 'ONNX model file')
    .requiredOption('--prompt <text>', 'prompt text (empty: start from <|endoftext|>)')
    .option('--max-tokens <n>', 'most tokens to generate (default 64)')
    .option('--temperature <t>', '0 = greedy (default); > 0 samples')
    .option('--top-p <p>', 'nucleus sampling mass, (0, 1] (default 1)')
    .option('--top-k <k>', 'sample among the k most likely tokens; 0 = all (default)')
    .option('--seed <n>', 'RNG seed for reproducible sampling')
    .option('--stop <id>', 'token id that ends generation (repeatable; default <|endoftext|>)', collect)
    .option('--ignore-eos', 'keep generating past <|endoftext|>')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--context-length <n>', 'override the context length the model states')
    .option('--tokenizer <name|file>', "gpt2, or a tokenizer.json file: Hugging Face format or FleetLM's older fleetlm/bpe@1 (default: tokenizer.json beside the model, with its tokenizer_config.json, else gpt2)")
    .option('--chat', "send --prompt as a user message through the model's chat template (tokenizer_config.json)")
    .option('--system <text>', 'with --chat: a system message before the user message')
    .option('--json', 'print one JSON object with the text and timings instead of streaming')
    .action(async (raw: Record<string, unknown>) => {
      const opts = parseFlags(OptionsSchema, raw, 'generate options');
      const loadStart = performance.now();
      const tok = await tokenizerForModel(opts.model, opts.tokenizer);
      const model = await loadLanguageModel(opts.model, {
        tokenizer: tok.tokenizer,
        intraOpNumThreads: opts.threads,
        contextLength: opts.contextLength,
      });
      const loadMs = performance.now() - loadStart;
      try {
        assertTokenizerFits(model.info, tok.tokenizer, tok);
        const result = await model.generateText(promptOf(tok.tokenizer, opts.prompt, opts.chat, opts.system), {
          maxTokens: opts.maxTokens,
          temperature: opts.temperature,
          topP: opts.topP,
          topK: opts.topK,
          seed: opts.seed,
          stopTokens: opts.stop,
          ignoreEos: opts.ignoreEos,
          onToken: opts.json ? undefined : (t) => process.stdout.write(t.text),
        });
        if (opts.json) {
          const { info } = model;
          const modelSummary = { path: info.path, variant: info.variant ?? null, vocabSize: info.vocabSize, layers: info.numLayers, contextLength: info.contextLength ?? null, threads: info.threads, tokenizer: tok.source };
          process.stdout.write(`${JSON.stringify({ ...result, loadMs, model: modelSummary }, null, 2)}\n`);
          return;
        }
        process.stdout.write('\n');
        process.stderr.write(
          `[${result.tokens.length} tokens (${result.stopReason}), prompt ${result.promptTokens} tokens, load ${loadMs.toFixed(0)} ms, ` +
            `first token ${result.firstTokenMs.toFixed(1)} ms, ${result.tokensPerSecond.toFixed(1)} tokens/s]\n`,
        );
      } finally {
        await model.dispose();
      }
    });
}
