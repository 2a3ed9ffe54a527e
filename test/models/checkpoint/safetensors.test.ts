// safetensors reading and writing, and strict rejection of headers that lie.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../common/errors.ts';
import {
  MAX_HEADER_BYTES,
  encodeSafetensors,
  parseSafetensors,
  readSafetensors,
  tensorToFloat32,
  writeSafetensors,
} from '../../../models/checkpoint/safetensors.ts';
import type { WeightTensor } from '../../../models/arch/weights.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-st-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Builds a file from a hand-written header and a data buffer of `dataBytes` bytes. */
function craft(header: unknown, dataBytes: number, headerLenOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

describe('safetensors round trip', () => {
  it('writes and reads tensors and metadata unchanged', async () => {
    const tensors = new Map<string, WeightTensor>([
      ['a.weight', { data: Float32Array.from([1.5, -2, 3.25, 4, 5, 6]), shape: [2, 3] }],
      ['b.bias', { data: Float32Array.from([0.1]), shape: [1] }],
      ['scalar', { data: Float32Array.from([7]), shape: [] }],
    ]);
    const file = path.join(dir, 'rt.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt' });
    const read = await readSafetensors(file);
    expect(read.metadata).toEqual({ format: 'pt' });
    expect([...read.tensors.keys()].sort()).toEqual(['a.weight', 'b.bias', 'scalar']);
    for (const [name, t] of tensors) {
      const got = tensorToFloat32(name, read.tensors.get(name)!);
      expect(got.shape).toEqual(t.shape);
      expect(Array.from(got.data)).toEqual(Array.from(t.data));
    }
    const bytes = encodeSafetensors(tensors);
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);
  });

  it('converts F16, BF16 and F64 to float32 (IEEE 754 known values)', () => {
    // F16 0x3C00 = 1, 0xC000 = -2, 0x3555 ~ 0.33325; BF16 0x3F80 = 1, 0x4049 = 3.140625.
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3555]).buffer);
    const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0x4049]).buffer);
    const f64 = new Uint8Array(new Float64Array([Math.PI]).buffer);
    expect(Array.from(tensorToFloat32('h', { dtype: 'F16', shape: [3], bytes: f16 }).data)).toEqual([1, -2, Math.fround(0.333251953125)]);
    expect(Array.from(tensorToFloat32('b', { dtype: 'BF16', shape: [2], bytes: bf16 }).data)).toEqual([1, 3.140625]);
    expect(tensorToFloat32('d', { dtype: 'F64', shape: [1], bytes: f64 }).data[0]).toBe(Math.fround(Math.PI));
    expect(() => tensorToFloat32('ids', { dtype: 'I64', shape: [1], bytes: new Uint8Array(8) })).toThrow(/"ids".*I64/);
  });
});

describe('malformed safetensors', () => {
  const ok = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } };

  it('accepts the well-formed control file', () => {
    expect(parseSafetensors(craft(ok, 12)).tensors.size).toBe(2);
  });

  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['overlapping offsets', craft({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /"y".*overlaps|"x".*overlaps/],
    ['offsets past the buffer', craft({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /"x".*past the data buffer/],
    ['end before begin', craft({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8), /"x".*end before begin/],
    ['unsupported dtype', craft({ x: { dtype: 'F8_E4M3X', shape: [2], data_offsets: [0, 2] } }, 2), /"x".*unsupported dtype "F8_E4M3X"/],
    ['shape and dtype disagree with the offsets', craft({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /"x".*\[3\].*12 bytes.*span 8/],
    ['bytes owned by no tensor', craft({ x: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /belong to no tensor/],
    ['header length past the end', craft(ok, 12, 10_000n), /truncated/],
    ['header length over the limit', craft(ok, 12, BigInt(MAX_HEADER_BYTES) + 1n), /over the limit/],
    ['header length near 2^64', craft(ok, 12, 2n ** 64n - 1n), /over the limit/],
    ['header that is not JSON', (() => { const b = craft(ok, 12); b[8] = 0x7a; return b; })(), /not valid UTF-8 JSON/],
    ['header that is a JSON array', craft([1, 2], 0), /JSON object/],
    ['malformed entry', craft({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /"x".*malformed/],
    ['file shorter than 8 bytes', new Uint8Array(5), /at least 8/],
  ];
  for (const [name, bytes, message] of cases) {
    it(`rejects ${name} with a ModelError`, () => {
      expect(() => parseSafetensors(bytes)).toThrow(ModelError);
      expect(() => parseSafetensors(bytes)).toThrow(message);
    });
  }

  it('names the file on read errors', async () => {
    const file = path.join(dir, 'bad.safetensors');
    await writeFile(file, craft({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8));
    await expect(readSafetensors(file)).rejects.toThrow(/bad\.safetensors.*"x"/);
    await expect(readSafetensors(path.join(dir, 'missing.safetensors'))).rejects.toThrow(/cannot read checkpoint/);
  });
});

describe('safetensors fuzzing', () => {
  it('either parses or throws ModelError for 500 seeded corruptions of a valid file', () => {
    const tensors = new Map<string, WeightTensor>([
      ['w', { data: new Float32Array(12).fill(0.5), shape: [3, 4] }],
      ['b', { data: new Float32Array(4).fill(1), shape: [4] }],
    ]);
    const good = encodeSafetensors(tensors);
    let seed = 12345;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    let rejected = 0;
    for (let trial = 0; trial < 500; trial++) {
      const bytes = good.slice(0, trial % 5 === 0 ? rand(good.length) : good.length);
      for (let k = 0; k < 1 + rand(4); k++) if (bytes.length > 0) bytes[rand(Math.min(bytes.length, 120))] = rand(256);
      try {
        parseSafetensors(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(ModelError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(250);
  });
});
