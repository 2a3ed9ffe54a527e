// ModelRuntime backed by models/runtime (onnxruntime-node): loads a bundle's entry file and streams
// tokens, timing first-token latency and decode speed the same way for serving and health checks.
import path from 'node:path';
import { ModelError } from '../common/errors.ts';
import type { Manifest } from '../contracts/manifest.ts';
import type { LanguageModel, Tokenizer } from '../models/runtime/index.ts';
import { confinedPath } from './downloader.ts';
import type { GenerateRequest, GenerationStats, LogitsReport, ModelRuntime, ServedModel } from './model-runtime.ts';
import type { ModelRef } from './model-store.ts';

class OnnxServedModel implements ServedModel {
  constructor(
    readonly ref: ModelRef,
    private readonly lm: LanguageModel,
  ) {}

  async generate(req: GenerateRequest, onToken: (text: string) => void, signal?: AbortSignal): Promise<GenerationStats> {
    const start = performance.now();
    let first = 0;
    let last = 0;
    let tokens = 0;
    for await (const t of this.lm.generate(req.prompt, {
      maxTokens: req.maxTokens,
      temperature: req.temperature,
      topP: req.topP,
      ignoreEos: req.ignoreEos ?? false,
      signal,
    })) {
      last = performance.now();
      if (tokens === 0) first = last;
      tokens++;
      if (t.text) onToken(t.text);
    }
    const end = performance.now();
    const decodeMs = last - first;
    return {
      tokens,
      firstTokenMs: (tokens > 0 ? first : end) - start,
      tokensPerSecond: tokens > 1 && decodeMs > 0 ? ((tokens - 1) * 1000) / decodeMs : 0,
      totalMs: end - start,
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
    const { loadLanguageModel, loadTokenizer, gpt2Tokenizer } = await import('../models/runtime/index.ts');
    let tokenizer: Tokenizer;
    if (manifest.tokenizer.kind === 'gpt2-bpe') {
      tokenizer = gpt2Tokenizer();
    } else {
      // The bundle's own byte-level BPE (fleetlm/bpe@1), verified with the other files before install.
      const file = confinedPath(path.resolve(dir), manifest.tokenizer.file);
      try {
        tokenizer = await loadTokenizer(file);
      } catch (err) {
        throw new ModelError(`the bundle's tokenizer ${manifest.tokenizer.file} cannot be loaded: ${(err as Error).message}`, { cause: err });
      }
    }
    // No spinning by default: the agent shares the device's cores with the application it serves.
    const lm = await loadLanguageModel(entry, {
      tokenizer,
      allowSpinning: this.allowSpinning,
      executionProviders: this.executionProviders,
      ...(this.threads > 0 ? { intraOpNumThreads: this.threads } : {}),
    });
    return new OnnxServedModel(ref, lm);
  }
}
