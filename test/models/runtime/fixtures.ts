// Shared fixtures for runtime tests: tiny models built by the ONNX builder, and a character
// tokenizer whose vocabulary fits the TINY spec (64 ids).
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TINY } from '../../../models/arch/presets.ts';
import type { ArchSpec } from '../../../models/arch/spec.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { ByteVocabulary, type Tokenizer } from '../../../models/runtime/tokenizer.ts';

/** A fresh temporary directory for one test file. */
export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `fleetlm-${prefix}-`));
}

/** Builds `spec` with seeded random weights into dir; returns the model path. */
export async function buildTiny(dir: string, fused: boolean, spec: ArchSpec = TINY, seed = 7): Promise<string> {
  const outPath = path.join(dir, `${spec.name ?? 'model'}-${fused ? 'fused' : 'plain'}.onnx`);
  await buildModelFile(spec, { outPath, fused, seed });
  return outPath;
}

const ALPHABET = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,';

/** One id per character of a 63-character alphabet, plus end-of-text as id 63. */
export function charTokenizer(): Tokenizer {
  const enc = new TextEncoder();
  const chars = [...ALPHABET].slice(0, 63);
  const vocab = new ByteVocabulary([...chars.map((c) => enc.encode(c)), enc.encode('<eot>')]);
  const dec = new TextDecoder();
  return {
    name: 'chars',
    vocabSize: 64,
    eosTokenId: 63,
    encode: (text) =>
      [...text].map((c) => {
        const i = chars.indexOf(c);
        if (i < 0) throw new RangeError(`character ${JSON.stringify(c)} is not in the test alphabet`);
        return i;
      }),
    decodeBytes: (ids) => vocab.decodeBytes(ids),
    decode: (ids) => dec.decode(vocab.decodeBytes(ids)),
  };
}
