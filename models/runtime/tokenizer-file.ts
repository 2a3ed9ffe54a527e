// Picks a tokenizer by name or file: "gpt2", or a `fleetlm/bpe@1` byte-level BPE file (trained by
// `fleetlm train --vocab N`), and finds the one that ships beside a model file.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ValidationError } from '../../common/errors.ts';
import { loadBpeTokenizer } from '../training/bpe-trainer.ts';
import { gpt2Tokenizer, type Tokenizer } from './tokenizer.ts';

/** The file name a model directory's own tokenizer has (what `fleetlm publish` ships as role "tokenizer"). */
export const TOKENIZER_FILE = 'tokenizer.json';

/** "gpt2", or the path of a `fleetlm/bpe@1` tokenizer file. Throws ValidationError for anything else. */
export async function loadTokenizer(pathOrName: string): Promise<Tokenizer> {
  if (pathOrName === 'gpt2') return gpt2Tokenizer();
  const stat = await fs.stat(pathOrName).catch(() => undefined);
  if (!stat?.isFile()) throw new ValidationError(`tokenizer must be "gpt2" or an existing fleetlm/bpe@1 JSON file; got ${JSON.stringify(pathOrName)}`);
  return loadBpeTokenizer(pathOrName);
}

/** The `tokenizer.json` in a model file's directory, or undefined when there is none. */
export async function findTokenizerBeside(modelPath: string): Promise<string | undefined> {
  const candidate = path.join(path.dirname(path.resolve(modelPath)), TOKENIZER_FILE);
  const stat = await fs.stat(candidate).catch(() => undefined);
  return stat?.isFile() ? candidate : undefined;
}

/**
 * The tokenizer for a model: the explicit choice when given, else a `tokenizer.json` beside the
 * model file, else GPT-2 (what every Hugging Face export here uses).
 */
export async function tokenizerForModel(modelPath: string, choice?: string): Promise<{ tokenizer: Tokenizer; source: string }> {
  if (choice !== undefined) return { tokenizer: await loadTokenizer(choice), source: choice };
  const beside = await findTokenizerBeside(modelPath);
  if (beside) return { tokenizer: await loadTokenizer(beside), source: beside };
  return { tokenizer: gpt2Tokenizer(), source: 'gpt2' };
}
