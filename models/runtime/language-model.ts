// A causal language model behind onnxruntime: discovers Hugging Face Optimum
// `text-generation-with-past` inputs/outputs and generates token by token with a KV cache.
// Each generation owns its cache, so overlapping generate() calls on one model are safe.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ModelError, ValidationError } from '../../common/errors.ts';
import { parseWith } from '../../common/validate.ts';
import {
  createSession,
  boolTensor,
  float32Data,
  float32Tensor,
  int64Tensor,
  type BackendOptions,
  type OnnxSession,
  type OrtTensor,
  type ValueInfo,
} from './onnx-backend.ts';
import { Sampler, SamplingOptionsSchema } from './sampling.ts';
import { gpt2Tokenizer, StreamingDecoder, type Tokenizer } from './tokenizer.ts';

/** What the runtime learned about a model when loading it. */
export interface ModelInfo {
  path: string;
  /** Width of the logits (the model's vocabulary). */
  vocabSize: number;
  /** Layers with a KV cache (0 for a model exported without past inputs). */
  numLayers: number;
  /** Heads and head width of each layer's cache (KV heads: fewer than query heads under GQA/MQA). */
  heads: number[];
  headDims: number[];
  /** Longest sequence the model's positions cover, when known. */
  contextLength: number | undefined;
  hasPositionIds: boolean;
  hasAttentionMask: boolean;
  /** 'fused' or 'plain' for FleetLM-built graphs. */
  variant: string | undefined;
  producerName: string | undefined;
  opsets: Record<string, number>;
  metadata: Record<string, string>;
  fileBytes: number;
  threads: number;
}

/** Loading options: onnxruntime settings plus the tokenizer and limits. */
export interface LanguageModelOptions extends BackendOptions {
  /** Default: GPT-2's BPE. */
  tokenizer?: Tokenizer;
  /** Overrides the context length found in the model's metadata or a config.json beside it. */
  contextLength?: number;
  /**
   * Let onnxruntime write the KV cache and logits straight into buffers the runtime reuses across
   * steps (default true). When the binding cannot, the runtime falls back to its own outputs.
   */
  reuseBuffers?: boolean;
}

/** Generation options as outside callers (CLI, HTTP API) send them. */
export const GenerateOptionsSchema = SamplingOptionsSchema.extend({
  maxTokens: z.number().int().min(1).max(1_000_000).default(64),
  /** Ids that end generation (not emitted). Default: the tokenizer's end-of-text id. */
  stopTokens: z.array(z.number().int().min(0)).max(1024).optional(),
  /** Keep going past end-of-text (benchmarks). */
  ignoreEos: z.boolean().default(false),
}).strict();

export type GenerateOptionsInput = z.input<typeof GenerateOptionsSchema> & {
  /** Ends generation early (stopReason 'aborted'). */
  signal?: AbortSignal;
  /** generateText only: called with each token as it is produced, for streaming with stats. */
  onToken?: (token: GeneratedToken) => void;
};
export type GenerateOptions = z.output<typeof GenerateOptionsSchema>;

/** Validates generation options from outside. */
export function parseGenerateOptions(value: unknown): GenerateOptions {
  return parseWith(GenerateOptionsSchema, value ?? {}, 'generation options');
}

/** One streamed token. `text` is what this token completes (may be '' mid-character). */
export interface GeneratedToken {
  tokenId: number;
  text: string;
  index: number;
}

export type StopReason = 'stop-token' | 'max-tokens' | 'context-full' | 'aborted';

/** A finished generation with its timings. */
export interface GenerationResult {
  text: string;
  tokens: number[];
  promptTokens: number;
  stopReason: StopReason;
  /** From the call to the first generated token (tokenisation + prefill + sampling). */
  firstTokenMs: number;
  /** Decode speed after the first token: (tokens - 1) / time between first and last token. */
  tokensPerSecond: number;
  totalMs: number;
}

const PAST_RE = /^past_key_values\.(\d+)\.(key|value)$/;

interface Discovered {
  numLayers: number;
  heads: number[];
  headDims: number[];
  vocabSize: number;
  hasPositionIds: boolean;
  hasAttentionMask: boolean;
  hasUseCacheBranch: boolean;
  contextLength: number | undefined;
  variant: string | undefined;
}

interface ArchHint {
  vocabSize?: number;
  contextLength?: number;
  heads?: number[];
  headDims?: number[];
}

/** Reads what the FleetLM builder writes into metadata_props (`fleetlm.arch`, a spec as JSON). */
function archHint(metadata: Record<string, string>): ArchHint {
  const raw = metadata['fleetlm.arch'];
  const hint: ArchHint = {};
  if (raw !== undefined) {
    try {
      const spec = JSON.parse(raw) as { vocabSize?: unknown; contextLength?: unknown; blocks?: unknown };
      if (typeof spec.vocabSize === 'number') hint.vocabSize = spec.vocabSize;
      if (typeof spec.contextLength === 'number') hint.contextLength = spec.contextLength;
      if (Array.isArray(spec.blocks)) {
        const heads: number[] = [];
        const headDims: number[] = [];
        for (const b of spec.blocks as Array<{ layers?: unknown; heads?: unknown; kvHeads?: unknown; headDim?: unknown }>) {
          if (typeof b.layers !== 'number' || typeof b.heads !== 'number') continue;
          // The cache holds the key/value heads; specs written before grouped-query attention have none.
          const cacheHeads = typeof b.kvHeads === 'number' ? b.kvHeads : b.heads;
          for (let i = 0; i < b.layers; i++) {
            heads.push(cacheHeads);
            headDims.push(typeof b.headDim === 'number' ? b.headDim : 64);
          }
        }
        hint.heads = heads;
        hint.headDims = headDims;
      }
    } catch {
      // A foreign or damaged hint is ignored; the session metadata still decides.
    }
  }
  for (const key of ['context_length', 'max_position_embeddings', 'n_positions']) {
    const v = Number(metadata[key]);
    if (hint.contextLength === undefined && Number.isInteger(v) && v > 0) hint.contextLength = v;
  }
  return hint;
}

/** A Hugging Face config.json beside the model (Optimum exports carry one) gives the context length. */
function contextFromConfigJson(modelPath: string): number | undefined {
  const file = path.join(path.dirname(modelPath), 'config.json');
  if (!existsSync(file)) return undefined;
  try {
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    for (const key of ['max_position_embeddings', 'n_positions', 'n_ctx']) {
      const v = cfg[key];
      if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
    }
  } catch {
    // Not ours to validate; the context length simply stays unknown.
  }
  return undefined;
}

function describeIo(values: readonly ValueInfo[]): string {
  return values.map((v) => `${v.name}:${v.type}[${v.dims.join(',')}]`).join(', ');
}

function discover(session: OnnxSession, options: LanguageModelOptions): Discovered {
  const what = `model ${session.path}`;
  const ids = session.input('input_ids');
  if (ids === undefined || ids.type !== 'int64') {
    throw new ModelError(`${what} is not a causal LM: it needs an int64 input "input_ids"; inputs are ${describeIo(session.inputs)}`, {
      code: 'MODEL_IO',
    });
  }
  const logits = session.output('logits');
  if (logits === undefined || logits.type !== 'float32') {
    throw new ModelError(`${what} is not a causal LM: it needs a float32 output "logits"; outputs are ${describeIo(session.outputs)}`, {
      code: 'MODEL_IO',
    });
  }
  const hint = archHint(session.header.metadata);
  const pastLayers = new Set<number>();
  for (const input of session.inputs) {
    const m = PAST_RE.exec(input.name);
    if (m) pastLayers.add(Number(m[1]));
  }
  const numLayers = pastLayers.size;
  const heads: number[] = [];
  const headDims: number[] = [];
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ['key', 'value']) {
      const past = session.input(`past_key_values.${i}.${kind}`);
      const present = session.output(`present.${i}.${kind}`);
      if (past === undefined || present === undefined) {
        throw new ModelError(
          `${what}: layer ${i} needs both past_key_values.${i}.${kind} and present.${i}.${kind} (layers must be numbered 0..${numLayers - 1}); inputs are ${describeIo(session.inputs)}`,
          { code: 'MODEL_IO' },
        );
      }
      if (past.type !== 'float32') {
        throw new ModelError(`${what}: past_key_values.${i}.${kind} is ${past.type}; only float32 caches are supported`, { code: 'MODEL_IO' });
      }
    }
    const info = session.input(`past_key_values.${i}.key`)!;
    const out = session.output(`present.${i}.key`)!;
    const pick = (j: number, fallback: number | undefined): number => {
      const a = info.dims[j];
      const b = out.dims[j];
      if (typeof a === 'number') return a;
      if (typeof b === 'number') return b;
      if (fallback !== undefined) return fallback;
      throw new ModelError(`${what}: cannot tell the ${j === 1 ? 'head count' : 'head width'} of layer ${i}: past_key_values.${i}.key has dims [${info.dims.join(',')}]`, {
        code: 'MODEL_IO',
      });
    };
    heads.push(pick(1, hint.heads?.[i]));
    headDims.push(pick(3, hint.headDims?.[i]));
  }
  const vocabDim = logits.dims[2];
  const vocabSize = typeof vocabDim === 'number' ? vocabDim : (hint.vocabSize ?? options.tokenizer?.vocabSize ?? gpt2Tokenizer().vocabSize);
  const contextLength = options.contextLength ?? hint.contextLength ?? contextFromConfigJson(session.path);
  return {
    numLayers,
    heads,
    headDims,
    vocabSize,
    hasPositionIds: session.input('position_ids') !== undefined,
    hasAttentionMask: session.input('attention_mask') !== undefined,
    hasUseCacheBranch: session.input('use_cache_branch') !== undefined,
    contextLength,
    variant: session.header.metadata['fleetlm.variant'],
  };
}

/**
 * One sequence's decoding state: its KV cache and reusable I/O buffers. The cache lives in two
 * buffers per tensor that swap roles each step (read past from one, let onnxruntime write present
 * into the other), because the graph concatenates past and new keys into a fresh tensor.
 */
export class DecodeState {
  /** Tokens consumed so far (the cache length). */
  length = 0;
  readonly capacity: number;
  readonly tokens: number[] = [];
  /** [front|back][layer*2 + (0 key | 1 value)] */
  readonly buffers: [Float32Array[], Float32Array[]] | undefined;
  front: 0 | 1 = 0;
  /** Cache tensors returned by onnxruntime when buffers are not reused. */
  past: OrtTensor[] = [];
  readonly mask: BigInt64Array;
  readonly stepIds = new BigInt64Array(1);
  readonly stepPositions = new BigInt64Array(1);
  readonly stepLogits: Float32Array;

  constructor(capacity: number, info: Discovered, reuse: boolean) {
    this.capacity = capacity;
    this.mask = new BigInt64Array(capacity).fill(1n);
    this.stepLogits = new Float32Array(reuse ? info.vocabSize : 0);
    if (reuse) {
      const make = (): Float32Array[] => {
        const out: Float32Array[] = [];
        for (let i = 0; i < info.numLayers; i++) {
          const n = info.heads[i]! * capacity * info.headDims[i]!;
          out.push(new Float32Array(n), new Float32Array(n));
        }
        return out;
      };
      this.buffers = [make(), make()];
    }
  }

  /** Forgets the sequence so the buffers serve a new one. */
  reset(): void {
    this.length = 0;
    this.tokens.length = 0;
    this.front = 0;
    this.past = [];
  }
}

/** A loaded causal language model. */
export class LanguageModel {
  readonly info: ModelInfo;
  readonly tokenizer: Tokenizer;
  private readonly session: OnnxSession;
  private readonly io: Discovered;
  private reuse: boolean;
  private verifying = false;
  // Cache input/output names by slot (layer*2 + 0 key | 1 value), built once.
  private readonly pastNames: string[] = [];
  private readonly presentNames: string[] = [];

  constructor(session: OnnxSession, io: Discovered, tokenizer: Tokenizer, reuse: boolean) {
    this.session = session;
    this.io = io;
    this.tokenizer = tokenizer;
    this.reuse = reuse && io.numLayers > 0;
    for (let i = 0; i < io.numLayers; i++) {
      for (const kind of ['key', 'value']) {
        this.pastNames.push(`past_key_values.${i}.${kind}`);
        this.presentNames.push(`present.${i}.${kind}`);
      }
    }
    const h = session.header;
    this.info = {
      path: session.path,
      vocabSize: io.vocabSize,
      numLayers: io.numLayers,
      heads: io.heads,
      headDims: io.headDims,
      contextLength: io.contextLength,
      hasPositionIds: io.hasPositionIds,
      hasAttentionMask: io.hasAttentionMask,
      variant: io.variant,
      producerName: h.producerName,
      opsets: h.opsets,
      metadata: h.metadata,
      fileBytes: h.fileBytes,
      threads: session.threads,
    };
  }

  /**
   * Runs one token through the model, which checks that it executes and, when buffers are to be
   * reused, that the binding honours preallocated outputs (else reuse is switched off).
   */
  async warmUp(): Promise<void> {
    const first = this.tokenizer.eosTokenId !== undefined && this.tokenizer.eosTokenId < this.io.vocabSize ? this.tokenizer.eosTokenId : 0;
    this.verifying = this.reuse;
    try {
      await this.step(this.createState(1), [first]);
    } catch (err) {
      if (!(err instanceof ModelError && err.code === 'MODEL_NO_REUSE')) throw err;
      this.reuse = false;
    } finally {
      this.verifying = false;
    }
  }

  /** Whether onnxruntime writes into the runtime's reused buffers (false after a fallback). */
  get reusesBuffers(): boolean {
    return this.reuse;
  }

  /** A fresh decoding state able to hold `capacity` tokens (default: the context length, else 2048). */
  createState(capacity?: number): DecodeState {
    const cap = capacity ?? this.info.contextLength ?? 2048;
    if (!Number.isInteger(cap) || cap < 1) throw new ValidationError(`state capacity must be a positive integer, got ${cap}`);
    return new DecodeState(cap, this.io, this.reuse);
  }

  /**
   * Feeds `tokens` after what `state` holds and returns their logits: a [tokens.length, vocabSize]
   * row-major view when `allLogits`, else the last row. The view is valid until the next step.
   */
  async step(state: DecodeState, tokens: readonly number[], allLogits = false): Promise<Float32Array> {
    const s = tokens.length;
    const P = state.length;
    const V = this.io.vocabSize;
    if (s === 0) throw new ValidationError('step needs at least one token');
    if (P + s > state.capacity) {
      throw new ValidationError(`sequence of ${P + s} tokens exceeds the state's capacity of ${state.capacity}`);
    }
    const ctx = this.info.contextLength;
    if (ctx !== undefined && P + s > ctx) {
      throw new ValidationError(`sequence of ${P + s} tokens exceeds the model's context length of ${ctx}`);
    }
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new ValidationError(`token id must be an integer in [0, ${V}), got ${t}`);
    }
    const L = this.io.numLayers;
    // A model exported without a cache sees the whole sequence every step.
    const fed = L === 0 ? [...state.tokens, ...tokens] : tokens;
    const n = fed.length;
    const start = L === 0 ? 0 : P;
    const feeds: Record<string, OrtTensor> = {};
    const ids = n === 1 ? state.stepIds : new BigInt64Array(n);
    for (let i = 0; i < n; i++) ids[i] = BigInt(fed[i]!);
    feeds.input_ids = int64Tensor(ids, [1, n]);
    if (this.io.hasAttentionMask) feeds.attention_mask = int64Tensor(state.mask.subarray(0, P + s), [1, P + s]);
    if (this.io.hasPositionIds) {
      const pos = n === 1 ? state.stepPositions : new BigInt64Array(n);
      for (let i = 0; i < n; i++) pos[i] = BigInt(start + i);
      feeds.position_ids = int64Tensor(pos, [1, n]);
    }
    const fetches: Record<string, OrtTensor | null> = {};
    const useStepLogits = n === 1 && state.stepLogits.length === V;
    fetches.logits = useStepLogits ? float32Tensor(state.stepLogits, [1, 1, V]) : null;
    const reuse = state.buffers !== undefined;
    for (let i = 0; i < L; i++) {
      const h = this.io.heads[i]!;
      const d = this.io.headDims[i]!;
      for (let k = 0; k < 2; k++) {
        const slot = 2 * i + k;
        let past: OrtTensor;
        if (reuse) {
          past = float32Tensor(state.buffers![state.front][slot]!.subarray(0, h * P * d), [1, h, P, d]);
          fetches[this.presentNames[slot]!] = float32Tensor(state.buffers![1 - state.front]![slot]!.subarray(0, h * (P + s) * d), [1, h, P + s, d]);
        } else {
          past = P === 0 || state.past[slot] === undefined ? float32Tensor(new Float32Array(0), [1, h, 0, d]) : state.past[slot]!;
          fetches[this.presentNames[slot]!] = null;
        }
        feeds[this.pastNames[slot]!] = past;
      }
    }
    if (this.io.hasUseCacheBranch) feeds.use_cache_branch = boolTensor([P > 0], [1]);
    const out = await this.session.run(feeds, fetches);
    if (reuse) {
      if (this.verifying) {
        // onnxruntime-node writes into preallocated outputs (and still returns a copy); make sure
        // this binding really does before trusting the buffers.
        const name = 'present.0.key';
        const ours = fetches[name]!.data as Float32Array;
        const theirs = out[name] === undefined ? undefined : float32Data(out[name]!);
        this.verifying = false;
        if (theirs === undefined || theirs.length !== ours.length || !theirs.every((v, i) => Object.is(v, ours[i]))) {
          throw new ModelError('this onnxruntime binding ignores preallocated outputs', { code: 'MODEL_NO_REUSE' });
        }
      }
      state.front = (1 - state.front) as 0 | 1;
    } else if (L > 0) {
      state.past = [];
      for (let slot = 0; slot < 2 * L; slot++) state.past.push(out[this.presentNames[slot]!]!);
    }
    state.length = P + s;
    for (const t of tokens) state.tokens.push(t);
    const logitsTensor = out.logits;
    if (logitsTensor === undefined) throw new ModelError(`model ${this.info.path} returned no logits`, { code: 'MODEL_RUN' });
    const all = useStepLogits ? state.stepLogits : float32Data(logitsTensor);
    if (all.length !== n * V) {
      throw new ModelError(`model ${this.info.path} returned ${all.length} logits for ${n} tokens; expected ${n} x ${V}`, { code: 'MODEL_RUN' });
    }
    const data = n === s ? all : all.subarray((n - s) * V);
    return allLogits ? data : data.subarray((s - 1) * V, s * V);
  }

  /** Logits of a whole sequence in one pass without a cache: [tokens.length, vocabSize]. */
  async logits(tokens: readonly number[]): Promise<Float32Array> {
    const state = this.createState(tokens.length);
    const out = await this.step(state, tokens, true);
    return out.buffer === state.stepLogits.buffer ? out.slice() : out;
  }

  private promptIds(prompt: string | readonly number[]): number[] {
    const ids = typeof prompt === 'string' ? this.tokenizer.encode(prompt) : [...prompt];
    if (ids.length === 0) {
      const eos = this.tokenizer.eosTokenId;
      if (eos === undefined) throw new ValidationError('the prompt is empty and the tokenizer has no end-of-text token to start from');
      ids.push(eos); // GPT-2 convention: an unconditional sample starts from <|endoftext|>.
    }
    const V = this.io.vocabSize;
    for (const t of ids) {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new ValidationError(`prompt token ids must be integers in [0, ${V}), got ${t}`);
    }
    const ctx = this.info.contextLength;
    if (ctx !== undefined && ids.length >= ctx) {
      throw new ValidationError(`the prompt has ${ids.length} tokens; the model's context length is ${ctx}, so at most ${ctx - 1} fit`);
    }
    return ids;
  }

  /**
   * Streams generated tokens. Sampling follows `options` (greedy by default); generation ends at a
   * stop token (not emitted), after maxTokens, when the context is full, or when `signal` aborts.
   * Options and prompt are validated here, before iteration starts (ValidationError).
   */
  generate(prompt: string | readonly number[], options: GenerateOptionsInput = {}): AsyncIterable<GeneratedToken> {
    const { signal, onToken: _ignored, ...rest } = options;
    const opts = parseGenerateOptions(rest);
    const ids = this.promptIds(prompt);
    return { [Symbol.asyncIterator]: () => this.stream(ids, opts, signal, newStats()) };
  }

  /** Generates to the end and returns the text with timings. */
  async generateText(prompt: string | readonly number[], options: GenerateOptionsInput = {}): Promise<GenerationResult> {
    const start = performance.now();
    const { signal, onToken, ...rest } = options;
    const opts = parseGenerateOptions(rest);
    const ids = this.promptIds(prompt);
    const stats = newStats();
    const tokens: number[] = [];
    for await (const t of this.stream(ids, opts, signal, stats)) {
      tokens.push(t.tokenId);
      onToken?.(t);
    }
    const end = performance.now();
    const decodeMs = stats.lastAt - stats.firstAt;
    return {
      text: this.tokenizer.decode(tokens.filter((t) => t < this.tokenizer.vocabSize)),
      tokens,
      promptTokens: ids.length,
      stopReason: stats.reason,
      firstTokenMs: stats.firstAt > 0 ? stats.firstAt - start : end - start,
      tokensPerSecond: tokens.length > 1 && decodeMs > 0 ? ((tokens.length - 1) * 1000) / decodeMs : 0,
      totalMs: end - start,
    };
  }

  private async *stream(ids: number[], opts: GenerateOptions, signal: AbortSignal | undefined, stats: Stats): AsyncGenerator<GeneratedToken> {
    if (this.session.disposed) throw new ModelError(`model ${this.info.path} was disposed; load it again`, { code: 'MODEL_DISPOSED' });
    // Ids past the tokenizer's vocabulary (OPT pads its logits to 50272) can never be decoded.
    const V = Math.min(this.io.vocabSize, this.tokenizer.vocabSize);
    const eos = this.tokenizer.eosTokenId;
    const stops = new Set(opts.stopTokens ?? (eos !== undefined && !opts.ignoreEos ? [eos] : []));
    const ctx = this.info.contextLength ?? Number.MAX_SAFE_INTEGER;
    const state = this.createState(Math.min(ctx, ids.length + opts.maxTokens));
    const sampler = new Sampler(V, { temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed });
    const decoder = new StreamingDecoder(this.tokenizer);
    stats.reason = 'max-tokens';
    let logits = await this.step(state, ids);
    for (let index = 0; index < opts.maxTokens; index++) {
      if (signal?.aborted) {
        stats.reason = 'aborted';
        return;
      }
      const tokenId = sampler.sample(logits);
      stats.lastAt = performance.now();
      if (index === 0) stats.firstAt = stats.lastAt;
      if (stops.has(tokenId)) {
        stats.reason = 'stop-token';
        return;
      }
      yield { tokenId, text: decoder.push(tokenId), index };
      if (index + 1 === opts.maxTokens) return;
      if (state.length + 1 > ctx) {
        stats.reason = 'context-full';
        return;
      }
      logits = await this.step(state, [tokenId]);
    }
  }

  /** Frees the native session. Generations in flight fail with ModelError at their next step. */
  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}

interface Stats {
  reason: StopReason;
  firstAt: number;
  lastAt: number;
}

function newStats(): Stats {
  return { reason: 'max-tokens', firstAt: 0, lastAt: 0 };
}

/** Loads a model file and its tokenizer. Throws ModelError for a missing, truncated or foreign file. */
export async function loadLanguageModel(modelPath: string, options: LanguageModelOptions = {}): Promise<LanguageModel> {
  if (options.contextLength !== undefined && (!Number.isInteger(options.contextLength) || options.contextLength < 1)) {
    throw new ValidationError(`contextLength must be a positive integer, got ${options.contextLength}`);
  }
  const session = await createSession(modelPath, options);
  try {
    const io = discover(session, options);
    const model = new LanguageModel(session, io, options.tokenizer ?? gpt2Tokenizer(), options.reuseBuffers ?? true);
    await model.warmUp();
    return model;
  } catch (err) {
    await session.dispose();
    throw err;
  }
}
