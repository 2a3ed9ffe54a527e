// Byte-level BPE (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword
// Units"; byte-level as in GPT-2, Radford et al. 2019) trained on a corpus and saved as a Hugging Face
// tokenizer.json, so the runtime loads it like any other. The fast id-pair encoder here is for training.
import { promises as fs } from 'node:fs';
import { ValidationError } from '../../common/errors.ts';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { parseWith } from '../../common/validate.ts';
import { ByteVocabulary, type Tokenizer } from '../runtime/tokenizer.ts';
import { BPE_EOS_TEXT, BpeFileSchema, bpeToHuggingFace, huggingFaceToBpe, isFleetBpeFile, type BpeFile } from '../runtime/tokenizer-fleetlm-bpe.ts';

export { BpeFileSchema, type BpeFile };

/** GPT-2's pre-tokenisation pattern: merges never cross these pieces (HF's ByteLevel use_regex splits the same way). */
const PRETOKEN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const EOS_TEXT = BPE_EOS_TEXT;

const pairKey = (a: number, b: number): number => a * 65536 + b;

/**
 * Learns `vocabSize - 257` merges from `texts` (most frequent adjacent pair first; ties go to the
 * smaller pair key so training is deterministic).
 */
export function trainBpe(texts: Iterable<string>, vocabSize: number): BpeFile {
  if (!Number.isInteger(vocabSize) || vocabSize < 257 || vocabSize > 65536) throw new ValidationError(`--vocab must be an integer in [257, 65536], got ${vocabSize}`);
  const encoder = new TextEncoder();
  const wordCounts = new Map<string, number>();
  for (const text of texts) for (const m of text.matchAll(PRETOKEN)) wordCounts.set(m[0], (wordCounts.get(m[0]) ?? 0) + 1);
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Array.from(encoder.encode(w)));
    counts.push(c);
  }
  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: number): void => {
    const w = words[wi]!;
    for (let i = 0; i + 1 < w.length; i++) {
      const k = pairKey(w[i]!, w[i + 1]!);
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + sign * counts[wi]!);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  words.forEach((_, wi) => addPairs(wi, 1));
  const merges: Array<[number, number]> = [];
  const target = vocabSize - 257;
  while (merges.length < target) {
    let best = -1;
    let bestCount = 0;
    for (const [k, c] of pairCounts) if (c > bestCount || (c === bestCount && c > 0 && k < best)) [best, bestCount] = [k, c];
    if (best < 0 || bestCount < 2) break;
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const id = 256 + merges.length;
    merges.push([a, b]);
    for (const wi of pairWords.get(best) ?? []) {
      const w = words[wi]!;
      addPairs(wi, -1);
      const merged: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          merged.push(id);
          i++;
        } else merged.push(w[i]!);
      }
      words[wi] = merged;
      addPairs(wi, 1);
    }
    pairCounts.delete(best);
    pairWords.delete(best);
  }
  // A corpus too small for the requested merges gives a smaller vocabulary.
  return { format: 'fleetlm/bpe@1', vocabSize: 256 + merges.length + 1, merges, eosTokenId: 256 + merges.length };
}

/** A Tokenizer from learned merges (encode applies merges by rank within each pre-token). */
export function bpeTokenizer(file: BpeFile, name = 'bpe'): Tokenizer & { readonly file: BpeFile } {
  const ranks = new Map<number, number>();
  file.merges.forEach(([a, b], i) => ranks.set(pairKey(a, b), i));
  const tokens: Uint8Array[] = [];
  for (let i = 0; i < 256; i++) tokens.push(Uint8Array.of(i));
  for (const [a, b] of file.merges) {
    const ta = tokens[a]!;
    const tb = tokens[b]!;
    const t = new Uint8Array(ta.length + tb.length);
    t.set(ta);
    t.set(tb, ta.length);
    tokens.push(t);
  }
  const encoder = new TextEncoder();
  tokens.push(encoder.encode(EOS_TEXT));
  const vocab = new ByteVocabulary(tokens);
  const decoder = new TextDecoder('utf-8');
  const cache = new Map<string, number[]>();
  const encodeWord = (w: string): number[] => {
    const hit = cache.get(w);
    if (hit) return hit;
    const ids = Array.from(encoder.encode(w));
    for (;;) {
      let bestRank = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < ids.length; i++) {
        const r = ranks.get(pairKey(ids[i]!, ids[i + 1]!));
        if (r !== undefined && r < bestRank) [bestRank, at] = [r, i];
      }
      if (at < 0) break;
      ids.splice(at, 2, 256 + bestRank);
    }
    if (cache.size < 200_000) cache.set(w, ids);
    return ids;
  };
  return {
    name,
    file,
    vocabSize: file.vocabSize,
    eosTokenId: file.eosTokenId,
    encode: (text) => {
      const out: number[] = [];
      for (const m of text.matchAll(PRETOKEN)) for (const id of encodeWord(m[0])) out.push(id);
      return out;
    },
    decodeBytes: (ids) => vocab.decodeBytes(ids),
    decode: (ids) => decoder.decode(vocab.decodeBytes(ids)),
  };
}

/** Writes the merges as a Hugging Face tokenizer.json (atomically). */
export async function saveBpe(filePath: string, file: BpeFile): Promise<void> {
  await writeJsonAtomic(filePath, bpeToHuggingFace(file));
}

/** Reads merges back from a tokenizer.json this trainer wrote, or from an older `fleetlm/bpe@1` file. */
export async function loadBpeTokenizer(filePath: string): Promise<Tokenizer & { readonly file: BpeFile }> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(filePath, 'utf8')) as unknown;
  } catch (err) {
    throw new ValidationError(`cannot read BPE tokenizer ${filePath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const file = isFleetBpeFile(json) ? parseWith(BpeFileSchema, json, `BPE tokenizer ${filePath}`) : huggingFaceToBpe(json);
  return bpeTokenizer(file, 'bpe');
}

/** Where the tokenizer of a checkpoint lives: `x.safetensors` -> `x.tokenizer.json`. */
export function tokenizerPathFor(weightsPath: string): string {
  return `${weightsPath.replace(/\.safetensors$/, '')}.tokenizer.json`;
}
