// Llama-family layers in the fleet's layer-latency benchmark, end to end on real onnxruntime: a tiny llama
// grid (RMSNorm, SwiGLU, rotary, no biases, K/V heads 1, 2 and 4) is built, timed with the device's timer,
// turned into table entries, merged across two device tables beside gpt2 entries, and the measured model
// prices a llama spec from the llama entries alone. Also: the job document keeps gpt2 files as they were.
import { benchmarkDocumentFor } from '../../helpers/benchmark-document.ts';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { BenchmarkModelSchema, parseBenchmarkDocument } from '../../../contracts/benchmark-job.ts';
import { gridVersion, jobModelsOf } from '../../../fleet/benchmark-rollout.ts';
import { mergeLatencyTables } from '../../../fleet/latency-merge.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { timeGridFiles } from '../../../models/benchmark/decode-step-timer.ts';
import { buildGridFiles, gridFileSpec, planGrid, type GridFile, type GridOptions } from '../../../models/benchmark/grid.ts';
import { entriesFromTimings, type TimedEntries } from '../../../models/benchmark/layer-timings.ts';
import { deviceProfile } from '../../../models/search/device-profiles.ts';
import { predictLatencyMs } from '../../../models/search/latency-model.ts';
import { parseLatencyTable, type LayerLatencyTable } from '../../../models/search/latency-table.ts';
import { llamaLayerShape, MeasuredLatencyModel } from '../../../models/search/measured-latency.ts';
import { RooflineLatencyModel } from '../../../models/search/roofline-latency.ts';
import { tempDir } from '../../helpers/temp-dir.ts';

// Depths 1 and 6: five layers of difference stand well clear of timing noise on a loaded machine.
const grid = { widths: [32], ffnRatios: [2], heads: [4], headDim: 8, vocabSize: 96, maxKvLength: 16, storage: 'fp32', family: 'llama', kvHeads: [1, 2, 4], depths: [1, 6] } as const satisfies GridOptions;
const KV_LENGTHS = [8, 16];

describe('planGrid with layer families', () => {
  it('names llama files by family and K/V heads, keeps only K/V counts that divide the query heads, and leaves gpt2 names as they were', () => {
    const files = planGrid({ ...grid, heads: [2, 4], kvHeads: [4, 2, 1, 3] });
    expect(files.map((f) => f.name)).toEqual([
      'llama-layer-w32-f64-h2kv1x8-d1.onnx',
      'llama-layer-w32-f64-h2kv1x8-d6.onnx',
      'llama-layer-w32-f64-h2kv2x8-d1.onnx',
      'llama-layer-w32-f64-h2kv2x8-d6.onnx',
      'llama-layer-w32-f64-h4kv1x8-d1.onnx',
      'llama-layer-w32-f64-h4kv1x8-d6.onnx',
      'llama-layer-w32-f64-h4kv2x8-d1.onnx',
      'llama-layer-w32-f64-h4kv2x8-d6.onnx',
      'llama-layer-w32-f64-h4kv4x8-d1.onnx',
      'llama-layer-w32-f64-h4kv4x8-d6.onnx',
      'llama-fixed-w32-v96.onnx',
    ]);
    expect(new Set(files.map((f) => f.name)).size).toBe(files.length);
    expect(files.every((f) => f.family === 'llama' && f.heads % f.kvHeads! === 0)).toBe(true);
    // Without kvHeads a llama layer has as many K/V heads as query heads.
    expect(planGrid({ ...grid, kvHeads: undefined }).map((f) => [f.name, f.kvHeads])).toEqual([
      ['llama-layer-w32-f64-h4kv4x8-d1.onnx', 4],
      ['llama-layer-w32-f64-h4kv4x8-d6.onnx', 4],
      ['llama-fixed-w32-v96.onnx', 4],
    ]);
    const gpt2 = planGrid({ widths: [64], ffnRatios: [2], headDim: 64, vocabSize: 128, maxKvLength: 16, storage: 'fp32' });
    expect(gpt2.map((f) => f.name)).toEqual(['layer-w64-f128-h1x64-d1.onnx', 'layer-w64-f128-h1x64-d3.onnx', 'fixed-w64-v128.onnx']);
    expect(gpt2.some((f) => 'family' in f || 'kvHeads' in f)).toBe(false);
  });

  it('refuses K/V heads on a gpt2 grid, an odd head dimension for rotary, and K/V counts that divide no head count', () => {
    expect(() => planGrid({ ...grid, family: 'gpt2' })).toThrow(/K\/V head counts apply to llama grids/);
    expect(() => planGrid({ ...grid, headDim: 7, heads: [4] })).toThrow(/even headDim/);
    expect(() => planGrid({ ...grid, kvHeads: [3] })).toThrow(/no K\/V head count in 3 divides a head count \(4\) of width 32/);
  });

  it('a table refuses kvHeads on a gpt2 entry and K/V heads that do not divide the query heads', () => {
    const t = (layer: object) => ({ format: 'fleetlm/layer-latency@1', device: 'rpi4', seqLen: 8, layers: [{ width: 32, ffnWidth: 64, heads: 4, headDim: 8, ms: 1, ...layer }] });
    expect(() => parseLatencyTable(t({ kvHeads: 2 }))).toThrow(/kvHeads applies to llama entries only/);
    expect(() => parseLatencyTable(t({ family: 'llama', kvHeads: 3 }))).toThrow(/kvHeads 3 must divide heads 4/);
    expect(() => parseLatencyTable(t({ family: 'opt' }))).toThrow(/family/);
    expect(parseLatencyTable(t({ family: 'llama', kvHeads: 2 })).layers[0]).toMatchObject({ family: 'llama', kvHeads: 2 });
  });

  it('gives a llama file the Llama-family spec and a gpt2 file the GPT-2 one', () => {
    const [layer] = planGrid(grid);
    const spec = gridFileSpec(layer!, 16);
    expect(spec).toMatchObject({ positions: 'rotary', tiedHead: true, vocabSize: 64, contextLength: 16 });
    expect(spec.blocks).toEqual([expect.objectContaining({ width: 32, ffnHidden: 64, layers: 1, heads: 4, kvHeads: 1, headDim: 8, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false })]);
    const gpt2 = gridFileSpec(planGrid({ ...grid, family: 'gpt2', kvHeads: undefined })[0]!, 16);
    expect(gpt2).toMatchObject({ positions: 'learned' });
    expect(gpt2.blocks[0]).toMatchObject({ kvHeads: 4, norm: 'layernorm', mlp: 'gelu', qkvBias: true, outputBias: true });
  });
});

describe('a llama grid timed on onnxruntime', () => {
  let dir = '';
  let files: GridFile[] = [];
  let entries: TimedEntries;
  const unit = deviceProfile('rpi4').units.cpu!;

  beforeAll(async () => {
    dir = await tempDir('fleetlm-llama-grid-');
    files = planGrid(grid);
    await buildGridFiles(files, grid, dir);
    // The timer feeds past K/V at each file's K/V heads; onnxruntime refuses any other shape.
    const { timings, complete } = await timeGridFiles(dir, files, { threads: 1, samples: 5, warmup: 1, kvLengths: KV_LENGTHS, deadline: Date.now() + 120_000, waitIdle: async () => {} });
    expect(complete).toBe(true);
    expect(timings).toHaveLength(3 * 2 * KV_LENGTHS.length + 1);
    entries = entriesFromTimings(files, timings);
  }, 180_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A device's table: the timed entries times `scale`, beside gpt2 entries of the same widths at 1000 ms. */
  function deviceTable(thingName: string, scale: number): unknown {
    return {
      format: 'fleetlm/layer-latency@1',
      device: 'rpi4',
      seqLen: KV_LENGTHS[0],
      storage: 'fp32',
      complete: true,
      measuredOn: { thingName, board: 'b', cpu: 'c', cores: 4, onnxruntime: '1.30.0', agentVersion: '0', threads: 1, thermal: { startC: null, endC: null }, loadAvg1m: 0, runId: 'r1' },
      layers: [
        ...entries.layers.map((l) => ({ ...l, ms: l.ms * scale })),
        ...KV_LENGTHS.map((s) => ({ width: 32, ffnWidth: 64, heads: 4, headDim: 8, seqLen: s, ms: 1000 * scale, samples: 5 })),
      ],
      heads: [...entries.heads.map((h) => ({ ...h, ms: h.ms * scale })), { width: 32, vocabSize: 96, seqLen: KV_LENGTHS[0], ms: 1000 * scale, samples: 5 }],
    };
  }

  it('gives llama layer entries per K/V head count and a llama per-model cost', () => {
    expect(entries.dropped).toEqual([]);
    expect(entries.layers.map((l) => [l.family, l.kvHeads, l.seqLen]).sort()).toEqual(
      [1, 2, 4].flatMap((kv) => KV_LENGTHS.map((s) => ['llama', kv, s])).sort(),
    );
    expect(entries.layers.every((l) => l.width === 32 && l.ffnWidth === 64 && l.heads === 4 && l.headDim === 8 && l.ms > 0)).toBe(true);
    expect(entries.heads).toEqual([expect.objectContaining({ family: 'llama', width: 32, vocabSize: 96, seqLen: KV_LENGTHS[0] })]);
    expect('kvHeads' in entries.heads[0]!).toBe(false);
    // The device table (what the agent uploads) validates.
    expect(parseLatencyTable({ format: 'fleetlm/layer-latency@1', device: 'rpi4', seqLen: 8, layers: entries.layers, heads: entries.heads }).layers).toHaveLength(6);
  });

  it('merges two device tables keeping families and K/V head counts apart, and the measured model prices a llama spec from the llama entries', () => {
    const [merged] = mergeLatencyTables([deviceTable('dev-a', 1), deviceTable('dev-b', 1.5)]);
    const table: LayerLatencyTable = merged!.table;
    expect(merged!.devices).toEqual(['dev-a', 'dev-b']);
    // 3 llama K/V counts + 1 gpt2 layer, at 2 KV lengths each; a llama and a gpt2 head.
    expect(table.layers).toHaveLength(8);
    expect(table.heads).toHaveLength(2);
    const llamaLayer = (kv: number, s: number) => table.layers.find((l) => l.family === 'llama' && l.kvHeads === kv && l.seqLen === s)!;
    for (const kv of [1, 2, 4]) {
      const measured = entries.layers.find((l) => l.kvHeads === kv && l.seqLen === 8)!.ms;
      // The median of two devices is their mean.
      expect(llamaLayer(kv, 8).ms).toBeCloseTo(measured * 1.25, 9);
      expect(llamaLayer(kv, 8).spread).toMatchObject({ devices: 2, min: measured, max: measured * 1.5 });
    }
    const gpt2Layers = table.layers.filter((l) => l.family === undefined);
    expect(gpt2Layers.map((l) => [l.ms, 'kvHeads' in l])).toEqual([
      [1250, false],
      [1250, false],
    ]);
    const llamaHead = table.heads.find((h) => h.family === 'llama')!;
    expect(llamaHead.ms).toBeCloseTo(entries.heads[0]!.ms * 1.25, 9);

    const roofline = new RooflineLatencyModel(unit, { seqLen: 8 });
    const model = new MeasuredLatencyModel(table, roofline);
    const spec = parseArchSpec({
      vocabSize: 96,
      contextLength: 16,
      positions: 'rotary',
      tiedHead: true,
      blocks: [{ width: 32, ffnHidden: 64, layers: 3, heads: 4, kvHeads: 2, headDim: 8, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
    });
    // Every layer and the head are in the table: the prediction is their sum, and no 1000 ms gpt2 figure.
    expect(predictLatencyMs(spec, model)).toBeCloseTo(3 * llamaLayer(2, 8).ms + llamaHead.ms, 12);
    // Between the measured KV lengths the llama entries are interpolated, as gpt2 ones are.
    const at12 = new MeasuredLatencyModel(table, new RooflineLatencyModel(unit, { seqLen: 12 }));
    expect(at12.layerMs(32, 64, 4, 8, llamaLayerShape(1, 8))).toBeCloseTo((llamaLayer(1, 8).ms + llamaLayer(1, 16).ms) / 2, 12);
    // The same widths as a gpt2 spec use the gpt2 entries.
    const gpt2Spec = parseArchSpec({ vocabSize: 96, contextLength: 16, blocks: [{ width: 32, ffnHidden: 64, layers: 3, heads: 4, headDim: 8 }] });
    expect(predictLatencyMs(gpt2Spec, model)).toBe(3 * 1250 + 1250);

    // A llama layer the grid did not time costs the llama fit, never the gpt2 one.
    expect(model.llamaLayerFit).not.toBeNull();
    const fit = model.llamaLayerFit!;
    const wide = { ...llamaLayerShape(2, 8) };
    expect(model.layerMs(32, 128, 4, 8, wide)).toBeCloseTo(fit.fixedMs + fit.scale * roofline.layerMs(32, 128, 4, 8, wide), 12);
    expect(model.layerMs(32, 128, 4, 8, wide)).toBeLessThan(100);
    // A table with gpt2 entries only keeps the fallback it had for llama layers: the calibrated roofline.
    const gpt2Only = parseLatencyTable({ ...table, layers: table.layers.filter((l) => !l.family), heads: table.heads.filter((h) => !h.family) });
    const old = new MeasuredLatencyModel(gpt2Only, roofline);
    expect(old.llamaLayerFit).toBeNull();
    expect(old.layerMs(32, 64, 4, 8, llamaLayerShape(2, 8))).toBeCloseTo(old.calibration * roofline.layerMs(32, 64, 4, 8, llamaLayerShape(2, 8)), 12);
    // gpt2 layers cost the same with or without llama entries beside them (their fit is fitted to gpt2 entries).
    expect(model.layerFit).toEqual(old.layerFit);
    expect(model.layerMs(64, 256, 2, 32)).toBe(old.layerMs(64, 256, 2, 32));
    // A Qwen2-style layer (qkv bias) is neither family's: the calibrated roofline.
    const qwen = { ...llamaLayerShape(2, 8), qkvBias: true };
    expect(model.layerMs(32, 64, 4, 8, qwen)).toBeCloseTo(model.calibration * roofline.layerMs(32, 64, 4, 8, qwen), 12);
  });
});

describe('the benchmark@1 job document with layer families', () => {
  const docOf = (models: ReturnType<typeof jobModelsOf>) => benchmarkDocumentFor(models);

  it('writes gpt2 files with exactly the fields older agents accept, and llama files with family and kvHeads', () => {
    const gpt2Models = jobModelsOf(planGrid({ widths: [64], ffnRatios: [2], headDim: 64, vocabSize: 128, maxKvLength: 16, storage: 'fp32' }));
    const older = ['name', 'role', 'width', 'ffnWidth', 'heads', 'headDim', 'depth', 'vocabSize'];
    for (const m of gpt2Models) expect(Object.keys(m)).toEqual(older);
    // Round trip: the sent document parses back to the same gpt2 models, no family added.
    const sent = JSON.stringify(docOf(gpt2Models));
    const parsed = parseBenchmarkDocument(JSON.parse(sent));
    expect(JSON.stringify(parsed.models)).toBe(JSON.stringify(gpt2Models));

    const llamaModels = jobModelsOf(planGrid(grid));
    expect(llamaModels.map((m) => [m.family, m.kvHeads])).toEqual([
      ['llama', 1],
      ['llama', 1],
      ['llama', 2],
      ['llama', 2],
      ['llama', 4],
      ['llama', 4],
      ['llama', 1],
    ]);
    expect(parseBenchmarkDocument(JSON.parse(JSON.stringify(docOf(llamaModels)))).models).toEqual(llamaModels);
  });

  it('refuses kvHeads on a gpt2 file and K/V heads that do not divide the query heads', () => {
    const m = { name: 'a.onnx', role: 'layer', width: 32, ffnWidth: 64, heads: 4, headDim: 8, depth: 1, vocabSize: 64 };
    expect(BenchmarkModelSchema.safeParse({ ...m, kvHeads: 2 }).success).toBe(false);
    expect(BenchmarkModelSchema.safeParse({ ...m, family: 'llama', kvHeads: 3 }).success).toBe(false);
    expect(BenchmarkModelSchema.safeParse({ ...m, family: 'llama', kvHeads: 2 }).success).toBe(true);
    expect(BenchmarkModelSchema.safeParse({ ...m, family: 'opt' }).success).toBe(false);
  });

  it('publishes a gpt2 grid under the version it had before families, and llama grids under their own', () => {
    const o: GridOptions = { widths: [256, 128], ffnRatios: [4], headDim: 64, vocabSize: 50257, maxKvLength: 256, storage: 'int4' };
    // The hash as benchmark-rollout.ts computed it before families existed.
    const before = `int4-${createHash('sha256')
      .update(JSON.stringify({ ...o, widths: [...o.widths].sort(), ffnRatios: [...o.ffnRatios].sort(), heads: null }))
      .digest('hex')
      .slice(0, 16)}`;
    expect(gridVersion(o)).toBe(before);
    expect(gridVersion({ ...o, family: 'gpt2' })).toBe(before);
    const llama = gridVersion({ ...o, family: 'llama' });
    expect(llama).not.toBe(before);
    expect(gridVersion({ ...o, family: 'llama', kvHeads: [1] })).not.toBe(llama);
  });
});
