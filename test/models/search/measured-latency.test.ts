// The measured latency model with fleet tables: entries at the search's KV length are used as measured,
// other KV lengths are interpolated on the line through the two nearest measured ones, per-model costs
// (head entries) serve every KV length, and the search designs against it and says so.
import { describe, expect, it } from 'vitest';
import { deviceProfile } from '../../../models/search/device-profiles.ts';
import { parseLatencyTable } from '../../../models/search/latency-table.ts';
import { fitLayerCost, MeasuredLatencyModel } from '../../../models/search/measured-latency.ts';
import { RooflineLatencyModel } from '../../../models/search/roofline-latency.ts';
import { searchArchitecture } from '../../../models/search/search.ts';

const unit = deviceProfile('rpi4').units.cpu!;
const table = parseLatencyTable({
  format: 'fleetlm/layer-latency@1',
  device: 'rpi4',
  seqLen: 64,
  storage: 'fp32',
  layers: [
    { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 64, ms: 1 },
    { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 256, ms: 2 },
    { width: 256, ffnWidth: 1024, heads: 4, headDim: 64, seqLen: 64, ms: 3 },
  ],
  heads: [{ width: 128, vocabSize: 4096, seqLen: 64, ms: 5 }],
});

describe('MeasuredLatencyModel with KV lengths', () => {
  it('uses the entry at the search KV length and interpolates between two others', () => {
    const at64 = new MeasuredLatencyModel(table, new RooflineLatencyModel(unit, { seqLen: 64 }));
    expect(at64.layerMs(128, 512, 2, 64)).toBe(1);
    expect(at64.layerMs(256, 1024, 4, 64)).toBe(3);
    const at160 = new MeasuredLatencyModel(table, new RooflineLatencyModel(unit, { seqLen: 160 }));
    // Halfway between 64 (1 ms) and 256 (2 ms).
    expect(at160.layerMs(128, 512, 2, 64)).toBeCloseTo(1.5, 12);
    // One KV length only: not measured at 160, so the roofline scaled by the one usable layer's ratio answers.
    const roof160 = new RooflineLatencyModel(unit, { seqLen: 160 });
    expect(at160.layerFit).toEqual({ fixedMs: 0, scale: 1.5 / roof160.layerMs(128, 512, 2, 64), kind: 'ratio' });
    expect(at160.layerMs(256, 1024, 4, 64)).toBeCloseTo(at160.layerFit.scale * roof160.layerMs(256, 1024, 4, 64), 12);
    // The head does not read the cache: one measured KV length serves all.
    expect(at160.headMs(128, 4096)).toBe(5);
    expect(at160.measuredEntries).toBe(2);
  });

  it('refuses a table with no layer usable at the search KV length', () => {
    const single = parseLatencyTable({ ...table, layers: table.layers.filter((l) => l.width === 256) });
    expect(() => new MeasuredLatencyModel(single, new RooflineLatencyModel(unit, { seqLen: 1024 }))).toThrow(/seqLen 64 but the search uses seqLen 1024/);
  });

  it('drives the search, which reports the measured model', () => {
    const r = searchArchitecture({ device: 'rpi4', latencyTable: table, seqLen: 64, contextLength: 256, vocabSize: 4096, widths: [128, 256], ffnRatios: [4], iterations: 3000, budgets: { latencyMs: 20 } });
    expect(r.device).toMatchObject({ id: 'rpi4', latencyModel: 'measured' });
    expect(r.latencyMs!).toBeLessThanOrEqual(20);
    const roof = searchArchitecture({ device: 'rpi4', seqLen: 64, contextLength: 256, vocabSize: 4096, widths: [128, 256], ffnRatios: [4], iterations: 3000, budgets: { latencyMs: 20 } });
    expect(roof.device?.latencyModel).toBe('roofline');
  });
});

describe('fitLayerCost', () => {
  it('recovers a fixed per-layer cost and a scale from exact points', () => {
    const points = [0.1, 0.4, 1.6].map((r) => ({ roofline: r, ms: 0.25 + 1.8 * r }));
    const fit = fitLayerCost(points, 9);
    expect(fit.kind).toBe('affine');
    expect(fit.fixedMs).toBeCloseTo(0.25, 12);
    expect(fit.scale).toBeCloseTo(1.8, 12);
  });

  it('falls back to the ratio when the shapes cannot separate the terms, and through the origin when the fit is not physical', () => {
    expect(fitLayerCost([{ roofline: 1, ms: 3 }], 3)).toEqual({ fixedMs: 0, scale: 3, kind: 'ratio' });
    expect(fitLayerCost([{ roofline: 1, ms: 3 }, { roofline: 1, ms: 5 }], 4)).toEqual({ fixedMs: 0, scale: 4, kind: 'ratio' });
    // Steeper than proportional: the line would cross zero at a positive roofline (negative fixed cost).
    const fit = fitLayerCost([{ roofline: 1, ms: 1 }, { roofline: 2, ms: 4 }], 2);
    expect(fit.kind).toBe('ratio');
    expect(fit.fixedMs).toBe(0);
    expect(fit.scale).toBeCloseTo((1 * 1 + 2 * 4) / (1 + 4), 12);
  });

  it('makes a search against a table with a per-layer cost choose fewer layers than the roofline does', () => {
    // A device where every layer costs 0.5 ms beyond its roofline: measured at two widths.
    const roof = new RooflineLatencyModel(unit, { seqLen: 64 });
    const widths = [128, 256];
    const perLayer = parseLatencyTable({
      format: 'fleetlm/layer-latency@1',
      device: 'rpi4',
      seqLen: 64,
      layers: widths.map((w) => ({ width: w, ffnWidth: 4 * w, heads: w / 64, headDim: 64, ms: 0.5 + roof.layerMs(w, 4 * w, w / 64, 64) })),
    });
    const m = new MeasuredLatencyModel(perLayer, roof);
    expect(m.layerFit.fixedMs).toBeCloseTo(0.5, 9);
    expect(m.layerFit.scale).toBeCloseTo(1, 9);
    const base = { device: 'rpi4', seqLen: 64, contextLength: 256, vocabSize: 4096, iterations: 3000, objective: 'entropy', budgets: { params: 20e6, latencyMs: 8 } } as const;
    const layers = (r: ReturnType<typeof searchArchitecture>) => r.spec.blocks.reduce((n, b) => n + b.layers, 0);
    const measured = searchArchitecture({ ...base, latencyTable: perLayer });
    const roofline = searchArchitecture(base);
    expect(measured.latencyMs!).toBeLessThanOrEqual(8);
    expect(layers(measured)).toBeLessThan(layers(roofline));
  });
});
