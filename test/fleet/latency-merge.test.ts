// Merging device layer-latency tables per device class: per-entry median with min/max and relative MAD,
// outliers (a device far from its class) named with what their table says about them and left out,
// classes and storage types kept apart. Reference figures are worked out by hand below.
import { describe, expect, it } from 'vitest';
import { mergeLatencyTables } from '../../fleet/latency-merge.ts';

function device(thingName: string, scale: number, extra: { device?: string; storage?: 'fp32' | 'int4'; endC?: number; board?: string } = {}): unknown {
  return {
    format: 'fleetlm/layer-latency@1',
    device: extra.device ?? 'rpi4',
    seqLen: 64,
    bytesPerWeight: extra.storage === 'int4' ? 0.5 : 4,
    storage: extra.storage ?? 'fp32',
    measuredAt: '2026-12-03T10:00:00.000Z',
    complete: true,
    measuredOn: {
      thingName,
      board: extra.board ?? 'Raspberry Pi 4 Model B Rev 1.4',
      cpu: 'Cortex-A72',
      cores: 4,
      onnxruntime: '1.30.0',
      agentVersion: '0.1.0',
      threads: 0,
      thermal: { startC: 50, endC: extra.endC ?? 55 },
      loadAvg1m: 0.2,
      runId: 'b1',
    },
    layers: [
      { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 64, ms: 1 * scale, samples: 5 },
      { width: 256, ffnWidth: 1024, heads: 4, headDim: 64, seqLen: 64, ms: 3 * scale, samples: 5 },
    ],
    heads: [{ width: 128, vocabSize: 4096, seqLen: 64, ms: 2 * scale, samples: 5 }],
  };
}

describe('mergeLatencyTables', () => {
  it('takes the per-entry median with its spread across devices', () => {
    const [m] = mergeLatencyTables([device('a', 1), device('b', 1.2), device('c', 0.9)]);
    expect(m!.deviceClass).toBe('rpi4');
    expect(m!.storage).toBe('fp32');
    expect(m!.devices).toEqual(['a', 'b', 'c']);
    expect(m!.outliers).toEqual([]);
    const l = m!.table.layers.find((x) => x.width === 256)!;
    // Figures 3, 3.6, 2.7: median 3; deviations 0, 0.6, 0.3: MAD 0.3, relative 0.1.
    expect(l.ms).toBeCloseTo(3, 12);
    expect(l.spread).toMatchObject({ devices: 3, min: 2.7 });
    expect(l.spread!.max).toBeCloseTo(3.6, 12);
    expect(l.spread!.relMad).toBeCloseTo(0.1, 12);
    expect(l.samples).toBe(15);
    expect(m!.table.heads[0]!.ms).toBeCloseTo(2, 12);
    expect(m!.table.mergedFrom!.devices.map((d) => d.thingName)).toEqual(['a', 'b', 'c']);
    expect(m!.table.measuredOn).toBeUndefined();
  });

  it('names a device far from its class, says why, and leaves it out of the medians', () => {
    const [m] = mergeLatencyTables([device('a', 1), device('b', 1.05), device('hot', 2, { endC: 84, board: 'Raspberry Pi 4 Model B Rev 1.1' }), device('c', 0.95)]);
    expect(m!.devices).toEqual(['a', 'b', 'c']);
    expect(m!.outliers).toHaveLength(1);
    expect(m!.outliers[0]!.thingName).toBe('hot');
    expect(m!.outliers[0]!.ratio).toBeGreaterThan(1.3);
    expect(m!.outliers[0]!.reason).toMatch(/slower than the class median/);
    expect(m!.outliers[0]!.reason).toMatch(/84 °C/);
    expect(m!.outliers[0]!.reason).toMatch(/board Raspberry Pi 4 Model B Rev 1.1/);
    // Median of 1, 1.05, 0.95 (the outlier's 2 left out).
    expect(m!.table.layers.find((x) => x.width === 128)!.ms).toBeCloseTo(1, 12);
    expect(m!.table.mergedFrom!.outliers.map((o) => o.thingName)).toEqual(['hot']);
  });

  it('calls no device an outlier with fewer than three in the class', () => {
    const [m] = mergeLatencyTables([device('a', 1), device('b', 3)]);
    expect(m!.outliers).toEqual([]);
    expect(m!.table.layers.find((x) => x.width === 128)!.ms).toBeCloseTo(2, 12);
  });

  it('keeps device classes and weight storage apart', () => {
    const merged = mergeLatencyTables([device('a', 1), device('b', 1, { device: 'jetson-nano' }), device('c', 0.5, { storage: 'int4' })]);
    expect(merged.map((m) => `${m.deviceClass}/${m.storage}`)).toEqual(['jetson-nano/fp32', 'rpi4/fp32', 'rpi4/int4']);
    expect(merged.find((m) => m.storage === 'int4')!.table.bytesPerWeight).toBe(0.5);
  });

  it('refuses an empty set and a malformed table, naming it', () => {
    expect(() => mergeLatencyTables([])).toThrow(/no device latency tables/);
    expect(() => mergeLatencyTables([device('a', 1), { format: 'fleetlm/layer-latency@1', device: 'rpi4' }])).toThrow(/device table 2/);
  });
});
