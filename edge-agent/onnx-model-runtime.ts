// ModelRuntime backed by models/runtime (onnxruntime-node): loads a bundle's entry file and streams
// tokens, timing first-token latency and decode speed the same way for serving and health checks.
import path from 'node:path';
import { ModelError, ValidationError } from '../common/errors.ts';
import type { Manifest } from '../contracts/manifest.ts';
// The light module: tokenizer-hf.ts would load the tokenizer library (and its vocabularies) at agent start.
import { isHfTokenizer } from '../models/runtime/tokenizer-kind.ts';
import { StopSequences } from '../models/runtime/stop-sequences.ts';
import type { LanguageModel, Tokenizer } from '../models/runtime/index.ts';
import { confinedPath } from './downloader.ts';
import type { GenerateRequest, GenerationStats, LogitsReport, ModelRuntime, ServedModel } from './model-runtime.ts';
import type { ModelRef } from './model-store.ts';

class OnnxServedModel implements ServedModel {
  constructor(
    readonly ref: ModelRef,
    private readonly lm: LanguageModel,
    /** Ids that end generation besides the tokenizer's end-of-text (the manifest's generation.stopTokens). */
    private readonly stopTokens: readonly number[],
  ) {}

  async generate(req: GenerateRequest, onToken: (text: string) => void, signal?: AbortSignal): Promise<GenerationStats> {
    const tok = this.lm.tokenizer;
    // Timed from here: first-token latency includes templating and tokenisation, as a caller sees it.
    const start = performance.now();
    let ids: number[];
    if (typeof req.prompt === 'string') {
      ids = tok.encode(req.prompt);
    } else {
      if (!isHfTokenizer(tok) || !tok.chatTemplate) {
        throw new ValidationError(`model ${this.ref.modelId}@${this.ref.version} has no chat template (its tokenizer_config.json has no chat_template); send a plain prompt to /v1/completions instead`);
      }
      // OpenAI's "developer" is the newer name of "system"; Hugging Face templates know only the latter.
      ids = tok.encodeChat(req.prompt.messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: m.content })));
    }
    const encodeMs = performance.now() - start;
    const stops = new StopSequences(req.stop ?? []);
    // A stop string ends generation through this signal; the caller's signal still ends it too.
    const own = new AbortController();
    const signals = signal ? AbortSignal.any([signal, own.signal]) : own.signal;
    const eos = tok.eosTokenId;
    const stopTokens = req.ignoreEos || this.stopTokens.length === 0 ? undefined : [...new Set([...(eos === undefined ? [] : [eos]), ...this.stopTokens])];
    // Validates the prompt against the context (ValidationError) before anything streams.
    const r = await this.lm.generateText(ids, {
      maxTokens: req.maxTokens,
      temperature: req.temperature,
      topP: req.topP,
      ...(req.seed === undefined ? {} : { seed: req.seed }),
      ...(stopTokens ? { stopTokens } : {}),
      ignoreEos: req.ignoreEos ?? false,
      signal: signals,
      onToken: (t) => {
        const text = stops.push(t.text);
        if (text) onToken(text);
        if (stops.stopped) own.abort();
      },
    });
    const rest = stops.flush();
    if (rest) onToken(rest);
    return {
      tokens: r.tokens.length,
      promptTokens: r.promptTokens,
      finishReason: stops.stopped || r.stopReason === 'stop-token' ? 'stop' : 'length',
      firstTokenMs: r.firstTokenMs + encodeMs,
      tokensPerSecond: r.tokensPerSecond,
      totalMs: performance.now() - start,
    };
  }

  async inspectLogits(text: string): Promise<LogitsReport> {
    const ctx = this.lm.info.contextLength ?? 2048;
    let ids = this.lm.tokenizer.encode(text);
    if (ids.length === 0 && this.lm.tokenizer.eosTokenId !== undefined) ids = [this.lm.tokenizer.eosTokenId];
    ids = ids.slice(-ctx);
    const logits = await this.lm.logits(ids);
    const V = logits.length / ids.length;
    let nonFinite = 0;
    let flatPositions = 0;
    for (let p = 0; p < ids.length; p++) {
      let min = Infinity;
      let max = -Infinity;
      let bad = 0;
      for (let i = p * V, end = i + V; i < end; i++) {
        const v = logits[i]!;
        if (!Number.isFinite(v)) bad++;
        else if (v < min) min = v;
        if (v > max) max = v;
      }
      nonFinite += bad;
      if (bad === 0 && max === min) flatPositions++;
    }
    return { positions: ids.length, values: logits.length, nonFinite, flatPositions };
  }

  async dispose(): Promise<void> {
    await this.lm.dispose();
  }
}

/**
 * Checks configured execution providers against the installed onnxruntime (loading it only when more than
 * the always-present CPU provider is asked for); the ModelError lists the installed ones.
 */
export async function checkExecutionProviders(providers: readonly string[]): Promise<void> {
  if (providers.length === 1 && providers[0] === 'cpu') return;
  const runtime = await import('../models/runtime/index.ts');
  runtime.checkExecutionProviders(providers);
}

/** Loads bundles with the FleetLM ONNX runtime; `threads` 0 lets the runtime choose. */
export class OnnxModelRuntime implements ModelRuntime {
  constructor(
    private readonly threads = 0,
    private readonly allowSpinning = false,
    private readonly executionProviders: readonly string[] = ['cpu'],
  ) {}

  async load(dir: string, manifest: Manifest, ref: ModelRef): Promise<ServedModel> {
    const entry = confinedPath(path.resolve(dir), manifest.entry);
    // Imported on first use: a device without a model yet does not pay for onnxruntime's memory.
    const { loadLanguageModel, loadTokenizerFile, gpt2Tokenizer } = await import('../models/runtime/index.ts');
    let tokenizer: Tokenizer;
    const ref_ = manifest.tokenizer;
    if (ref_.kind === 'gpt2-bpe') {
      tokenizer = gpt2Tokenizer();
    } else {
      // The bundle's own tokenizer.json (and tokenizer_config.json), verified with the other files
      // before install; only files the manifest names are read.
      const file = confinedPath(path.resolve(dir), ref_.file);
      const config = ref_.kind === 'huggingface' && ref_.config ? confinedPath(path.resolve(dir), ref_.config) : null;
      try {
        tokenizer = await loadTokenizerFile(file, config);
      } catch (err) {
        throw new ModelError(`the bundle's tokenizer ${ref_.file} cannot be loaded: ${(err as Error).message}`, { cause: err });
      }
    }
    // No spinning by default: the agent shares the device's cores with the application it serves.
    const lm = await loadLanguageModel(entry, {
      tokenizer,
      allowSpinning: this.allowSpinning,
      executionProviders: this.executionProviders,
      ...(this.threads > 0 ? { intraOpNumThreads: this.threads } : {}),
    });
    return new OnnxServedModel(ref, lm, manifest.generation.stopTokens);
  }
}
