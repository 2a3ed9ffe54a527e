// The header-first safetensors reader: positional reads give the same tensors as parsing the whole
// file, in every float dtype, and a truncated or lying file is refused by name.
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsReader } from '../../../models/checkpoint/safetensors-reader.ts';
import { parseSafetensors, tensorToFloat32 } from '../../../models/checkpoint/safetensors.ts';
import { tempDir } from '../../helpers/temp-dir.ts';
import { encodeSafetensorsAs, lcg, roundTo, type StoredDtype } from './hf-fixtures.ts';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('fleetlm-st-reader-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Bitwise equality of float arrays (vitest's deep equality is slow on millions of elements). */
const sameBits = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function tensor(count: number, seed: number, dtype: StoredDtype): Float32Array {
  const r = lcg(seed);
  const data = Float32Array.from({ length: count }, () => r() * 4);
  roundTo(data, dtype);
  return data;
}

describe('SafetensorsReader', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`reads ${dtype} tensors one at a time, equal to a whole-file parse`, () => {
      // 3 * 2^20 + 5 elements: more than one conversion chunk, not a multiple of it.
      const big = { data: tensor(3 * 2 ** 20 + 5, 1, dtype), shape: [3 * 2 ** 20 + 5] };
      const small = { data: tensor(12, 2, dtype), shape: [3, 4] };
      const bytes = encodeSafetensorsAs([['a.small', small], ['b.big', big]], dtype);
      const file = path.join(dir, `${dtype}.safetensors`);
      writeFileSync(file, bytes);
      const reader = SafetensorsReader.open(file);
      try {
        expect([...reader.entries.keys()]).toEqual(['a.small', 'b.big']);
        expect(reader.metadata).toEqual({ format: 'pt' });
        expect(reader.read('a.small')).toEqual(small);
        const read = reader.read('b.big');
        expect(read.shape).toEqual(big.shape);
        expect(sameBits(read.data, big.data)).toBe(true);
        const whole = parseSafetensors(bytes);
        expect(sameBits(read.data, tensorToFloat32('b.big', whole.tensors.get('b.big')!).data)).toBe(true);
        expect(tensorToFloat32('x', reader.readRawRange('b.big', 7, 3)).data).toEqual(big.data.subarray(7, 10));
        expect(() => reader.readRawRange('b.big', big.data.length - 1, 2)).toThrow(RangeError);
        expect(() => reader.read('c')).toThrow(/has no tensor "c"/);
      } finally {
        reader.close();
      }
      expect(() => reader.read('a.small')).toThrow(/is closed/);
    });
  }

  it('refuses a truncated file by name without reading tensor data', () => {
    const file = path.join(dir, 'cut.safetensors');
    writeFileSync(file, encodeSafetensorsAs([['w', { data: new Float32Array(64), shape: [8, 8] }]], 'F32'));
    truncateSync(file, 100);
    expect(() => SafetensorsReader.open(file)).toThrow(/cut\.safetensors: .*(past the data buffer|truncated)/);
    writeFileSync(file, new Uint8Array(4));
    expect(() => SafetensorsReader.open(file)).toThrow(/cut\.safetensors: file has 4 bytes/);
    expect(() => SafetensorsReader.open(path.join(dir, 'absent.safetensors'))).toThrow(/cannot read checkpoint .*absent\.safetensors/);
  });
});
