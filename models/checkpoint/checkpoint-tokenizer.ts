// Which tokenizer a checkpoint was trained with, and where its file is: `fleetlm train` records it in the
// safetensors metadata ("gpt2" or "bpe:<file>") and writes a BPE tokenizer beside the checkpoint. `build`
// carries that file beside the ONNX model, so generate, perplexity and publish find it there.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ValidationError } from '../../common/errors.ts';

/** The checkpoint's tokenizer: GPT-2's (built in), a tokenizer.json file, or none known (the runtime then uses GPT-2's). */
export type CheckpointTokenizer = { kind: 'gpt2' } | { kind: 'file'; path: string; recorded: string | undefined } | { kind: 'none' };

async function isFile(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => undefined))?.isFile() === true;
}

/** `ckpt.safetensors` -> `ckpt.tokenizer.json`, where `fleetlm train --tokenizer bpe` writes its tokenizer. */
export function trainedTokenizerPath(weightsPath: string): string {
  return `${weightsPath.replace(/\.safetensors$/, '')}.tokenizer.json`;
}

/**
 * Finds the tokenizer of the checkpoint at `weightsPath` whose metadata records `recorded` (undefined for
 * checkpoints from elsewhere). A recorded file (`bpe:<file>`) is looked for by its name beside the checkpoint,
 * then as `<checkpoint>.tokenizer.json`, then as `tokenizer.json`; a missing one is a ValidationError
 * (VALIDATION_TOKENIZER_MISSING) naming the tokenizer and every place looked. Without a recorded file, a
 * tokenizer found in those places is used, else none.
 */
export async function findCheckpointTokenizer(weightsPath: string, recorded: string | undefined): Promise<CheckpointTokenizer> {
  if (recorded === 'gpt2') return { kind: 'gpt2' };
  const dir = path.dirname(path.resolve(weightsPath));
  const named = recorded?.includes(':') ? recorded.slice(recorded.indexOf(':') + 1) : undefined;
  const candidates = [...(named && !named.includes('/') && !named.includes('\\') ? [path.join(dir, named)] : []), trainedTokenizerPath(path.resolve(weightsPath)), path.join(dir, 'tokenizer.json')];
  for (const c of [...new Set(candidates)]) if (await isFile(c)) return { kind: 'file', path: c, recorded };
  // Only a recorded file (`bpe:<file>`, what `fleetlm train` writes) must be found; another name says nothing about one.
  if (named === undefined) return { kind: 'none' };
  throw new ValidationError(
    `checkpoint ${weightsPath} was trained with tokenizer ${recorded} (its safetensors metadata), which is not beside it: looked for ${[...new Set(candidates)].join(', ')}; ` +
      'copy the tokenizer file there or pass --tokenizer FILE',
    { code: 'VALIDATION_TOKENIZER_MISSING' },
  );
}
