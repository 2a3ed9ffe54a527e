// The seam between the agent and the model runtime: what serving and health checks need from a loaded
// model. The production implementation wraps models/runtime; nothing else in the agent imports it.
import type { Manifest } from '../contracts/manifest.ts';
import type { ModelRef } from './model-store.ts';

/** One chat turn (OpenAI's message shape with the content as text). */
export interface ChatTurn {
  role: 'system' | 'user' | 'assistant' | 'tool' | 'developer';
  content: string;
}

export interface GenerateRequest {
  /** Prompt text, or chat messages rendered with the model's chat template. */
  prompt: string | { messages: readonly ChatTurn[] };
  maxTokens: number;
  temperature: number;
  topP: number;
  /** Sampling seed (reproducible output with temperature > 0). */
  seed?: number;
  /** Text that ends generation; the text returned stops before it. */
  stop?: readonly string[];
  /** Keep going past an end-of-text token (health checks want a fixed token count). */
  ignoreEos?: boolean;
}

/** Why generation ended, in OpenAI's words: a stop token or stop string, or a token limit (max_tokens or the context). */
export type FinishReason = 'stop' | 'length';

export interface GenerationStats {
  /** Tokens generated. */
  tokens: number;
  promptTokens: number;
  finishReason: FinishReason;
  firstTokenMs: number;
  tokensPerSecond: number;
  totalMs: number;
}

/** Health of a model's raw scores over one text (what greedy decoding cannot see: argmax of NaNs is token 0). */
export interface LogitsReport {
  /** Token positions scored. */
  positions: number;
  /** Logit values inspected (positions x vocabulary). */
  values: number;
  /** NaN or infinite values among them. */
  nonFinite: number;
  /** Positions whose logits are all equal: the model prefers no token over another. */
  flatPositions: number;
}

/** A model loaded and ready to generate. */
export interface ServedModel {
  readonly ref: ModelRef;
  /**
   * Streams text pieces to `onToken`; resolves with timing once generation ends. A prompt the model
   * cannot take (too long for its context, no chat template for messages) rejects with ValidationError
   * before any piece is streamed.
   */
  generate(req: GenerateRequest, onToken: (text: string) => void, signal?: AbortSignal): Promise<GenerationStats>;
  /** Scores `text` in one pass and summarises the logits (health checks); optional for runtimes that cannot. */
  inspectLogits?(text: string): Promise<LogitsReport>;
  dispose(): Promise<void>;
}

/** Loads an installed version directory described by its manifest. */
export interface ModelRuntime {
  load(dir: string, manifest: Manifest, ref: ModelRef): Promise<ServedModel>;
}
