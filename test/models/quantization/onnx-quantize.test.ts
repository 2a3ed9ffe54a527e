// The MatMulNBits rewrite against onnxruntime-node: outputs equal A @ dequantize(W) computed here in
// float64 (int4 and int8, sym and asym, several block sizes, a padded K), shared weights, tied-head
// Gemm, Transpose-fed heads, whole decoders against their dequantized-float twin, and refusals.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { ValidationError } from '../../../common/errors.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { DataType, encodeOnnxModel, loadOnnxModel, onnx, saveOnnxModel, tensorToFloat32, type ModelProto, type NodeProto, type TensorProto } from '../../../models/onnx/proto.ts';
import { loadLanguageModel } from '../../../models/runtime/index.ts';
import { mulberry32 } from '../../../models/random.ts';
import { dequantizeBlockwise, quantizeBlockwise, viewKN, viewNK, type QuantBits } from '../../../models/quantization/block-quantizer.ts';
import { quantizeModel } from '../../../models/quantization/onnx-quantize.ts';
import { compressSvd } from '../../../models/compression/svd-embedding.ts';
import { extractEmbedding, rewriteEmbedding } from '../../../models/compression/onnx-rewrite.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-quantize-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomArray(n: number, seed: number, spread = 0.2): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, (_, i) => (rand() - 0.5) * spread * (i % 13 === 0 ? 4 : 1));
}
const f32 = (name: string, data: Float32Array, dims: number[]): TensorProto => ({ name, dataType: DataType.FLOAT, dims, rawData: new Uint8Array(data.buffer.slice(0)) });
const i64 = (name: string, data: number[], dims: number[]): TensorProto => ({ name, dataType: DataType.INT64, dims, rawData: new Uint8Array(BigInt64Array.from(data.map(BigInt)).buffer) });
const valueInfo = (name: string, elemType: number, dims: Array<number | string>) => ({
  name,
  type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
});
const ints = (name: string, i: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });

function graphModel(nodes: NodeProto[], inits: TensorProto[], inputs: ReturnType<typeof valueInfo>[], outputs: ReturnType<typeof valueInfo>[]): ModelProto {
  return { irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph: { name: 'g', node: nodes, initializer: inits, input: inputs, output: outputs } };
}

async function run(model: ModelProto, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(encodeOnnxModel(model), { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await s.release();
  }
}

/** rows x K times a [K, N] row-major matrix, in float64. */
function matmulRef(a: Float32Array, rows: number, w: Float32Array, K: number, N: number): Float64Array {
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) y[r * N + n]! += a[r * K + k]! * w[k * N + n]!;
  return y;
}

function expectClose(actual: Float32Array, expected: ArrayLike<number>, relTol: number): void {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst).toBeLessThanOrEqual(relTol * scale);
}

describe('quantizeModel: one MatMul through onnxruntime', () => {
  const cases: Array<[QuantBits, number, boolean, number, number]> = [
    [4, 32, false, 64, 24],
    [4, 32, true, 64, 24],
    [4, 16, false, 48, 10],
    [4, 128, true, 256, 8],
    [4, 32, false, 72, 5], // K = 72: the last block of each column is padded
    [8, 32, false, 64, 24],
    [8, 32, true, 64, 24],
    [8, 64, false, 200, 6],
  ];
  for (const [bits, block, symmetric, K, N] of cases) {
    it(`int${bits} block ${block} ${symmetric ? 'sym' : 'asym'} K=${K} N=${N}: MatMulNBits output = A @ dequantize(W)`, async () => {
      const W = randomArray(K * N, K + N + bits);
      const model = graphModel(
        [{ name: 'mm', opType: 'MatMul', input: ['x', 'w.weight'], output: ['y'] }],
        [f32('w.weight', W, [K, N])],
        [valueInfo('x', 1, ['batch', 'seq', K])],
        [valueInfo('y', 1, ['batch', 'seq', N])],
      );
      const r = quantizeModel(model, { bits, blockSize: block, symmetric, accuracyLevel: 0 });
      expect(r.weights).toHaveLength(1);
      expect(r.weights[0]).toMatchObject({ name: 'w.weight', k: K, n: N, layout: 'kn', floatKept: false, nodes: ['mm'] });
      const g = r.model.graph!;
      expect(g.node!.map((n) => n.opType)).toEqual(['MatMulNBits']);
      expect(g.initializer!.some((t) => t.name === 'w.weight')).toBe(false);
      expect(r.model.opsetImport!.some((o) => o.domain === 'com.microsoft')).toBe(true);
      const A = randomArray(2 * 3 * K, 11, 2);
      const y = (await run(r.model, { x: new ort.Tensor('float32', A, [2, 3, K]) })).y!;
      const deq = dequantizeBlockwise(quantizeBlockwise(viewKN(W, K, N), { bits, blockSize: block, symmetric }));
      // Float32 accumulation in a different order than the float64 reference: 1e-5 of the output scale.
      expectClose(y, matmulRef(A, 6, deq, K, N), 1e-5);
      // And the quantization itself is close to the float product (int8 much closer than int4).
      expectClose(y, matmulRef(A, 6, W, K, N), bits === 8 ? 0.02 : 0.25);
    });
  }

  it('quantizes a weight shared by two MatMuls once, and both read it', async () => {
    const K = 32;
    const N = 8;
    const W = randomArray(K * N, 5);
    const model = graphModel(
      [
        { name: 'a', opType: 'MatMul', input: ['x', 'shared'], output: ['y1'] },
        { name: 'b', opType: 'MatMul', input: ['y1', 'sq'], output: ['y2'] },
        { name: 'c', opType: 'MatMul', input: ['x', 'shared'], output: ['y3'] },
      ],
      [f32('shared', W, [K, N]), f32('sq', randomArray(N * N, 6), [N, N])],
      [valueInfo('x', 1, [1, K])],
      [valueInfo('y2', 1, [1, N]), valueInfo('y3', 1, [1, N])],
    );
    const r = quantizeModel(model, { bits: 4, blockSize: 32, symmetric: false, accuracyLevel: 0 });
    // N=8 of sq is K=8 < block: still quantized (padded), so two weights in all.
    const shared = r.weights.find((w) => w.name === 'shared')!;
    expect(shared.nodes).toEqual(['a', 'c']);
    expect(r.model.graph!.initializer!.filter((t) => t.name!.startsWith('shared.q4')).length).toBe(3); // data, scales, zero points
    const A = randomArray(K, 8, 2);
    const out = await run(r.model, { x: new ort.Tensor('float32', A, [1, K]) });
    expectClose(out.y3!, matmulRef(A, 1, dequantizeBlockwise(quantizeBlockwise(viewKN(W, K, N), { bits: 4, blockSize: 32, symmetric: false })), K, N), 1e-5);
  });
});

describe('quantizeModel: accuracy level 4 (int8 activations, the default)', () => {
  for (const bits of [4, 8] as const) {
    it(`int${bits}: sets accuracy_level 4 and stays within 2% of A @ dequantize(W)`, async () => {
      const K = 128;
      const N = 32;
      const W = randomArray(K * N, 40 + bits);
      const model = graphModel(
        [{ name: 'mm', opType: 'MatMul', input: ['x', 'w'], output: ['y'] }],
        [f32('w', W, [K, N])],
        [valueInfo('x', 1, [4, K])],
        [valueInfo('y', 1, [4, N])],
      );
      const r = quantizeModel(model, { bits, blockSize: 32, symmetric: false });
      const level = r.model.graph!.node![0]!.attribute!.find((a) => a.name === 'accuracy_level');
      expect(Number(level?.i)).toBe(4);
      const A = randomArray(4 * K, 41, 2);
      const y = (await run(r.model, { x: new ort.Tensor('float32', A, [4, K]) })).y!;
      const deq = dequantizeBlockwise(quantizeBlockwise(viewKN(W, K, N), { bits, blockSize: 32, symmetric: false }));
      // A is rounded to int8 per block: about 1/127 of its block's range per element.
      expectClose(y, matmulRef(A, 4, deq, K, N), 0.02);
    });
  }
  it('refuses an accuracy level MatMulNBits does not define', () => {
    expect(() => quantizeModel(graphModel([], [], [], []), { bits: 4, blockSize: 32, symmetric: false, accuracyLevel: 7 as 4 })).toThrow(/accuracy level must be one of 0, 1, 2, 3, 4; got 7/);
  });
});

describe('quantizeModel: tied heads', () => {
  const V = 40;
  const E = 64;
  const table = randomArray(V * E, 21);
  const ids = [3, 17, 39];
  const headRef = (bits: QuantBits, x: Float32Array, rows: number): Float64Array => {
    // Reference head: dequantized [N=V, K=E] rows, laid out as [K, N] for matmulRef.
    const deq = dequantizeBlockwise(quantizeBlockwise(viewNK(table, V, E), { bits, blockSize: 32, symmetric: false }));
    return matmulRef(x, rows, deq, E, V);
  };

  it('Gemm(transB=1) with a bias reading the embedding table: head quantized, the Gather keeps the float table', async () => {
    const bias = randomArray(V, 22);
    const model = graphModel(
      [
        { name: 'embed', opType: 'Gather', input: ['embed_tokens.weight', 'ids'], output: ['h'], attribute: [ints('axis', 0)] },
        { name: 'head', opType: 'Gemm', input: ['h', 'embed_tokens.weight', 'head.bias'], output: ['logits'], attribute: [ints('transB', 1)] },
      ],
      [f32('embed_tokens.weight', table, [V, E]), f32('head.bias', bias, [V])],
      [valueInfo('ids', 7, [3])],
      [valueInfo('h', 1, [3, E]), valueInfo('logits', 1, [3, V])],
    );
    for (const bits of [4, 8] as const) {
      const r = quantizeModel(model, { bits, blockSize: 32, symmetric: false, accuracyLevel: 0 });
      expect(r.weights).toEqual([expect.objectContaining({ name: 'embed_tokens.weight', k: E, n: V, layout: 'nk', floatKept: true })]);
      expect(r.model.graph!.node!.map((n) => n.opType)).toEqual(['Gather', 'MatMulNBits', 'Add']);
      const out = await run(r.model, { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [3]) });
      const h = new Float32Array(3 * E);
      ids.forEach((id, i) => h.set(table.subarray(id * E, (id + 1) * E), i * E));
      expect(out.h).toEqual(h);
      const ref = headRef(bits, h, 3).map((v, i) => v + bias[i % V]!);
      expectClose(out.logits!, ref, 1e-5);
    }
  });

  it('with embedding: the Gather becomes GatherBlockQuantized sharing scales with the head, and the float table goes', async () => {
    const model = graphModel(
      [
        { name: 'embed', opType: 'Gather', input: ['embed_tokens.weight', 'ids'], output: ['h'], attribute: [ints('axis', 0)] },
        { name: 'head', opType: 'Gemm', input: ['h', 'embed_tokens.weight'], output: ['logits'], attribute: [ints('transB', 1)] },
      ],
      [f32('embed_tokens.weight', table, [V, E])],
      [valueInfo('ids', 7, [3])],
      [valueInfo('h', 1, [3, E]), valueInfo('logits', 1, [3, V])],
    );
    for (const [bits, symmetric] of [[4, false], [4, true], [8, false]] as Array<[QuantBits, boolean]>) {
      const r = quantizeModel(model, { bits, blockSize: 32, symmetric, accuracyLevel: 0, embedding: true });
      const g = r.model.graph!;
      expect(g.node!.map((n) => n.opType)).toEqual(['GatherBlockQuantized', 'MatMulNBits']);
      expect(g.node![0]!.input![2]).toBe(g.node![1]!.input![2]); // one scales initializer for both
      expect(g.initializer!.some((t) => t.name === 'embed_tokens.weight')).toBe(false);
      expect(r.weights).toEqual([expect.objectContaining({ name: 'embed_tokens.weight', nodes: ['head', 'embed'], floatKept: false })]);
      const out = await run(r.model, { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [3]) });
      const deq = dequantizeBlockwise(quantizeBlockwise(viewNK(table, V, E), { bits, blockSize: 32, symmetric })); // [K=E, N=V]
      const rows = new Float32Array(3 * E);
      ids.forEach((id, i) => {
        for (let k = 0; k < E; k++) rows[i * E + k] = deq[k * V + id]!;
      });
      expect(out.h).toEqual(rows);
      expectClose(out.logits!, matmulRef(rows, 3, deq, E, V), 1e-5);
    }
  });

  it('with embedding: a table whose width is not a multiple of the block stays float, saying why', () => {
    const model = graphModel(
      [{ name: 'embed', opType: 'Gather', input: ['t', 'ids'], output: ['h'], attribute: [ints('axis', 0)] }],
      [f32('t', randomArray(10 * 40, 3), [10, 40])],
      [valueInfo('ids', 7, [2])],
      [valueInfo('h', 1, [2, 40])],
    );
    const r = quantizeModel(model, { bits: 4, blockSize: 32, symmetric: false, embedding: true });
    expect(r.skipped).toEqual([{ node: 'embed', opType: 'Gather', reason: 'table width 40 is not a multiple of the block size 32 (GatherBlockQuantized)' }]);
  });

  it('MatMul(x, Transpose(table)): the Transpose is looked through and removed', async () => {
    const model = graphModel(
      [
        { name: 't', opType: 'Transpose', input: ['wte'], output: ['wte_t'], attribute: [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0] }] },
        { name: 'head', opType: 'MatMul', input: ['x', 'wte_t'], output: ['logits'] },
      ],
      [f32('wte', table, [V, E])],
      [valueInfo('x', 1, [2, E])],
      [valueInfo('logits', 1, [2, V])],
    );
    const r = quantizeModel(model, { bits: 4, blockSize: 32, symmetric: false, accuracyLevel: 0 });
    expect(r.model.graph!.node!.map((n) => n.opType)).toEqual(['MatMulNBits']);
    expect(r.weights[0]).toMatchObject({ name: 'wte', layout: 'nk', floatKept: false });
    const x = randomArray(2 * E, 23, 2);
    expectClose((await run(r.model, { x: new ort.Tensor('float32', x, [2, E]) })).logits!, headRef(4, x, 2), 1e-5);
  });

  it('leaves Gemm with transA or alpha != 1 in float, saying why', () => {
    const model = graphModel(
      [{ name: 'g', opType: 'Gemm', input: ['x', 'w'], output: ['y'], attribute: [{ name: 'alpha', type: onnx.AttributeProto.AttributeType.FLOAT, f: 0.5 }] }],
      [f32('w', randomArray(32 * 4, 2), [32, 4])],
      [valueInfo('x', 1, [1, 32])],
      [valueInfo('y', 1, [1, 4])],
    );
    const r = quantizeModel(model, { bits: 8, blockSize: 32, symmetric: true });
    expect(r.weights).toEqual([]);
    expect(r.skipped).toEqual([{ node: 'g', opType: 'Gemm', reason: 'Gemm with alpha or beta other than 1' }]);
  });
});

describe('quantizeModel: whole decoders', () => {
  const spec = parseArchSpec({ vocabSize: 256, contextLength: 32, blocks: [{ width: 64, ffnRatio: 2, layers: 2, heads: 2, headDim: 32 }], tiedHead: true });
  const tokens = [1, 50, 7, 200, 3, 99, 12];

  async function logits(model: ModelProto | string, name: string): Promise<Float32Array> {
    let p = model as string;
    if (typeof model !== 'string') {
      p = path.join(dir, name);
      await saveOnnxModel(model, p);
    }
    const lm = await loadLanguageModel(p, { intraOpNumThreads: 1, allowSpinning: false });
    try {
      return await lm.logits(tokens);
    } finally {
      await lm.dispose();
    }
  }

  /** The float model with every weight the rewrite quantized replaced by its dequantized values (the head gets its own copy). */
  function dequantizedTwin(model: ModelProto, bits: QuantBits, block: number, symmetric: boolean): ModelProto {
    const g = model.graph!;
    const inits: TensorProto[] = [];
    const nodes = (g.node ?? []).map((n) => ({ ...n, input: [...(n.input ?? [])] }));
    for (const t of g.initializer ?? []) {
      const readers = nodes.filter((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && n.input[1] === t.name);
      if (readers.length === 0 || t.dims!.length !== 2) {
        inits.push(t);
        continue;
      }
      const [d0, d1] = t.dims!.map(Number) as [number, number];
      const data = tensorToFloat32(t);
      const nk = readers[0]!.opType === 'Gemm';
      const deq = dequantizeBlockwise(quantizeBlockwise(nk ? viewNK(data, d0, d1) : viewKN(data, d0, d1), { bits, blockSize: block, symmetric }));
      if (nk) {
        // Head: [K, N] dequantized back to [N, K] under a new name; the Gather keeps the float table.
        const back = new Float32Array(d0 * d1);
        for (let k = 0; k < d1; k++) for (let n = 0; n < d0; n++) back[n * d1 + k] = deq[k * d0 + n]!;
        inits.push(t, f32(`${t.name}.deq`, back, [d0, d1]));
        for (const r of readers) r.input[1] = `${t.name}.deq`;
      } else {
        inits.push(f32(t.name!, deq, [d0, d1]));
      }
    }
    return { ...model, graph: { ...g, node: nodes, initializer: inits } };
  }

  for (const fused of [false, true]) {
    for (const [bits, block, symmetric] of [
      [4, 32, false],
      [8, 32, false],
      [4, 64, true],
    ] as Array<[QuantBits, number, boolean]>) {
      it(`${fused ? 'fused' : 'plain'} decoder, int${bits} block ${block} ${symmetric ? 'sym' : 'asym'}: logits equal the dequantized-float twin's`, async () => {
        const file = path.join(dir, `dec-${fused}.onnx`);
        await buildModelFile(spec, { outPath: file, seed: 4, fused });
        const dense = loadOnnxModel(file);
        const r = quantizeModel(dense, { bits, blockSize: block, symmetric, accuracyLevel: 0 });
        // q, k, v (or packed qkv), out, up, down per layer, plus the head.
        expect(r.weights.length).toBe(fused ? 2 * 4 + 1 : 2 * 6 + 1);
        expect(r.weights.find((w) => w.name === 'embed_tokens.weight')).toMatchObject({ layout: 'nk', floatKept: true });
        const q = await logits(r.model, `q-${fused}-${bits}-${block}.onnx`);
        const twin = await logits(dequantizedTwin(dense, bits, block, symmetric), `twin-${fused}-${bits}-${block}.onnx`);
        expectClose(q, twin, 2e-4);
        const ref = await logits(file, '');
        expectClose(q, ref, bits === 8 ? 0.02 : 0.3);
      });
    }
  }

  for (const fused of [false, true]) {
    it(`Llama-family ${fused ? 'fused' : 'plain'} decoder (RMSNorm, rotary, GQA, SwiGLU, Qwen-style qkv bias, untied head): int4 logits equal the dequantized twin's`, async () => {
      const llama = parseArchSpec({
        vocabSize: 256,
        contextLength: 32,
        positions: 'rotary',
        blocks: [{ width: 64, ffnHidden: 96, layers: 2, heads: 4, kvHeads: 2, headDim: 16, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: true, outputBias: false }],
        tiedHead: false,
      });
      const file = path.join(dir, `llama-${fused}.onnx`);
      await buildModelFile(llama, { outPath: file, seed: 10, fused });
      const dense = loadOnnxModel(file);
      const r = quantizeModel(dense, { bits: 4, blockSize: 32, symmetric: false, accuracyLevel: 0 });
      // q, k, v (or packed), o, gate, up, down per layer (fused graphs may pack some), plus the untied head.
      expect(r.weights.length).toBe(fused ? 2 * 4 + 1 : 2 * 7 + 1);
      expect(r.weights.find((w) => w.name === 'lm_head.weight')).toMatchObject({ layout: 'kn', floatKept: false });
      const q = await logits(r.model, `llama-q-${fused}.onnx`);
      expectClose(q, await logits(dequantizedTwin(dense, 4, 32, false), `llama-twin-${fused}.onnx`), 2e-4);
    });
  }

  it('plain decoder, int4 at the default accuracy level 4: logits stay close to the dequantized-float twin', async () => {
    const file = path.join(dir, 'dec-acc4.onnx');
    await buildModelFile(spec, { outPath: file, seed: 8 });
    const dense = loadOnnxModel(file);
    const q = await logits(quantizeModel(dense, { bits: 4, blockSize: 32, symmetric: false }).model, 'acc4.onnx');
    expectClose(q, await logits(dequantizedTwin(dense, 4, 32, false), 'acc4-twin.onnx'), 0.05);
  });

  it('plain decoder with --embedding: token and position tables become GatherBlockQuantized and the model still agrees', async () => {
    const file = path.join(dir, 'dec-emb.onnx');
    await buildModelFile(spec, { outPath: file, seed: 9 });
    const dense = loadOnnxModel(file);
    const r = quantizeModel(dense, { bits: 8, blockSize: 32, symmetric: false, embedding: true });
    const ops = r.model.graph!.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'GatherBlockQuantized')).toHaveLength(2);
    expect(r.weights.every((w) => !w.floatKept)).toBe(true);
    expectClose(await logits(r.model, 'emb.onnx'), await logits(file, ''), 0.03);
  });

  it('reads a model with external data and the result runs', async () => {
    const file = path.join(dir, 'ext', 'model.onnx');
    await buildModelFile(spec, { outPath: file, seed: 5, externalData: 'always' });
    const loaded = loadOnnxModel(file);
    const r = quantizeModel(loaded, { bits: 8, blockSize: 32, symmetric: false });
    const out = path.join(dir, 'ext-q', 'model.onnx');
    const saved = await saveOnnxModel(r.model, out, { externalData: 'always' });
    expect(saved.externalDataPath).not.toBeNull();
    expectClose(await logits(out, ''), await logits(file, ''), 0.02);
  });

  it('after the embedding compression: the compressed factors and the rebuilt head stay float, the rest is quantized', async () => {
    const file = path.join(dir, 'dec-c.onnx');
    await buildModelFile(spec, { outPath: file, seed: 6 });
    const dense = loadOnnxModel(file);
    const { matrix } = extractEmbedding(dense);
    const compressed = rewriteEmbedding(dense, compressSvd(matrix, spec.vocabSize, 64, { rank: 32 }), { tiedHead: 'reconstruct' }).model;
    const r = quantizeModel(compressed, { bits: 4, blockSize: 32, symmetric: false });
    expect(r.weights.length).toBe(2 * 6);
    expect(r.skipped.map((s) => s.reason)).toEqual(
      expect.arrayContaining([expect.stringMatching(/part of the compressed embedding/), expect.stringMatching(/computed from constants/)]),
    );
    const twin = await logits(compressed, 'c-float.onnx');
    expectClose(await logits(r.model, 'c-q.onnx'), twin, 0.3);
  });
});

describe('quantizeModel refusals', () => {
  const model = graphModel([], [], [], []);
  it.each([
    [{ bits: 2, blockSize: 32 }, /bits must be 4 or 8; got 2/],
    [{ bits: 4, blockSize: 24 }, /power of two >= 16.*got 24/],
    [{ bits: 8, blockSize: 8 }, /power of two >= 16.*got 8/],
  ])('%j', (c, message) => {
    expect(() => quantizeModel(model, { symmetric: false, ...(c as { bits: QuantBits; blockSize: number }) })).toThrow(ValidationError);
    expect(() => quantizeModel(model, { symmetric: false, ...(c as { bits: QuantBits; blockSize: number }) })).toThrow(message);
  });
  it('a model without a graph', () => {
    expect(() => quantizeModel({ irVersion: 8 }, { bits: 4, blockSize: 32, symmetric: false })).toThrow(/no graph/);
  });
  it('ignores activation x activation products and int weights', () => {
    const m = graphModel(
      [
        { name: 'scores', opType: 'MatMul', input: ['x', 'y'], output: ['s'] },
        { name: 'ints', opType: 'MatMul', input: ['x', 'wi'], output: ['t'] },
      ],
      [i64('wi', [1, 2, 3, 4], [2, 2])],
      [valueInfo('x', 1, [2, 2]), valueInfo('y', 1, [2, 2])],
      [valueInfo('s', 1, [2, 2])],
    );
    const r = quantizeModel(m, { bits: 4, blockSize: 32, symmetric: false });
    expect(r.weights).toEqual([]);
    expect(r.skipped).toEqual([{ node: 'ints', opType: 'MatMul', reason: 'B (wi) has data type 7; only float32 weights are quantized' }]);
  });
});
