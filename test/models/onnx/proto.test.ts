// Saving and loading ONNX models: single file and external data, and clear ModelErrors for
// truncated, garbage or lying files.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../common/errors.ts';
import { TINY } from '../../../models/arch/presets.ts';
import { buildDecoderModel } from '../../../models/onnx/build-decoder.ts';
import { initWeights } from '../../../models/arch/weights.ts';
import {
  decodeOnnxModel,
  encodeOnnxModel,
  getInitializer,
  loadOnnxModel,
  onnx,
  saveOnnxModel,
  tensorToFloat32,
} from '../../../models/onnx/proto.ts';
import { emptyCache, maxAbsDiff, runStep, sessionFor } from './ort-run.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-proto-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const weights = initWeights(TINY, 5);
const model = buildDecoderModel(TINY, weights);
const step = { inputIds: [[1, 2, 3]], positionIds: [[0, 1, 2]], attentionMask: [[1, 1, 1]] };

describe('saveOnnxModel / loadOnnxModel', () => {
  it('round-trips a single-file model with identical tensors', async () => {
    const file = path.join(dir, 'single.onnx');
    const saved = await saveOnnxModel(model, file);
    expect(saved.externalDataPath).toBeNull();
    expect((await stat(file)).size).toBe(saved.modelBytes);
    const loaded = loadOnnxModel(file);
    expect(loaded.graph!.node!.length).toBe(model.graph!.node!.length);
    expect(Array.from(tensorToFloat32(getInitializer(loaded, 'embed_tokens.weight')))).toEqual(Array.from(weights.get('embed_tokens.weight')!.data));
    // The streamed file holds the same message as protobufjs's one-buffer encoding.
    const reencoded = encodeOnnxModel(decodeOnnxModel(await readFile(file)));
    expect(Buffer.compare(Buffer.from(reencoded), Buffer.from(encodeOnnxModel(model)))).toBe(0);
  });

  it('writes external data that onnxruntime loads and that loadOnnxModel resolves', async () => {
    const file = path.join(dir, 'ext.onnx');
    const saved = await saveOnnxModel(model, file, { externalData: 'always', externalMinBytes: 64 });
    expect(saved.externalDataPath).toBe(path.join(dir, 'ext.onnx.data'));
    expect(saved.modelBytes).toBeLessThan(saved.externalDataBytes);
    const raw = decodeOnnxModel(await readFile(file));
    const ext = getInitializer(raw, 'embed_tokens.weight');
    expect(ext.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    expect(Number(ext.externalData!.find((e) => e.key === 'offset')!.value) % 4096).toBe(0);

    const loaded = loadOnnxModel(file);
    expect(Array.from(tensorToFloat32(getInitializer(loaded, 'embed_tokens.weight')))).toEqual(Array.from(weights.get('embed_tokens.weight')!.data));

    const a = await runStep(await sessionFor(file), { ...step, past: emptyCache(TINY) });
    const b = await runStep(await sessionFor(model), { ...step, past: emptyCache(TINY) });
    expect(maxAbsDiff(a.logits, b.logits)).toBe(0);
  });

  it('chooses external data by size in auto mode', async () => {
    const small = await saveOnnxModel(model, path.join(dir, 'auto-small.onnx'));
    expect(small.externalDataPath).toBeNull();
    const big = await saveOnnxModel(model, path.join(dir, 'auto-big.onnx'), { singleFileLimitBytes: 1000 });
    expect(big.externalDataPath).not.toBeNull();
    const never = await saveOnnxModel(model, path.join(dir, 'never.onnx'), { externalData: 'never', singleFileLimitBytes: 1000 });
    expect(never.externalDataPath).toBeNull();
  });

  it('rejects a truncated model with a ModelError', async () => {
    const bytes = encodeOnnxModel(model);
    for (const cut of [1, 100, Math.floor(bytes.length / 2), bytes.length - 3]) {
      expect(() => decodeOnnxModel(bytes.subarray(0, cut))).toThrow(ModelError);
    }
    const file = path.join(dir, 'truncated.onnx');
    await writeFile(file, bytes.subarray(0, bytes.length - 10));
    expect(() => loadOnnxModel(file)).toThrow(/truncated or not ONNX|does not look like an ONNX model/);
  });

  it('either decodes or throws ModelError for every prefix length and 300 seeded byte corruptions', () => {
    const bytes = encodeOnnxModel(model);
    let seed = 99;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    const attempt = (b: Uint8Array): void => {
      try {
        decodeOnnxModel(b);
      } catch (err) {
        expect(err).toBeInstanceOf(ModelError);
      }
    };
    for (let cut = 0; cut < bytes.length; cut += 97) attempt(bytes.subarray(0, cut));
    for (let trial = 0; trial < 300; trial++) {
      const b = bytes.slice();
      for (let k = 0; k < 4; k++) b[rand(b.length)] = rand(256);
      attempt(b);
    }
  });

  it('rejects garbage, empty input and missing files with ModelErrors', () => {
    expect(() => decodeOnnxModel(new Uint8Array(0))).toThrow(/empty/);
    expect(() => decodeOnnxModel(new TextEncoder().encode('{"not": "onnx"} and some more text'))).toThrow(ModelError);
    const random = new Uint8Array(4096);
    let s = 1;
    for (let i = 0; i < random.length; i++) random[i] = (s = (s * 16807) % 2147483647) & 0xff;
    expect(() => decodeOnnxModel(random)).toThrow(ModelError);
    expect(() => loadOnnxModel(path.join(dir, 'nope.onnx'))).toThrow(/cannot read ONNX model/);
  });

  it('rejects external data whose offsets lie about the data file', async () => {
    const file = path.join(dir, 'lying.onnx');
    await saveOnnxModel(model, file, { externalData: 'always', externalMinBytes: 64 });
    const raw = decodeOnnxModel(await readFile(file));
    const t = getInitializer(raw, 'embed_tokens.weight');
    t.externalData = t.externalData!.map((e) => (e.key === 'offset' ? { key: 'offset', value: '99999999' } : e));
    await writeFile(file, encodeOnnxModel(raw));
    expect(() => loadOnnxModel(file)).toThrow(/embed_tokens\.weight.*claims bytes/);
    t.externalData = [{ key: 'location', value: '../../etc/passwd' }];
    await writeFile(file, encodeOnnxModel(raw));
    expect(() => loadOnnxModel(file)).toThrow(/leaves the model directory/);
  });
});
