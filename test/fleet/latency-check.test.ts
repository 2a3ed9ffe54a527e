// `fleetlm latency --check`: reported decode latency (1000 / decode tokens per second, median over the
// class's devices) against the roofline and the measured-table predictions, both computed independently
// here from the same models, with errors relative to the reported figure.
import { describe, expect, it } from 'vitest';
import type { Telemetry } from '../../contracts/telemetry.ts';
import { latencyCheck, specOfManifest, storageOfManifest } from '../../fleet/latency-check.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { deviceProfile } from '../../models/search/device-profiles.ts';
import { predictLatencyMs } from '../../models/search/latency-model.ts';
import { parseLatencyTable } from '../../models/search/latency-table.ts';
import { MeasuredLatencyModel } from '../../models/search/measured-latency.ts';
import { RooflineLatencyModel } from '../../models/search/roofline-latency.ts';

const spec = parseArchSpec({ name: 'm', vocabSize: 4096, contextLength: 256, blocks: [{ width: 128, ffnRatio: 4, layers: 4, heads: 2, headDim: 64 }], tiedHead: true });
const table = parseLatencyTable({
  format: 'fleetlm/layer-latency@1',
  device: 'rpi4',
  seqLen: 64,
  storage: 'fp32',
  layers: [{ width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 64, ms: 0.5 }],
  heads: [{ width: 128, vocabSize: 4096, seqLen: 64, ms: 1.5 }],
});

function msg(thingName: string, tps: number, timestamp: number, version = '1.0.0', decodeKv?: number): Telemetry {
  return {
    schema: 'fleetlm/telemetry@1',
    thingName,
    timestamp,
    seq: timestamp,
    event: 'periodic',
    model: { modelId: 'm', version },
    inference: { requests: 3, firstTokenMs: { p50: 5, p95: 9 }, tokensPerSecond: { p50: tps, p95: tps }, ...(decodeKv === undefined ? {} : { decodeKvLength: { p50: decodeKv, p95: decodeKv } }) },
    system: { rssBytes: 1, cpuLoad1m: 0, temperatureC: null, powerW: null, energyJ: 0, energyEstimated: true },
    dropped: 0,
  };
}

describe('latencyCheck', () => {
  it('compares the median reported decode latency with both predictions, per class and version', () => {
    const telemetry = [msg('a', 100, 1), msg('a', 250, 2), msg('b', 200, 1), msg('c', 400, 1), msg('x', 50, 1)];
    const rows = latencyCheck({
      telemetry,
      versions: [{ modelId: 'm', version: '1.0.0', spec, storage: null }],
      classOf: new Map([
        ['a', 'rpi4'],
        ['b', 'rpi4'],
        ['c', 'rpi4'],
      ]),
      tables: new Map([['rpi4', [table]]]),
    });
    const rpi = rows.find((r) => r.deviceClass === 'rpi4')!;
    // Latest per device: a 250, b 200, c 400 tokens/s -> 4, 5, 2.5 ms; median 4 ms.
    expect(rpi.devices).toEqual(['a', 'b', 'c']);
    expect(rpi.measuredMs).toBeCloseTo(4, 12);
    const roofline = new RooflineLatencyModel(deviceProfile('rpi4').units.cpu!, { seqLen: 64, bytesPerWeight: 4 });
    const expectedRoofline = predictLatencyMs(spec, roofline);
    // Four measured layers and the measured per-model cost: 4 x 0.5 + 1.5.
    expect(predictLatencyMs(spec, new MeasuredLatencyModel(table, roofline))).toBeCloseTo(3.5, 12);
    expect(rpi.rooflineMs).toBeCloseTo(expectedRoofline, 12);
    expect(rpi.tableMs).toBeCloseTo(3.5, 12);
    expect(rpi.tableError).toBeCloseTo((3.5 - 4) / 4, 12);
    expect(rpi.rooflineError).toBeCloseTo((expectedRoofline - 4) / 4, 12);
    // A device no benchmark covered is its own class, with no prediction and a note.
    const x = rows.find((r) => r.deviceClass === 'unbenchmarked')!;
    expect(x.tableMs).toBeNull();
    expect(x.notes.join(' ')).toMatch(/no device profile/);
  });

  it('refuses a table measured at another weight storage than the version ships, and says so', () => {
    const rows = latencyCheck({
      telemetry: [msg('a', 100, 1)],
      versions: [{ modelId: 'm', version: '1.0.0', spec, storage: storageOfManifest({ quantization: { bits: 4, blockSize: 32 } }) }],
      classOf: new Map([['a', 'rpi4']]),
      tables: new Map([['rpi4', [table]]]),
    });
    expect(rows[0]!.rooflineMs).not.toBeNull();
    expect(rows[0]!.tableMs).toBeNull();
    expect(rows[0]!.notes[0]).toMatch(/fp32 weights, the version ships int4/);
  });

  it('predicts at the KV length the devices report decoding at, interpolating the table between its KV lengths', () => {
    const twoKv = parseLatencyTable({
      ...table,
      layers: [
        { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 64, ms: 0.5 },
        { width: 128, ffnWidth: 512, heads: 2, headDim: 64, seqLen: 256, ms: 1.3 },
      ],
    });
    const classOf = new Map([
      ['a', 'rpi4'],
      ['b', 'rpi4'],
      ['c', 'rpi4'],
    ]);
    const versions = [{ modelId: 'm', version: '1.0.0', spec, storage: null }];
    // Devices decoded at mean KV 150, 160 and 170: the median, 160, is halfway: 0.9 ms per layer.
    const telemetry = [msg('a', 250, 1, '1.0.0', 150), msg('b', 200, 1, '1.0.0', 170), msg('c', 400, 1, '1.0.0', 160)];
    const [row] = latencyCheck({ telemetry, versions, classOf, tables: new Map([['rpi4', [twoKv]]]) });
    expect(row).toMatchObject({ seqLen: 160, seqLenReported: true, notes: [] });
    expect(row!.tableMs).toBeCloseTo(4 * 0.9 + 1.5, 12);
    expect(row!.rooflineMs).toBeCloseTo(predictLatencyMs(spec, new RooflineLatencyModel(deviceProfile('rpi4').units.cpu!, { seqLen: 160, bytesPerWeight: 4 })), 12);
    // One device from before the field: the table's KV length, as for older fleets.
    const mixed = latencyCheck({ telemetry: [...telemetry.slice(0, 2), msg('c', 400, 1)], versions, classOf, tables: new Map([['rpi4', [twoKv]]]) });
    expect(mixed[0]).toMatchObject({ seqLen: 64, seqLenReported: false });
    expect(mixed[0]!.tableMs).toBeCloseTo(4 * 0.5 + 1.5, 12);
    // A table with one KV length cannot move: both predictions at its KV length, and a note says why.
    const single = latencyCheck({ telemetry, versions, classOf, tables: new Map([['rpi4', [table]]]) });
    expect(single[0]).toMatchObject({ seqLen: 64, seqLenReported: false });
    expect(single[0]!.tableMs).toBeCloseTo(3.5, 12);
    expect(single[0]!.notes.join(' ')).toMatch(/decoded at KV 160, but the table has layers at KV 64 only/);
  });

  it('prices a Llama-family version from the llama entries, and says when the table has none', () => {
    const llama = parseArchSpec({
      name: 'l',
      vocabSize: 4096,
      contextLength: 256,
      positions: 'rotary',
      tiedHead: true,
      blocks: [{ width: 128, ffnHidden: 320, layers: 4, heads: 4, kvHeads: 2, headDim: 32, norm: 'rmsnorm', mlp: 'swiglu', qkvBias: false, outputBias: false }],
    });
    const check = (t: typeof table) =>
      latencyCheck({ telemetry: [msg('a', 100, 1)], versions: [{ modelId: 'm', version: '1.0.0', spec: llama, storage: null }], classOf: new Map([['a', 'rpi4']]), tables: new Map([['rpi4', [t]]]) })[0]!;
    const without = check(table);
    expect(without.tableMs).not.toBeNull();
    expect(without.notes.join(' ')).toMatch(/no llama entries .*fleetlm benchmark --family llama/);
    const withLlama = parseLatencyTable({
      ...table,
      layers: [...table.layers, { width: 128, ffnWidth: 320, heads: 4, headDim: 32, seqLen: 64, ms: 0.25, family: 'llama', kvHeads: 2 }],
      heads: [...table.heads, { width: 128, vocabSize: 4096, seqLen: 64, ms: 1.25, family: 'llama' }],
    });
    const priced = check(withLlama);
    expect(priced.notes).toEqual([]);
    // Four measured llama layers and the llama per-model cost; the gpt2 entries (0.5, 1.5) play no part.
    expect(priced.tableMs).toBeCloseTo(4 * 0.25 + 1.25, 12);
  });

  it('reads the spec and storage a published manifest records', () => {
    expect(specOfManifest({ spec })?.blocks[0]!.layers).toBe(4);
    expect(specOfManifest({ nonsense: 1 })).toBeNull();
    expect(storageOfManifest(undefined)).toBeNull();
    expect(storageOfManifest({ quantization: { bits: 8, blockSize: 64 } })).toMatchObject({ type: 'int8', blockSize: 64 });
  });
});
