// Telemetry probes read sysfs layouts of real boards (written here under a temp root), and the
// offline outbox stays bounded, drops oldest first and counts what it dropped.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TelemetryWriteSchema, type Telemetry } from '../../contracts/telemetry.ts';
import { TelemetryOutbox, readInaPowerW, readTemperatureC } from '../../edge-agent/telemetry.ts';
import { NEWER_FIELDS, newerAgentMessage } from '../helpers/newer-agent-telemetry.ts';

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-tel-'));

async function put(root: string, rel: string, text: string): Promise<void> {
  await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await fs.writeFile(path.join(root, rel), text);
}

function msg(seq: number): Telemetry {
  return TelemetryWriteSchema.parse({
    schema: 'fleetlm/telemetry@1',
    thingName: 't',
    timestamp: 1,
    seq,
    event: 'periodic',
    model: null,
    inference: { requests: 0, firstTokenMs: null, tokensPerSecond: null },
    system: { rssBytes: 1, cpuLoad1m: 0, temperatureC: null, powerW: null, energyJ: 0, energyEstimated: true },
  });
}

describe('sysfs probes', () => {
  it('reads the hottest thermal zone in °C and skips disabled sensors', async () => {
    const root = await tmp();
    await put(root, 'class/thermal/thermal_zone0/temp', '41500\n');
    await put(root, 'class/thermal/thermal_zone1/temp', '56000\n');
    await put(root, 'class/thermal/thermal_zone2/temp', '-256000\n'); // Jetson: sensor off
    expect(await readTemperatureC(root)).toBe(56);
    expect(await readTemperatureC(await tmp())).toBeNull();
  });

  it('reads INA3221 hwmon rails (L4T 34+) and prefers the board input rail', async () => {
    const root = await tmp();
    const hw = 'bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3';
    await put(root, `${hw}/in1_label`, 'VDD_IN\n');
    await put(root, `${hw}/in1_input`, '5000\n'); // mV
    await put(root, `${hw}/curr1_input`, '1200\n'); // mA
    await put(root, `${hw}/in2_label`, 'VDD_CPU_GPU_CV\n');
    await put(root, `${hw}/in2_input`, '5000\n');
    await put(root, `${hw}/curr2_input`, '400\n');
    expect(await readInaPowerW(root)).toBeCloseTo(6.0, 6);
  });

  it('sums the older ina3221x IIO rails (mW) when none is the input', async () => {
    const root = await tmp();
    const iio = 'bus/i2c/drivers/ina3221x/6-0040/iio:device0';
    await put(root, `${iio}/rail_name_0`, 'GPU\n');
    await put(root, `${iio}/in_power0_input`, '1500\n');
    await put(root, `${iio}/rail_name_1`, 'CPU\n');
    await put(root, `${iio}/in_power1_input`, '500\n');
    expect(await readInaPowerW(root)).toBeCloseTo(2.0, 6);
    expect(await readInaPowerW(await tmp())).toBeNull();
  });
});

describe('TelemetryOutbox', () => {
  it('keeps at most N messages, dropping the oldest and counting them', async () => {
    const dir = await tmp();
    const box = await TelemetryOutbox.open(dir, 3);
    for (let i = 0; i < 5; i++) await box.enqueue(msg(box.nextSeq()));
    expect(box.dropped).toBe(2);
    const sent: number[] = [];
    expect(await box.drain(async (m) => void sent.push(m.seq))).toBe(3);
    expect(sent).toEqual([2, 3, 4]);
    const reopened = await TelemetryOutbox.open(dir, 3);
    expect(reopened.dropped).toBe(2);
    expect(reopened.nextSeq()).toBe(5);
  });

  it('stops at the first failed send and keeps the rest in order', async () => {
    const box = await TelemetryOutbox.open(await tmp(), 10);
    for (let i = 0; i < 3; i++) await box.enqueue(msg(box.nextSeq()));
    let calls = 0;
    await expect(
      box.drain(async () => {
        if (++calls === 2) throw new Error('offline');
      }),
    ).rejects.toThrow('offline');
    const sent: number[] = [];
    await box.drain(async (m) => void sent.push(m.seq));
    expect(sent).toEqual([1, 2]);
  });

  it('forwards a queued message of a newer agent (after the agent itself rolled back) with its unknown fields', async () => {
    const dir = await tmp();
    await fs.writeFile(path.join(dir, '000000000003.json'), JSON.stringify(newerAgentMessage('t', 3)));
    await fs.writeFile(path.join(dir, '000000000004.json'), JSON.stringify({ ...newerAgentMessage('t', 4), schema: 'fleetlm/telemetry@2' }));
    const box = await TelemetryOutbox.open(dir, 10);
    const sent: Array<Record<string, unknown>> = [];
    expect(await box.drain(async (m) => void sent.push(JSON.parse(JSON.stringify(m)) as Record<string, unknown>))).toBe(1);
    expect(sent[0]).toMatchObject({ seq: 3, ...NEWER_FIELDS.top, system: NEWER_FIELDS.system, inference: NEWER_FIELDS.inference });
    // The one this agent cannot read is not left to block the queue.
    expect(await box.size()).toBe(0);
  });
});
