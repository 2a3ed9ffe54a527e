// jobExecutionsRolloutConfig: notification times measured on real MQTT clients.
// Time is scaled to 1 "minute" = 1000 ms so the windows stand out from scheduling jitter.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddThingToThingGroupCommand, CreateJobCommand, CreateThingCommand, CreateThingGroupCommand, type IoTClient } from '@aws-sdk/client-iot';
import type { LocalHub } from '../../local-hub/hub.ts';
import { TestDevice, iotClient, removeDir, startTestHub } from './helpers.ts';

const MINUTE_MS = 1000;
const ACCOUNT = 'arn:aws:iot:us-east-1:123456789012';

describe('local hub: rollout rate', () => {
  let hub: LocalHub & { dir: string };
  let iot: IoTClient;
  const devices: TestDevice[] = [];

  async function fleet(group: string, n: number): Promise<TestDevice[]> {
    await iot.send(new CreateThingGroupCommand({ thingGroupName: group }));
    const out: TestDevice[] = [];
    for (let i = 0; i < n; i++) {
      const name = `${group}-${i}`;
      await iot.send(new CreateThingCommand({ thingName: name }));
      await iot.send(new AddThingToThingGroupCommand({ thingGroupName: group, thingName: name }));
      out.push(await TestDevice.connect(hub, name));
    }
    devices.push(...out);
    return out;
  }

  beforeAll(async () => {
    hub = await startTestHub({ clock: { minuteMs: MINUTE_MS } });
    iot = iotClient(hub);
  });

  afterAll(async () => {
    for (const d of devices) await d.close();
    iot?.destroy();
    await hub?.stop();
    if (hub) await removeDir(hub.dir);
  });

  it('notifies at most maximumPerMinute things in any minute', async () => {
    const ds = await fleet('rate', 5);
    const t0 = Date.now();
    await iot.send(
      new CreateJobCommand({
        jobId: 'rate-job',
        targets: [`${ACCOUNT}:thinggroup/rate`],
        document: '{}',
        jobExecutionsRolloutConfig: { maximumPerMinute: 2 },
      }),
    );
    // Things not yet rolled out see no pending execution.
    expect((await ds[4]!.request('get')).payload.queuedJobs).toEqual([]);
    const times = (await Promise.all(ds.map((d) => d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined, 10_000)))).map((m) => m.at - t0);
    times.sort((a, b) => a - b);
    // Windows of one minute: 2 at once, 2 a minute later, the last one a minute after that.
    expect(times[1]!).toBeLessThan(MINUTE_MS * 0.5);
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 2]!).toBeGreaterThanOrEqual(MINUTE_MS * 0.9);
    expect(times[4]!).toBeGreaterThanOrEqual(2 * MINUTE_MS * 0.95);
    expect(times[4]!).toBeLessThan(3 * MINUTE_MS);
  });

  it('raises the rate by incrementFactor once numberOfNotifiedThings have been notified', async () => {
    const ds = await fleet('expo', 7);
    const t0 = Date.now();
    await iot.send(
      new CreateJobCommand({
        jobId: 'expo-job',
        targets: [`${ACCOUNT}:thinggroup/expo`],
        document: '{}',
        jobExecutionsRolloutConfig: {
          exponentialRate: { baseRatePerMinute: 1, incrementFactor: 2, rateIncreaseCriteria: { numberOfNotifiedThings: 1 } },
        },
      }),
    );
    const times = (await Promise.all(ds.map((d) => d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined, 15_000)))).map((m) => m.at - t0);
    times.sort((a, b) => a - b);
    const perMinute = [0, 0, 0, 0];
    for (const t of times) perMinute[Math.min(3, Math.floor((t + MINUTE_MS * 0.1) / MINUTE_MS))]! += 1;
    // Rate 1 in the first minute, then 2, then 4: 1 + 2 + 4 = 7 things over three minutes.
    expect(perMinute).toEqual([1, 2, 4, 0]);
  });
});
