// The OpenAI-compatible part of the local API: request schemas for POST /v1/completions and
// /v1/chat/completions and the response, stream-chunk and error objects, in the shapes OpenAI's API,
// llama.cpp's server, Ollama and vLLM use, so existing clients work against a device unchanged.
// https://platform.openai.com/docs/api-reference/chat/create
// https://platform.openai.com/docs/api-reference/completions/create
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { parseJsonWith } from '../common/validate.ts';
import type { ChatTurn, GenerateRequest, GenerationStats } from './model-runtime.ts';

// Unknown fields are ignored (clients send user, logprobs: null, penalties...); fields whose meaning the
// device cannot honour are refused when set to anything but their neutral value.
const Common = {
  model: z.string().max(200).optional(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).loose().nullish(),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish(),
  n: z.literal(1, { message: 'only n = 1 is supported' }).nullish(),
  max_tokens: z.number().int().min(1).max(4096).nullish(),
};

export const CompletionRequestSchema = z
  .object({
    ...Common,
    prompt: z.union([z.string().min(1), z.array(z.string().min(1)).length(1, { message: 'one prompt per request' })]),
  })
  .loose();

const ContentPartSchema = z.object({ type: z.literal('text', { message: 'only text content parts are supported' }), text: z.string() }).loose();

const MessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
    content: z.union([z.string(), z.array(ContentPartSchema), z.null()]),
  })
  .loose();

export const ChatCompletionRequestSchema = z
  .object({
    ...Common,
    /** The newer name for max_tokens on chat. */
    max_completion_tokens: z.number().int().min(1).max(4096).nullish(),
    messages: z.array(MessageSchema).min(1).max(256),
  })
  .loose();

/** Defaults as OpenAI documents them: temperature 1, top_p 1; completions write 16 tokens unless told. */
const DEFAULT_COMPLETION_TOKENS = 16;
/** Chat writes until a stop or the context is full (as vLLM and llama.cpp do); this caps it. */
const DEFAULT_CHAT_TOKENS = 4096;

export type OpenAiKind = 'completion' | 'chat';

/** A validated OpenAI request, turned into what the model runtime takes. */
export interface OpenAiRequest {
  kind: OpenAiKind;
  generate: GenerateRequest;
  stream: boolean;
  includeUsage: boolean;
}

function common(b: z.output<typeof CompletionRequestSchema> | z.output<typeof ChatCompletionRequestSchema>): Omit<GenerateRequest, 'prompt' | 'maxTokens'> {
  return {
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? 1,
    ...(b.seed == null ? {} : { seed: b.seed }),
    ...(b.stop == null ? {} : { stop: typeof b.stop === 'string' ? [b.stop] : b.stop }),
  };
}

/** Parses a POST /v1/completions body (ValidationError naming each bad field). */
export function parseCompletionRequest(text: string): OpenAiRequest {
  const b = parseJsonWith(CompletionRequestSchema, text, 'completion request');
  return {
    kind: 'completion',
    generate: { ...common(b), prompt: typeof b.prompt === 'string' ? b.prompt : b.prompt[0]!, maxTokens: b.max_tokens ?? DEFAULT_COMPLETION_TOKENS },
    stream: b.stream ?? false,
    includeUsage: b.stream_options?.include_usage ?? false,
  };
}

/** Parses a POST /v1/chat/completions body; text content parts are joined. */
export function parseChatRequest(text: string): OpenAiRequest {
  const b = parseJsonWith(ChatCompletionRequestSchema, text, 'chat completion request');
  const messages: ChatTurn[] = b.messages.map((m) => ({
    role: m.role,
    content: typeof m.content === 'string' ? m.content : m.content === null ? '' : m.content.map((p) => p.text).join(''),
  }));
  return {
    kind: 'chat',
    generate: { ...common(b), prompt: { messages }, maxTokens: b.max_completion_tokens ?? b.max_tokens ?? DEFAULT_CHAT_TOKENS },
    stream: b.stream ?? false,
    includeUsage: b.stream_options?.include_usage ?? false,
  };
}

type ErrorType = 'invalid_request_error' | 'rate_limit_error' | 'server_error' | 'not_found_error' | 'service_unavailable';

/** OpenAI's error object: { error: { message, type, param, code } }. */
export function openAiError(status: number, message: string): { error: { message: string; type: ErrorType; param: null; code: number } } {
  const type: ErrorType = status === 404 ? 'not_found_error' : status === 429 ? 'rate_limit_error' : status === 503 ? 'service_unavailable' : status >= 500 ? 'server_error' : 'invalid_request_error';
  return { error: { message, type, param: null, code: status } };
}

function usage(s: GenerationStats): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: s.promptTokens, completion_tokens: s.tokens, total_tokens: s.promptTokens + s.tokens };
}

/** Builds the response objects of one request: the same id, created time and model in each. */
export class OpenAiResponder {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);

  constructor(
    readonly kind: OpenAiKind,
    readonly model: string,
  ) {
    this.id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
  }

  private head(object: string): { id: string; object: string; created: number; model: string } {
    return { id: this.id, object, created: this.created, model: this.model };
  }

  /** The whole answer (stream: false). */
  complete(text: string, s: GenerationStats): Record<string, unknown> {
    const choice =
      this.kind === 'chat'
        ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: s.finishReason }
        : { index: 0, text, logprobs: null, finish_reason: s.finishReason };
    return { ...this.head(this.kind === 'chat' ? 'chat.completion' : 'text_completion'), choices: [choice], usage: usage(s) };
  }

  /** One streamed piece; chat's first chunk also carries the assistant role. */
  chunk(text: string, first: boolean): Record<string, unknown> {
    if (this.kind === 'chat') {
      const delta = first ? { role: 'assistant', content: text } : { content: text };
      return { ...this.head('chat.completion.chunk'), choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] };
    }
    return { ...this.head('text_completion'), choices: [{ index: 0, text, logprobs: null, finish_reason: null }] };
  }

  /** The last chunk with the finish reason (and usage when the client asked, as stream_options.include_usage does). */
  finalChunks(s: GenerationStats, includeUsage: boolean): Record<string, unknown>[] {
    const finish =
      this.kind === 'chat'
        ? { ...this.head('chat.completion.chunk'), choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: s.finishReason }] }
        : { ...this.head('text_completion'), choices: [{ index: 0, text: '', logprobs: null, finish_reason: s.finishReason }] };
    if (!includeUsage) return [finish];
    return [finish, { ...this.head(this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion'), choices: [], usage: usage(s) }];
  }
}
