import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../models/onnx/graph-builder.ts';
import { DataType, encodeOnnxModel } from '../../../models/onnx/proto.ts';
import { mulberry32 } from '../../../models/random.ts';
import { describeWeightStorage, linearWeightBytes, parseWeightStorage, weightStorageOfBits, type WeightStorage } from '../../../models/arch/weight-storage.ts';

// The byte count claims to be onnxruntime's com.microsoft.MatMulNBits layout. Build that operator's
// inputs at exactly the sizes linearWeightBytes counts, run it in onnxruntime-node, and compare with a
// reference dequantisation (q - zero_point) x scale; a layout or size mismatch fails to load or to match.
async function runMatMulNBits(k: number, n: number, storage: WeightStorage, seed: number): Promise<{ bytes: number; got: Float32Array; want: Float64Array }> {
  const bits = storage.type === 'int4' ? 4 : 8;
  const bs = storage.blockSize;
  const kBlocks = Math.ceil(k / bs);
  const blob = (bs * bits) / 8;
  const rand = mulberry32(seed);
  const levels = 1 << bits;
  const codes = new Uint8Array(n * kBlocks * bs); // [n][k padded]
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(rand() * levels);
  const packed = new Uint8Array(n * kBlocks * blob);
  for (let i = 0; i < codes.length; i++) {
    if (bits === 8) packed[i] = codes[i]!;
    else packed[i >> 1] |= codes[i]! << ((i & 1) * 4); // low nibble first along K
  }
  const scales = Float32Array.from({ length: n * kBlocks }, () => 0.01 + rand() * 0.05);
  const zpPerColumn = Math.ceil((kBlocks * bits) / 8);
  const zp = new Uint8Array(storage.asymmetric ? n * zpPerColumn : 0);
  const zpCode = (col: number, b: number): number => {
    if (!storage.asymmetric) return levels / 2; // the operator's default zero point
    const byte = zp[col * zpPerColumn + ((b * bits) >> 3)]!;
    return bits === 8 ? byte : (byte >> ((b & 1) * 4)) & 0xf;
  };
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < kBlocks; b++) {
      const z = Math.floor(rand() * levels);
      if (!storage.asymmetric) continue;
      if (bits === 8) zp[col * zpPerColumn + b] = z;
      else zp[col * zpPerColumn + (b >> 1)] |= z << ((b & 1) * 4);
    }
  }
  const a = Float32Array.from({ length: k }, () => rand() * 2 - 1);
  const want = new Float64Array(n);
  for (let col = 0; col < n; col++) {
    for (let i = 0; i < k; i++) {
      const b = Math.floor(i / bs);
      want[col] += a[i]! * (codes[col * kBlocks * bs + i]! - zpCode(col, b)) * scales[col * kBlocks + b]!;
    }
  }

  const g = new GraphBuilder();
  const x = g.input('a', DataType.FLOAT, [1, k]);
  g.initializers.push({ name: 'b', dataType: DataType.UINT8, dims: [n, kBlocks, blob], rawData: packed });
  g.initFloat('scales', scales, [n * kBlocks]);
  const inputs = [x, 'b', 'scales'];
  if (storage.asymmetric) {
    g.initializers.push({ name: 'zero_points', dataType: DataType.UINT8, dims: [n * zpPerColumn], rawData: zp });
    inputs.push('zero_points');
  }
  g.op('MatMulNBits', inputs, { K: k, N: n, bits, block_size: bs }, 'y', 'com.microsoft');
  g.output('y', DataType.FLOAT, [1, n]);
  const model = g.toModel({ graphName: 'matmulnbits', opsets: { '': 17, 'com.microsoft': 1 } });
  const session = await ort.InferenceSession.create(encodeOnnxModel(model), { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const out = await session.run({ a: new ort.Tensor('float32', a, [1, k]) });
    const bytes = packed.byteLength + scales.byteLength + zp.byteLength;
    return { bytes, got: out.y!.data as Float32Array, want };
  } finally {
    await session.release();
  }
}

describe('weight storage', () => {
  it.each([
    ['int4', 32, false],
    ['int4', 32, true],
    ['int4', 128, true],
    ['int8', 64, false],
    ['int8', 32, true],
  ] as const)('%s block %i (asymmetric %s) is the MatMulNBits layout onnxruntime runs, byte for byte', async (type, blockSize, asymmetric) => {
    const storage = parseWeightStorage({ type, blockSize, asymmetric });
    // K = 100 is not a multiple of any block size: the padded last block is stored and counted.
    const { bytes, got, want } = await runMatMulNBits(100, 6, storage, blockSize + (asymmetric ? 1 : 0));
    expect(bytes).toBe(linearWeightBytes(100, 6, storage));
    for (let i = 0; i < 6; i++) expect(got[i]!).toBeCloseTo(want[i]!, 4);
  });

  it('names storages and maps bits to types', () => {
    expect(weightStorageOfBits(16).type).toBe('fp16');
    expect(weightStorageOfBits(8, { blockSize: 128 })).toEqual({ type: 'int8', blockSize: 128, asymmetric: false, quantizeEmbedding: false });
    expect(describeWeightStorage(weightStorageOfBits(4, { asymmetric: true }))).toBe('int4 (block 32, asymmetric)');
    expect(describeWeightStorage(weightStorageOfBits(32))).toBe('fp32');
    expect(() => parseWeightStorage({ type: 'int4', extra: 1 })).toThrow(/weight storage/);
  });
});
