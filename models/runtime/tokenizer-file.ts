// Picks a tokenizer by name or file: "gpt2", or a Hugging Face tokenizer.json (with the
// tokenizer_config.json beside it), and finds the one that ships beside a model file. FleetLM's own BPE
// is a Hugging Face file too; the older `fleetlm/bpe@1` format is still read (converted on load).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ValidationError } from '../../common/errors.ts';
import { bpeToHuggingFace, BpeFileSchema, isFleetBpeFile } from './tokenizer-fleetlm-bpe.ts';
import { huggingFaceTokenizer, type HfTokenizer } from './tokenizer-hf.ts';
import { gpt2Tokenizer, type Tokenizer } from './tokenizer.ts';
import { parseWith } from '../../common/validate.ts';

/** The file name a model directory's own tokenizer has (what `fleetlm publish` ships as role "tokenizer"). */
export const TOKENIZER_FILE = 'tokenizer.json';
/** Its companion: special tokens and the chat template (Hugging Face's name). */
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** Where the config of a tokenizer file lives: `dir/tokenizer.json` -> `dir/tokenizer_config.json`, `x.tokenizer.json` -> `x.tokenizer_config.json`. */
export function tokenizerConfigPathFor(tokenizerPath: string): string {
  return /tokenizer\.json$/.test(tokenizerPath) ? tokenizerPath.replace(/tokenizer\.json$/, TOKENIZER_CONFIG_FILE) : path.join(path.dirname(tokenizerPath), TOKENIZER_CONFIG_FILE);
}

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ValidationError(`${what} ${file} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * A tokenizer from a tokenizer.json file: Hugging Face format, or the older `fleetlm/bpe@1`.
 * `configPath` defaults to the tokenizer_config.json beside it, used when present; null reads no config
 * (the agent reads only files its manifest verified).
 */
export async function loadTokenizerFile(tokenizerPath: string, configPath?: string | null): Promise<HfTokenizer> {
  const json = await readJson(tokenizerPath, 'tokenizer');
  const cfgPath = configPath === undefined ? tokenizerConfigPathFor(tokenizerPath) : configPath;
  const hasConfig = cfgPath !== null && (configPath !== undefined || (await fs.stat(cfgPath).catch(() => undefined))?.isFile() === true);
  const config = hasConfig ? await readJson(cfgPath, 'tokenizer config') : {};
  const name = path.basename(tokenizerPath);
  if (isFleetBpeFile(json)) {
    return huggingFaceTokenizer(bpeToHuggingFace(parseWith(BpeFileSchema, json, `BPE tokenizer ${tokenizerPath}`)), config, name);
  }
  try {
    return huggingFaceTokenizer(json, config, name);
  } catch (err) {
    throw new ValidationError(`tokenizer ${tokenizerPath}: ${(err as Error).message}`, { cause: err });
  }
}

/** "gpt2", or the path of a tokenizer.json file. Throws ValidationError for anything else. */
export async function loadTokenizer(pathOrName: string): Promise<Tokenizer> {
  if (pathOrName === 'gpt2') return gpt2Tokenizer();
  const stat = await fs.stat(pathOrName).catch(() => undefined);
  if (!stat?.isFile()) throw new ValidationError(`tokenizer must be "gpt2" or an existing tokenizer.json file; got ${JSON.stringify(pathOrName)}`);
  return loadTokenizerFile(pathOrName);
}

/** The `tokenizer.json` in a model file's directory, or undefined when there is none. */
export async function findTokenizerBeside(modelPath: string): Promise<string | undefined> {
  const candidate = path.join(path.dirname(path.resolve(modelPath)), TOKENIZER_FILE);
  const stat = await fs.stat(candidate).catch(() => undefined);
  return stat?.isFile() ? candidate : undefined;
}

/**
 * The tokenizer for a model: the explicit choice when given, else a `tokenizer.json` (and its
 * tokenizer_config.json) beside the model file, else GPT-2 (with `missing`, the tokenizer.json looked for).
 */
export async function tokenizerForModel(modelPath: string, choice?: string): Promise<{ tokenizer: Tokenizer; source: string; missing?: string }> {
  if (choice !== undefined) return { tokenizer: await loadTokenizer(choice), source: choice };
  const beside = await findTokenizerBeside(modelPath);
  if (beside) return { tokenizer: await loadTokenizer(beside), source: beside };
  // `missing` lets a caller whose model does not fit GPT-2 name the file it looked for (vocab-match.ts).
  return { tokenizer: gpt2Tokenizer(), source: 'gpt2', missing: path.join(path.dirname(path.resolve(modelPath)), TOKENIZER_FILE) };
}
