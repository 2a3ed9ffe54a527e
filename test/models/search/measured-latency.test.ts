// The measured latency model with fleet tables: entries at the search's KV length are used as measured,
// other KV lengths are interpolated on the line through the two nearest measured ones, per-model costs
// (head entries) serve every KV length, and the search designs against it and says so.
import { describe, expect, it } from 'vitest';
import { deviceProfile } from '../../../models/search/device-profiles.ts';
import { parseLatencyTable } from '../../../models/search/latency-table.ts';
import { MeasuredLatencyModel } from '../../../models/search/measured-latency.ts';
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
    // One KV length only: not measured at 160, so the calibrated roofline answers.
    const roof160 = new RooflineLatencyModel(unit, { seqLen: 160 });
    expect(at160.layerMs(256, 1024, 4, 64)).toBeCloseTo(at160.calibration * roof160.layerMs(256, 1024, 4, 64), 12);
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
