// Summaries behind `fleetlm devices` and `fleetlm telemetry`, on hand-made messages and on the
// local hub's JSON-lines envelope format.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { energyDeltas, latestByDevice, readTelemetryDir, summarise } from '../../fleet/telemetry-reader.ts';
import type { Telemetry } from '../../contracts/telemetry.ts';

function msg(thingName: string, seq: number, version: string | null, energyJ: number, extra: Partial<Telemetry['inference']> = {}): Telemetry {
  return {
    schema: 'fleetlm/telemetry@1',
    thingName,
    timestamp: 1_000_000 + seq * 1000,
    seq,
    event: 'periodic',
    model: version ? { modelId: 'm', version } : null,
    inference: { requests: seq, firstTokenMs: null, tokensPerSecond: null, ...extra },
    system: { rssBytes: 100 * 2 ** 20, cpuLoad1m: 0.1, temperatureC: null, powerW: null, energyJ, energyEstimated: true },
    dropped: 0,
  };
}

describe('telemetry summaries', () => {
  it('attributes energy by increase of the cumulative counter, restarts included', () => {
    const a = [msg('a', 1, '1', 10), msg('a', 2, '1', 15), msg('a', 3, '2', 22), msg('a', 4, '2', 3 /* restart */)];
    const d = energyDeltas(a);
    expect(a.map((m) => d.get(m))).toEqual([10, 5, 7, 3]);
    const byVersion = summarise(a, 'version');
    expect(byVersion.map((s) => [s.key, s.energyJ])).toEqual([
      ['m@1', 15],
      ['m@2', 10],
    ]);
    expect(summarise(a, 'device')[0]!.energyJ).toBe(25);
  });

  it('takes medians of the devices\' percentiles and the latest request count per device', () => {
    const ms = [
      msg('a', 1, '1', 1, { requests: 3, firstTokenMs: { p50: 10, p95: 20 }, tokensPerSecond: { p50: 30, p95: 40 } }),
      msg('b', 1, '1', 1, { requests: 5, firstTokenMs: { p50: 30, p95: 60 }, tokensPerSecond: { p50: 10, p95: 20 } }),
      msg('b', 2, '1', 2, { requests: 7, firstTokenMs: { p50: 50, p95: 90 }, tokensPerSecond: { p50: 20, p95: 30 } }),
    ];
    const [v] = summarise(ms, 'version');
    expect(v).toMatchObject({ key: 'm@1', devices: 2, messages: 3, requests: 10, firstTokenMsP50: 30, firstTokenMsP95: 60, tokensPerSecondP50: 20, rssMb: 100 });
    expect(latestByDevice(ms).get('b')!.seq).toBe(2);
  });

  it('reads the hub sink\'s envelopes and skips torn or invalid lines', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-tel-'));
    const lines = [
      JSON.stringify({ receivedAt: 1, thingName: 'a', telemetry: msg('a', 1, '1', 1) }),
      JSON.stringify({ receivedAt: 2, thingName: 'a', telemetry: { ...msg('a', 2, '1', 2), schema: 'other' } }),
      '{"receivedAt": 3, "thingName": "a", "telem',
    ];
    writeFileSync(path.join(dir, 'telemetry.jsonl'), `${lines.join('\n')}\n`);
    const got = await readTelemetryDir(dir);
    expect(got.map((m) => m.seq)).toEqual([1]);
    expect(await readTelemetryDir(path.join(dir, 'missing'))).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });
});
