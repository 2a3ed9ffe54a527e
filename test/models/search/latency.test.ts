import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeUnitOf, DEVICE_PROFILES, deviceProfile, parseDeviceProfile } from '../../../models/search/device-profiles.ts';
import { predictLatencyMs } from '../../../models/search/latency-model.ts';
import { RooflineLatencyModel } from '../../../models/search/roofline-latency.ts';
import { loadLatencyTable, parseLatencyTable } from '../../../models/search/latency-table.ts';
import { MeasuredLatencyModel } from '../../../models/search/measured-latency.ts';
import { searchArchitecture, type SearchOptions } from '../../../models/search/search.ts';
import { GPT2_SMALL, SMOLLM2_135M, TINYLLAMA_11B } from '../../../models/arch/presets.ts';
import { countParameters, kvCacheBytes, weightBytes } from '../../../models/arch/accounting.ts';
import { weightStorageOfBits } from '../../../models/arch/weight-storage.ts';

/** These tests are about MeRino's entropy search: pin the objective (the default is the study's pick, objective.test.ts). */
const searchEntropy = (o: SearchOptions = {}): ReturnType<typeof searchArchitecture> => searchArchitecture({ objective: 'entropy', ...o });

describe('device profiles', () => {
  it('ship the four device classes, each valid and with sources', () => {
    expect(Object.keys(DEVICE_PROFILES).sort()).toEqual(['jetson-nano', 'jetson-orin-nano', 'rpi4', 'rpi5']);
    for (const p of Object.values(DEVICE_PROFILES)) {
      expect(parseDeviceProfile(p)).toEqual(p);
      expect(p.sources.length).toBeGreaterThan(0);
    }
    // Published figures: Jetson Nano 25.6 GB/s, Orin Nano 68 GB/s, Pi 5 LPDDR4X-4267 x 32 bit.
    expect(deviceProfile('jetson-nano').units.gpu!.memoryBandwidth).toBe(25.6e9);
    expect(deviceProfile('jetson-orin-nano').units.gpu!.memoryBandwidth).toBe(68e9);
    expect(deviceProfile('rpi5').units.cpu.memoryBandwidth).toBeCloseTo((4267e6 * 32) / 8, -8);
  });

  it('refuses a unit the device lacks', () => {
    expect(() => computeUnitOf(deviceProfile('rpi4'), 'gpu')).toThrow(/no gpu unit; available: cpu/);
  });
});

describe('roofline latency', () => {
  const model = new RooflineLatencyModel(deviceProfile('rpi4').units.cpu, { seqLen: 1024 });

  it('is memory bound at decode: GPT-2 small reads its weights once per token', () => {
    const unit = deviceProfile('rpi4').units.cpu;
    const bytes = countParameters(GPT2_SMALL) * 4;
    const floor = (bytes / (unit.memoryBandwidth * unit.memoryEfficiency)) * 1000;
    const ms = predictLatencyMs(GPT2_SMALL, model);
    expect(ms).toBeGreaterThan(floor * 0.95); // position rows are not read in full
    expect(ms).toBeLessThan(floor * 1.3);
  });

  it('never decreases when any size grows', () => {
    const base = model.layerMs(256, 1024, 4, 64);
    expect(model.layerMs(320, 1024, 4, 64)).toBeGreaterThan(base);
    expect(model.layerMs(256, 1536, 4, 64)).toBeGreaterThan(base);
    expect(model.layerMs(256, 1024, 5, 64)).toBeGreaterThan(base);
    expect(new RooflineLatencyModel(deviceProfile('rpi4').units.cpu, { seqLen: 2048 }).layerMs(256, 1024, 4, 64)).toBeGreaterThan(base);
  });

  it('is faster on the faster device', () => {
    const orin = new RooflineLatencyModel(computeUnitOf(deviceProfile('jetson-orin-nano')).unit);
    const nano = new RooflineLatencyModel(computeUnitOf(deviceProfile('jetson-nano')).unit);
    expect(predictLatencyMs(GPT2_SMALL, orin)).toBeLessThan(predictLatencyMs(GPT2_SMALL, nano));
  });
});

describe('roofline latency of shipped weights and Llama-family layers', () => {
  const unit = deviceProfile('rpi4').units.cpu;
  const at = (weights: ReturnType<typeof weightStorageOfBits>, seqLen = 1024): RooflineLatencyModel => new RooflineLatencyModel(unit, { seqLen, weights });

  it('reads the shipped bytes once per token: TinyLlama at fp32, fp16 and int4', () => {
    // Bandwidth floor: every shipped weight byte (less the untouched embedding rows) plus the cache, over attained bandwidth.
    for (const bits of [32, 16, 4] as const) {
      const storage = weightStorageOfBits(bits);
      const fb = bits === 16 ? 2 : 4;
      const embeddingRows = 31999 * 2048 * fb; // only one token's row is read
      const bytes = weightBytes(TINYLLAMA_11B, storage) - embeddingRows + kvCacheBytes(TINYLLAMA_11B, 1024, fb);
      const floor = (bytes / (unit.memoryBandwidth * unit.memoryEfficiency)) * 1000;
      const ms = predictLatencyMs(TINYLLAMA_11B, at(storage));
      expect(ms).toBeGreaterThan(floor);
      expect(ms).toBeLessThan(floor * 1.1);
    }
    expect(predictLatencyMs(TINYLLAMA_11B, at(weightStorageOfBits(4)))).toBeLessThan(predictLatencyMs(TINYLLAMA_11B, at(weightStorageOfBits(16))) / 2);
  });

  it('reads the cache at kvHeads: GQA is faster at long context', () => {
    const mha = { ...SMOLLM2_135M, blocks: SMOLLM2_135M.blocks.map((b) => ({ ...b, kvHeads: b.heads })) };
    const m = at(weightStorageOfBits(16), 8192);
    expect(predictLatencyMs(SMOLLM2_135M, m)).toBeLessThan(predictLatencyMs(mha, m));
    // 32-bit storage and the plain bytes-per-weight model agree to the last bit.
    const plain = new RooflineLatencyModel(unit, { seqLen: 1024, bytesPerWeight: 4 });
    expect(predictLatencyMs(SMOLLM2_135M, at(weightStorageOfBits(32)))).toBe(predictLatencyMs(SMOLLM2_135M, plain));
  });
});

describe('measured latency table', () => {
  const roofline = new RooflineLatencyModel(deviceProfile('rpi4').units.cpu, { seqLen: 256 });
  const table = parseLatencyTable({
    format: 'fleetlm/layer-latency@1',
    device: 'rpi4',
    seqLen: 256,
    layers: [
      { width: 256, ffnWidth: 1024, heads: 4, ms: 3 * roofline.layerMs(256, 1024, 4, 64) },
      { width: 512, ffnWidth: 2048, heads: 8, headDim: 64, ms: 2 * roofline.layerMs(512, 2048, 8, 64), samples: 50 },
    ],
    heads: [{ width: 256, vocabSize: 50257, ms: 4 * roofline.headMs(256, 50257) }],
  });

  it('uses measured entries, fits unmeasured layers on them and calibrates the rest by the median ratio', () => {
    const m = new MeasuredLatencyModel(table, roofline);
    expect(m.calibration).toBeCloseTo(3, 12);
    expect(m.layerMs(256, 1024, 4, 64)).toBeCloseTo(3 * roofline.layerMs(256, 1024, 4, 64), 12);
    expect(m.layerMs(512, 2048, 8, 64)).toBeCloseTo(2 * roofline.layerMs(512, 2048, 8, 64), 12);
    // Two layer shapes: the line through them (a fixed per-layer cost plus a scale) prices a third.
    const r1 = roofline.layerMs(256, 1024, 4, 64);
    const r2 = roofline.layerMs(512, 2048, 8, 64);
    const scale = (2 * r2 - 3 * r1) / (r2 - r1);
    expect(m.layerFit.kind).toBe('affine');
    expect(m.layerFit.scale).toBeCloseTo(scale, 12);
    expect(m.layerFit.fixedMs).toBeCloseTo(3 * r1 - scale * r1, 12);
    expect(m.layerMs(384, 1536, 6, 64)).toBeCloseTo(m.layerFit.fixedMs + scale * roofline.layerMs(384, 1536, 6, 64), 12);
    expect(m.projectionMs(256, 512)).toBeCloseTo(3 * roofline.projectionMs(256, 512), 12);
  });

  it('loads from a file and rejects malformed tables naming the field', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-lat-'));
    const file = path.join(dir, 'rpi4.json');
    writeFileSync(file, JSON.stringify(table));
    expect(loadLatencyTable(file).layers).toHaveLength(2);
    writeFileSync(file, JSON.stringify({ ...table, layers: [{ width: 256, ffnWidth: 1024, heads: 4, ms: -1 }] }));
    expect(() => loadLatencyTable(file)).toThrow(/layers\.0\.ms/);
    writeFileSync(file, '{not json');
    expect(() => loadLatencyTable(file)).toThrow(/not valid JSON/);
    expect(() => loadLatencyTable(path.join(dir, 'missing.json'))).toThrow(/cannot read layer latency table/);
  });

  it('must be measured at the search sequence length', () => {
    expect(() => new MeasuredLatencyModel(table, new RooflineLatencyModel(deviceProfile('rpi4').units.cpu, { seqLen: 1024 }))).toThrow(/seqLen 256.*seqLen 1024/);
  });

  it('uses its GPT-2 layer entries only for GPT-2 layers', () => {
    const m = new MeasuredLatencyModel(table, roofline);
    const llama = { kvWidth: 64, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false, rotary: true } as const;
    expect(m.layerMs(256, 1024, 4, 64, llama)).toBeCloseTo(3 * roofline.layerMs(256, 1024, 4, 64, llama), 12);
    expect(m.layerMs(256, 1024, 4, 64, {})).toBe(table.layers[0]!.ms);
  });

    it('drives the search when given', () => {
    const base = { budgets: { params: 30e6, latencyMs: 40 }, device: 'rpi4', contextLength: 256, iterations: 2000 } as const;
    const measured = searchEntropy({ ...base, latencyTable: table });
    expect(measured.device?.latencyModel).toBe('measured');
    expect(measured.latencyMs).toBeLessThanOrEqual(40);
    expect(predictLatencyMs(measured.spec, new MeasuredLatencyModel(table, roofline))).toBe(measured.latencyMs);
    expect(() => searchEntropy({ ...base, device: 'rpi5', latencyTable: table })).toThrow(/table is for device 'rpi4'/);
  });
});
