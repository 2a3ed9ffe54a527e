// Which kind a loaded tokenizer is, told without loading any tokenizer library: the device's request path
// asks this before the model's runtime modules would otherwise be needed at start-up.
import type { Tokenizer } from './tokenizer.ts';
import type { HfTokenizer } from './tokenizer-hf.ts';

/** True for a tokenizer loaded from a Hugging Face tokenizer.json (it may carry a chat template). */
export function isHfTokenizer(t: Tokenizer): t is HfTokenizer {
  return (t as Partial<HfTokenizer>).kind === 'huggingface';
}
