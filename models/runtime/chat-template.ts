// Chat templates from a Hugging Face tokenizer_config.json, rendered with @huggingface/jinja the way
// transformers' `apply_chat_template` does (messages, bos/eos tokens, add_generation_prompt).
// https://huggingface.co/docs/transformers/main/en/chat_templating
import { Template } from '@huggingface/jinja';
import { ValidationError } from '../../common/errors.ts';

/** One chat turn as OpenAI-style clients send it (content already flattened to text). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | 'developer';
  content: string;
}

/** What a template may read besides the messages: the tokenizer's special-token spellings. */
export interface ChatTemplateTokens {
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
}

/** A parsed chat template. Parsing happens once, at load; rendering is per request. */
export class ChatTemplate {
  private readonly template: Template;

  /** Throws ValidationError when `source` is not a template @huggingface/jinja can parse. */
  constructor(
    readonly source: string,
    private readonly tokens: ChatTemplateTokens = {},
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ValidationError(`chat_template cannot be parsed: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The prompt text for `messages`; with `addGenerationPrompt` (the default) it ends with the header
   * of an assistant turn, so the model writes the reply. A template that fails (e.g. Llama-2's
   * raise_exception "roles must alternate") gives a ValidationError: the caller's messages are at fault.
   */
  render(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    if (messages.length === 0) throw new ValidationError('messages must hold at least one message');
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt ?? true,
        bos_token: this.tokens.bosToken ?? '',
        eos_token: this.tokens.eosToken ?? '',
        unk_token: this.tokens.unkToken ?? '',
        pad_token: this.tokens.padToken ?? '',
        // raise_exception is built into @huggingface/jinja; it throws, and lands below.
      });
    } catch (err) {
      if (err instanceof ValidationError) throw err;
      throw new ValidationError(`the model's chat template failed on these messages: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * The template in a tokenizer_config.json `chat_template` field: a string, or a list of named
 * templates (the one named "default" is used). Undefined when the config has none.
 */
export function chatTemplateSource(value: unknown): string | undefined {
  if (typeof value === 'string') return value.length > 0 ? value : undefined;
  if (Array.isArray(value)) {
    const named = value.filter((v): v is { name: string; template: string } => typeof v === 'object' && v !== null && typeof v.name === 'string' && typeof v.template === 'string');
    return named.find((v) => v.name === 'default')?.template;
  }
  return undefined;
}
