// Summaries behind `fleetlm devices` and `fleetlm telemetry`, on hand-made messages and on the
// local hub's JSON-lines envelope format.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { energyDeltas, latestByDevice, readTelemetryDir, readTelemetryTable, summarise, TelemetrySkips } from '../../fleet/telemetry-reader.ts';
import { currentMessage, newerAgentMessage, nextMajorMessage } from '../helpers/newer-agent-telemetry.ts';
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

/** JSON to a DynamoDB attribute value (the SDK's marshalling, for the types telemetry uses). */
function toItem(v: unknown): AttributeValue {
  if (v === null) return { NULL: true };
  if (typeof v === 'string') return { S: v };
  if (typeof v === 'number') return { N: String(v) };
  if (typeof v === 'boolean') return { BOOL: v };
  if (Array.isArray(v)) return { L: v.map(toItem) };
  return { M: Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, toItem(x)])) };
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

  it('reads a newer agent\'s messages, reports a newer major schema and counts malformed ones (hub store)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-tel-'));
    const envelope = (t: unknown, at: number) => JSON.stringify({ receivedAt: at, thingName: 'x', telemetry: t, hubField: 'kept by a newer hub' });
    const lines = [
      envelope(newerAgentMessage('new-1', 1), 1),
      envelope(currentMessage('old-1', 2), 2),
      envelope(nextMajorMessage('next-1', 3), 3),
      envelope(nextMajorMessage('next-2', 4), 4),
      envelope({ ...currentMessage('bad-1', 5), seq: -1 }, 5),
    ];
    writeFileSync(path.join(dir, 'telemetry.jsonl'), `${lines.join('\n')}\n`);
    const skips = new TelemetrySkips();
    const got = await readTelemetryDir(dir, skips);
    expect(got.map((m) => m.thingName)).toEqual(['new-1', 'old-1']);
    expect(got[0]).toMatchObject({ seq: 1, inference: { requests: 7, firstTokenMs: { p50: 12.5, p95: 30 }, decodeKvLength: { p50: 20, p95: 40 } }, system: { energyJ: 3.5 } });
    expect(got[0]).not.toHaveProperty('gpu');
    expect(summarise(got, 'device').map((s) => [s.key, s.firstTokenMsP50])).toEqual([['new-1', 12.5], ['old-1', 12.5]]);
    expect({ newer: skips.newerMessages, invalid: skips.invalid }).toEqual({ newer: 2, invalid: 1 });
    expect(skips.describeNewer()).toBe(
      '2 telemetry messages from next-1, next-2 use fleetlm/telemetry@2, newer than the fleetlm/telemetry@1 this fleetlm reads; they are left out: upgrade fleetlm',
    );
    expect(new TelemetrySkips().describeNewer()).toBeNull();
    const one = new TelemetrySkips();
    one.note({ kind: 'newer', schema: 'fleetlm/telemetry@3', thingName: null, reason: '' });
    expect(one.describeNewer()).toBe('1 telemetry message uses fleetlm/telemetry@3, newer than the fleetlm/telemetry@1 this fleetlm reads; it is left out: upgrade fleetlm');
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads a newer agent\'s messages from the cloud table (the IoT rule stores the message\'s own fields)', async () => {
    // The items as the topic rule's DynamoDB action writes them: the message's fields plus receivedAt.
    const items = [newerAgentMessage('new-1', 1), nextMajorMessage('next-1', 1), currentMessage('old-1', 1)].map((m) => toItem({ ...m, receivedAt: 5 }).M!);
    // A scan-only stand-in: what is tested is how items are read, not DynamoDB (test/cloud runs it against moto).
    const ddb = { send: async () => ({ Items: items }) } as unknown as DynamoDBClient;
    const skips = new TelemetrySkips();
    const got = await readTelemetryTable(ddb, 'fleetlm-telemetry', skips);
    expect(got.map((m) => m.thingName)).toEqual(['new-1', 'old-1']);
    expect(got[0]!.inference.tokensPerSecond).toEqual({ p50: 40, p95: 55 });
    expect(skips.newerMessages).toBe(1);
  });
});
