// FleetLM's own byte-level BPE as a Hugging Face tokenizer.json, and the older `fleetlm/bpe@1`
// file (id-pair merges) that models trained before now still carry: converted on load, never written.
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseWith } from '../../common/validate.ts';
import { byteToUnicodeTable, HfTokenizerJsonSchema, type HfTokenizerConfig } from './tokenizer-hf.ts';

/** End-of-text spelling of FleetLM's BPE (the GPT-2 convention). */
export const BPE_EOS_TEXT = '<|endoftext|>';

/** The older format: ids 0..255 are bytes, then one id per merge, then end-of-text last. */
export const BpeFileSchema = z
  .object({
    format: z.literal('fleetlm/bpe@1'),
    vocabSize: z.number().int().min(257),
    merges: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])),
    eosTokenId: z.number().int().nonnegative(),
  })
  .strict()
  .superRefine((f, ctx) => {
    if (f.vocabSize !== 256 + f.merges.length + 1) ctx.addIssue({ code: 'custom', message: `vocabSize ${f.vocabSize} must be 256 + ${f.merges.length} merges + 1 (end of text)` });
    if (f.eosTokenId !== f.vocabSize - 1) ctx.addIssue({ code: 'custom', path: ['eosTokenId'], message: `must be vocabSize - 1 = ${f.vocabSize - 1}` });
    f.merges.forEach(([a, b], i) => {
      if (a >= 256 + i || b >= 256 + i) ctx.addIssue({ code: 'custom', path: ['merges', i], message: `merge ${i} refers to id ${Math.max(a, b)} that does not exist yet (< ${256 + i})` });
    });
  });
export type BpeFile = z.output<typeof BpeFileSchema>;

/** Whether parsed JSON is the older `fleetlm/bpe@1` format (rather than a Hugging Face tokenizer.json). */
export function isFleetBpeFile(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { format?: unknown }).format === 'fleetlm/bpe@1';
}

// GPT-2's pre-tokenizer with the GPT-2 regex; same split as the trainer's PRETOKEN pattern.
const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true } as const;

/**
 * The merges as a Hugging Face byte-level BPE tokenizer.json (the layout GPT-2's own file has):
 * token strings in GPT-2's byte alphabet, merges ranked in learning order, end-of-text an added
 * special token. Encoding with it gives the same ids as FleetLM's BPE encoder whenever no two merges
 * spell the same bytes, which is checked here (ValidationError otherwise).
 */
export function bpeToHuggingFace(file: BpeFile): Record<string, unknown> {
  const b2u = byteToUnicodeTable();
  const strings = [...b2u];
  for (const [a, b] of file.merges) strings.push(strings[a]! + strings[b]!);
  const vocab: Record<string, number> = {};
  strings.forEach((s, id) => {
    if (s in vocab) throw new ValidationError(`BPE merge ${id - 256} spells the same bytes as id ${vocab[s]}; a Hugging Face vocabulary needs unique tokens`);
    vocab[s] = id;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: file.eosTokenId, content: BPE_EOS_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: BYTE_LEVEL,
    post_processor: null,
    decoder: BYTE_LEVEL,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: file.merges.map(([a, b]) => [strings[a]!, strings[b]!]),
    },
  };
}

/** The tokenizer_config.json that goes with `bpeToHuggingFace`: end-of-text, no BOS, no chat template. */
export function bpeTokenizerConfig(): HfTokenizerConfig {
  return { tokenizer_class: 'PreTrainedTokenizerFast', bos_token: null, eos_token: BPE_EOS_TEXT, unk_token: null, pad_token: null, clean_up_tokenization_spaces: false, model_max_length: 1_000_000 };
}

/**
 * The inverse of `bpeToHuggingFace`: id-pair merges from a byte-level tokenizer.json whose first 256
 * ids are the bytes, merges produce ids in order, and one special end-of-text token comes last.
 */
export function huggingFaceToBpe(tokenizerJson: unknown): BpeFile {
  const json = parseWith(HfTokenizerJsonSchema, tokenizerJson, 'tokenizer.json');
  const rawMerges = (json.model as { merges?: unknown }).merges;
  if (!Array.isArray(rawMerges)) throw new ValidationError('tokenizer.json model.merges must be a list of merges');
  const b2u = byteToUnicodeTable();
  const vocab = json.model.vocab;
  b2u.forEach((c, b) => {
    if (vocab[c] !== b) throw new ValidationError(`not a FleetLM byte-level BPE: byte ${b} must have id ${b}, got ${vocab[c]}`);
  });
  const merges: Array<[number, number]> = rawMerges.map((m: unknown, i) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : Array.isArray(m) ? (m as string[]) : [];
    const ia = a === undefined ? undefined : vocab[a];
    const ib = b === undefined ? undefined : vocab[b];
    if (ia === undefined || ib === undefined || vocab[a! + b!] !== 256 + i) throw new ValidationError(`not a FleetLM byte-level BPE: merge ${i} (${JSON.stringify(m)}) must produce id ${256 + i}`);
    return [ia, ib];
  });
  const eosTokenId = 256 + merges.length;
  if (!json.added_tokens.some((t) => t.id === eosTokenId && t.content === BPE_EOS_TEXT)) throw new ValidationError(`not a FleetLM byte-level BPE: ${BPE_EOS_TEXT} must be id ${eosTokenId}`);
  return parseWith(BpeFileSchema, { format: 'fleetlm/bpe@1', vocabSize: eosTokenId + 1, merges, eosTokenId }, 'BPE merges');
}
