// The compressed graph against onnxruntime: its embeddings equal the factor reconstruction, and its
// logits equal the dense model's once that model's table is replaced by the same reconstruction.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { DataType, loadOnnxModel, saveOnnxModel, type ModelProto } from '../../../models/onnx/proto.ts';
import { loadLanguageModel } from '../../../models/runtime/index.ts';
import { createSession, float32Data, int64Tensor } from '../../../models/runtime/onnx-backend.ts';
import { extractEmbedding, findTokenEmbedding, rewriteEmbedding, type TiedHeadMode } from '../../../models/compression/onnx-rewrite.ts';
import { reconstructRows, type CompressedEmbedding } from '../../../models/compression/embedding.ts';
import { compressTtRow } from '../../../models/compression/tt-row.ts';
import { compressSvd } from '../../../models/compression/svd-embedding.ts';
import { compressTtMatrix, planTtMatrix } from '../../../models/compression/tt-matrix.ts';
import { ValidationError } from '../../../common/errors.ts';

const spec = parseArchSpec({
  vocabSize: 300,
  contextLength: 32,
  blocks: [{ width: 48, ffnRatio: 2, layers: 1, heads: 2, headDim: 16 }],
  tiedHead: true,
});
let dir: string;
let densePath: string;
let dense: ModelProto;
let table: Float32Array;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-compress-'));
  densePath = path.join(dir, 'dense.onnx');
  await buildModelFile(spec, { outPath: densePath, seed: 7 });
  dense = loadOnnxModel(densePath);
  table = extractEmbedding(dense).matrix;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The dense model with its table replaced by `values` (for the Gather, and for the head when `head`). */
function withTable(values: Float32Array, head: boolean): ModelProto {
  const site = findTokenEmbedding(dense);
  const g = dense.graph!;
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
  const recon = { name: 'recon.weight', dataType: DataType.FLOAT, dims: [spec.vocabSize, 48], rawData: bytes };
  const nodes = (g.node ?? []).map((n, i) => {
    const reads = i === site.nodeIndex || head;
    return reads ? { ...n, input: (n.input ?? []).map((x) => (x === site.name ? 'recon.weight' : x)) } : n;
  });
  return { ...dense, graph: { ...g, node: nodes, initializer: [...(g.initializer ?? []), recon] } };
}

async function logitsOf(model: ModelProto, name: string, tokens: number[]): Promise<Float32Array> {
  const p = path.join(dir, name);
  await saveOnnxModel(model, p);
  const lm = await loadLanguageModel(p, { intraOpNumThreads: 1, allowSpinning: false });
  try {
    return await lm.logits(tokens);
  } finally {
    await lm.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function embeddingsOf(model: ModelProto, name: string, ids: number[][]): Promise<Float32Array> {
  // Expose the Gather's output as a graph output and feed only what it needs.
  const out = findTokenEmbeddingOutput(model);
  const g = model.graph!;
  // Keep only the nodes the embedding output depends on, so the probe needs input_ids alone.
  const producer = new Map<string, number>();
  (g.node ?? []).forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const keep = new Set<number>();
  const stack = [out];
  while (stack.length > 0) {
    const i = producer.get(stack.pop()!);
    if (i === undefined || keep.has(i)) continue;
    keep.add(i);
    stack.push(...(g.node![i]!.input ?? []));
  }
  const probe: ModelProto = {
    ...model,
    graph: {
      ...g,
      node: (g.node ?? []).filter((_, i) => keep.has(i)),
      input: (g.input ?? []).filter((x) => x.name === 'input_ids'),
      output: [{ name: out, type: { tensorType: { elemType: DataType.FLOAT, shape: {} } } }],
    },
  };
  const p = path.join(dir, name);
  await saveOnnxModel(probe, p);
  const session = await createSession(p, { intraOpNumThreads: 1, allowSpinning: false });
  try {
    const flat = BigInt64Array.from(ids.flat().map(BigInt));
    const res = await session.run({ input_ids: int64Tensor(flat, [ids.length, ids[0]!.length]) }, { [out]: null });
    expect([...res[out]!.dims]).toEqual([ids.length, ids[0]!.length, 48]);
    return float32Data(res[out]!).slice();
  } finally {
    await session.dispose();
  }
}

function findTokenEmbeddingOutput(model: ModelProto): string {
  const site = findTokenEmbedding(dense);
  void model;
  return site.gather.output![0]!;
}

const tokens = [5, 17, 299, 0, 42, 42, 130, 7];
const methods: Array<[string, () => Promise<CompressedEmbedding>]> = [
  ['tt-row', () => compressTtRow(table, 300, 48, { dim: 48, paddedDim: 48, shape: [4, 3, 4], ranks: [1, 2, 2, 1] }, { workers: 1 })],
  ['tt-row padded', () => compressTtRow(table, 300, 48, { dim: 48, paddedDim: 50, shape: [2, 5, 5], ranks: [1, 2, 2, 1] }, { workers: 1 })],
  ['svd', async () => compressSvd(table, 300, 48, { rank: 10 })],
  ['tt-matrix', async () => compressTtMatrix(table, planTtMatrix(300, 48, { ratio: 2 }))],
  // 7^3 = 343 > 300: exercises the vocabulary padding that the graph slices off.
  ['tt-matrix padded', async () => compressTtMatrix(table, { vocab: 300, dim: 48, vocabShape: [7, 7, 7], dimShape: [4, 3, 4], ranks: [1, 8, 8, 1] })],
];

describe('rewriteEmbedding', () => {
  for (const [label, make] of methods) {
    it(`${label}: the graph's embeddings equal the reconstruction`, async () => {
      const e = await make();
      const { model } = rewriteEmbedding(dense, e, { tiedHead: 'reconstruct' });
      const ids = [
        [0, 1, 2, 299],
        [150, 7, 7, 298],
      ];
      const got = await embeddingsOf(model, `emb-${label}.onnx`, ids);
      const recon = reconstructRows(e);
      const want = new Float32Array(ids.flat().length * 48);
      ids.flat().forEach((t, i) => want.set(recon.subarray(t * 48, (t + 1) * 48), i * 48));
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
      // A lossy method really differs from the dense table (the check above could not pass by accident).
      const denseRows = new Float32Array(want.length);
      ids.flat().forEach((t, i) => denseRows.set(table.subarray(t * 48, (t + 1) * 48), i * 48));
      expect(maxAbsDiff(got, denseRows)).toBeGreaterThan(1e-3);
    });
  }

  const cases: Array<[number, TiedHeadMode]> = [
    [0, 'reconstruct'],
    [0, 'dense'],
    [1, 'reconstruct'],
    [2, 'reconstruct'],
    [3, 'reconstruct'],
    [4, 'reconstruct'],
  ];
  for (const [which, mode] of cases) {
    const label = methods[which]![0];
    it(`${label}, tied head ${mode}: logits equal the dense model with the reconstructed table`, async () => {
      const e = await methods[which]![1]();
      const res = rewriteEmbedding(dense, e, { tiedHead: mode });
      expect(res.tiedHead).toBe(true);
      const names = (res.model.graph!.initializer ?? []).map((t) => t.name);
      expect(names.includes('embed_tokens.weight')).toBe(mode === 'dense');
      const got = await logitsOf(res.model, `tt-${mode}.onnx`, tokens);
      // (file name reused across methods; sizes are compared right after writing)
      const want = await logitsOf(withTable(reconstructRows(e), mode === 'reconstruct'), `ref-${mode}.onnx`, tokens);
      const orig = await logitsOf(dense, 'orig.onnx', tokens);
      expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
      expect(maxAbsDiff(got, orig)).toBeGreaterThan(1e-3);
      const size = statSync(path.join(dir, `tt-${mode}.onnx`)).size;
      const denseSize = statSync(path.join(dir, 'orig.onnx')).size;
      if (mode === 'reconstruct') expect(size).toBeLessThan(denseSize);
      else expect(size).toBeGreaterThan(denseSize);
    });
  }

  it('finds an Optimum-style table (transformer.wte.weight, ids through a Cast) and rewrites it', async () => {
    const g = dense.graph!;
    const site = findTokenEmbedding(dense);
    const rename = (x: string): string => (x === site.name ? 'transformer.wte.weight' : x);
    const nodes = (g.node ?? []).map((n, i) => ({
      ...n,
      input: (n.input ?? []).map((x, j) => (i === site.nodeIndex && j === 1 ? 'ids_cast' : rename(x))),
    }));
    const cast = { name: 'cast_ids', opType: 'Cast', input: ['input_ids'], output: ['ids_cast'], attribute: [{ name: 'to', type: 2, i: DataType.INT64 }] };
    const optimum: ModelProto = {
      ...dense,
      graph: {
        ...g,
        node: [cast, ...nodes],
        initializer: (g.initializer ?? []).map((t) => (t.name === site.name ? { ...t, name: 'transformer.wte.weight' } : t)),
      },
    };
    const found = findTokenEmbedding(optimum);
    expect(found.name).toBe('transformer.wte.weight');
    expect(found.otherConsumers.length).toBe(1);
    const e = await methods[0]![1]();
    const res = rewriteEmbedding(optimum, e, { tiedHead: 'reconstruct' });
    expect((res.model.graph!.initializer ?? []).some((t) => t.name === 'transformer.wte.weight')).toBe(false);
    const got = await logitsOf(res.model, 'optimum-tt.onnx', tokens);
    const want = await logitsOf(withTable(reconstructRows(e), true), 'optimum-ref.onnx', tokens);
    expect(maxAbsDiff(got, want)).toBeLessThan(2e-4);
  });

  it('rejects a model without a Gather-on-initializer embedding, naming what it found', () => {
    const site = findTokenEmbedding(dense);
    const g = dense.graph!;
    const noInit: ModelProto = {
      ...dense,
      graph: { ...g, initializer: (g.initializer ?? []).filter((t) => t.name !== site.name) },
    };
    expect(() => findTokenEmbedding(noInit)).toThrow(ValidationError);
    expect(() => findTokenEmbedding(noInit)).toThrow(/no token embedding found.*input_ids.*embed_tokens\.weight \(not an initializer\)/);
  });

  it('rejects factors whose size does not match the table', async () => {
    const e = compressSvd(table.subarray(0, 100 * 48), 100, 48, { rank: 4 });
    expect(() => rewriteEmbedding(dense, e)).toThrow(/100 x 48 but the model's table embed_tokens.weight is 300 x 48/);
  });
});
