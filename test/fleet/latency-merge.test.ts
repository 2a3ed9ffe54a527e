// Merging device layer-latency tables per device class: per-entry median with min/max and relative MAD,
// outliers (a device far from its class) named with what their table says about them and left out,
// classes and storage types kept apart. Reference figures are worked out by hand below.
import { describe, expect, it } from 'vitest';
import { runsToMerge, type BenchmarkRun } from '../../fleet/benchmark-rollout.ts';
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

/** `device(...)` as a newer agent would upload it: fields this version does not know, at every level. */
function newerDevice(thingName: string, scale: number): unknown {
  const t = device(thingName, scale) as { measuredOn: object; layers: object[]; heads: object[] };
  return {
    ...t,
    gpu: { name: 'Orin' },
    measuredOn: { ...t.measuredOn, kernel: '6.6.0', thermal: { startC: 50, endC: 55, throttled: false } },
    layers: t.layers.map((l) => ({ ...l, p95: 9, spreadWithin: { min: 0.1 } })),
    heads: t.heads.map((h) => ({ ...h, p95: 9 })),
  };
}

describe('mergeLatencyTables', () => {
  it('merges a newer agent\'s upload beside current ones: its known figures count, its unknown fields are dropped', () => {
    const [withNewer] = mergeLatencyTables([device('a', 1), newerDevice('b', 1.2), device('c', 0.9)]);
    const [current] = mergeLatencyTables([device('a', 1), device('b', 1.2), device('c', 0.9)]);
    expect(withNewer!.devices).toEqual(['a', 'b', 'c']);
    expect(withNewer!.table).toEqual(current!.table);
    // The merged table is this version's own output, checked strictly, so no unknown field survives into it.
    expect(JSON.stringify(withNewer!.table)).not.toMatch(/gpu|kernel|throttled|p95|spreadWithin/);
  });

  it('refuses a device table of a newer major format (VALIDATION_SCHEMA_VERSION) and a malformed one, naming the table', () => {
    const next = { ...(device('b', 1) as object), format: 'fleetlm/layer-latency@2' };
    expect(() => mergeLatencyTables([device('a', 1), next])).toThrow(/^device table 2: layer latency table: format 'fleetlm\/layer-latency@2' is major version 2 of fleetlm\/layer-latency, newer than the fleetlm\/layer-latency@1 this program reads/);
    const bad = newerDevice('b', 1) as { layers: Array<Record<string, unknown>> };
    bad.layers[0]!.ms = 'fast';
    expect(() => mergeLatencyTables([device('a', 1), bad])).toThrow(/^device table 2: invalid layer latency table: layers\.0\.ms: /);
  });

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

/** A device's table of a llama run: the same widths as device(), K/V heads 1 and 2, and a llama head. */
function llamaDevice(thingName: string, scale: number, measuredAt = '2026-12-03T11:00:00.000Z'): unknown {
  const t = device(thingName, scale) as { measuredOn: object };
  return {
    ...t,
    seqLen: 32,
    measuredAt,
    measuredOn: { ...t.measuredOn, runId: 'b2' },
    layers: [
      { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 64, ms: 0.5 * scale, samples: 5, family: 'llama', kvHeads: 1 },
      { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 64, ms: 0.7 * scale, samples: 5, family: 'llama', kvHeads: 2 },
    ],
    heads: [{ width: 128, vocabSize: 4096, seqLen: 64, ms: 1.5 * scale, samples: 5, family: 'llama' }],
  };
}

describe('mergeLatencyTables with layer families', () => {
  it('keeps gpt2 and llama entries (and llama K/V head counts) apart, and a device of two runs counts once', () => {
    const [m] = mergeLatencyTables([device('a', 1), device('b', 2), llamaDevice('a', 1), llamaDevice('b', 2)]);
    expect(m!.devices).toEqual(['a', 'b']);
    expect(m!.table.mergedFrom!.runIds).toEqual(['b1', 'b2']);
    const layers = m!.table.layers.map((l) => [l.family ?? 'gpt2', l.kvHeads ?? null, l.width, l.ms]);
    // Medians of two devices (1x and 2x): the means.
    expect(layers).toEqual([
      ['gpt2', null, 128, 1.5],
      ['gpt2', null, 256, 4.5],
      ['llama', 1, 128, 0.75],
      ['llama', 2, 128, expect.closeTo(1.05, 12)],
    ]);
    expect(m!.table.heads.map((h) => [h.family ?? 'gpt2', h.ms])).toEqual([
      ['gpt2', 3],
      ['llama', 2.25],
    ]);
    // gpt2 entries come out as they always did: no family field.
    expect(m!.table.layers.filter((l) => !l.family).every((l) => !('family' in l) && !('kvHeads' in l))).toBe(true);
  });

  it('takes the newer figure when one device timed the same entry in two runs', () => {
    const older = llamaDevice('a', 1, '2026-12-03T11:00:00.000Z');
    const newer = llamaDevice('a', 3, '2026-12-03T12:00:00.000Z');
    const [m] = mergeLatencyTables([newer, older]);
    expect(m!.devices).toEqual(['a']);
    expect(m!.table.layers.find((l) => l.kvHeads === 1)!.ms).toBeCloseTo(1.5, 12);
  });

  it('merges a run with the newest run of each other family for its class and storage', () => {
    const run = (runId: string, createdAt: string, extra: Partial<BenchmarkRun> = {}): BenchmarkRun => ({
      format: 'fleetlm/benchmark-run@1',
      runId,
      group: 'g',
      deviceClass: 'rpi4',
      storage: 'fp32',
      createdAt,
      grid: { modelId: 'benchmark-grid', version: 'v', files: 2, bytes: 1 },
      jobs: [],
      ...extra,
    });
    // Newest first, as listBenchmarkRuns returns them.
    const runs = [
      run('l2', '2026-12-03T05:00:00Z', { family: 'llama' }),
      run('g3', '2026-12-03T04:00:00Z', { storage: 'int4' }),
      run('g2', '2026-12-03T03:00:00Z'),
      run('l1', '2026-12-03T02:00:00Z', { family: 'llama' }),
      run('g1', '2026-12-03T01:00:00Z'),
    ];
    const ids = (r: BenchmarkRun) => runsToMerge(runs, r).map((x) => x.runId);
    expect(ids(runs[0]!)).toEqual(['l2', 'g2']);
    expect(ids(runs[2]!)).toEqual(['g2', 'l2']);
    expect(ids(runs[4]!)).toEqual(['g1', 'l2']);
    // Another storage has no llama run: merged alone.
    expect(ids(runs[1]!)).toEqual(['g3']);
  });
});
