// The operator's `--family` flag, spelt the same on every command (`search`, `benchmark`): `gpt2` or `llama`,
// the names the layer-latency tables and benchmark jobs use. `gpt` (the search's own name for the GPT-2 family,
// as its results record it) and `gpt-2` are taken for gpt2, in any case. Only the flag is spelt here: what goes
// on the wire (job documents, tables, grid hashes, search results) is unchanged.
import { ValidationError } from '../common/errors.ts';

/** The canonical values of `--family`. */
export const FAMILY_FLAG_VALUES = ['gpt2', 'llama'] as const;
export type FamilyFlag = (typeof FAMILY_FLAG_VALUES)[number];

/** Other spellings a user could reasonably type, and the family each means. */
const ALIASES: Readonly<Record<string, FamilyFlag>> = { gpt: 'gpt2', 'gpt-2': 'gpt2' };

/** The flag's values for its help text: what each is, the alias, and the default. */
export const FAMILY_FLAG_CHOICES =
  'gpt2 (LayerNorm, learned positions, GELU, biases; gpt is taken as gpt2) or llama (RMSNorm, rotary, SwiGLU, no biases, GQA) (default gpt2)';

/** The family `text` names (canonical spelling), undefined when not given; a ValidationError naming `flag` otherwise. */
export function parseFamilyFlag(text: string | undefined, flag = '--family'): FamilyFlag | undefined {
  if (text === undefined) return undefined;
  const key = text.trim().toLowerCase();
  const family = (FAMILY_FLAG_VALUES as readonly string[]).includes(key) ? (key as FamilyFlag) : ALIASES[key];
  if (family === undefined) throw new ValidationError(`${flag} must be gpt2 or llama (gpt is taken as gpt2); got '${text}'`);
  return family;
}
