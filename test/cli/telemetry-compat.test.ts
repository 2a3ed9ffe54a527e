// An older CLI beside newer agents, end to end on a real local hub: messages a newer agent publishes over MQTT
// (fields this version does not know) are stored by the hub and read by `fleetlm telemetry`, `devices` and the console;
// messages of a newer major schema are left out, counted in --json and named in a warning on stderr.
import { CreateThingCommand } from '@aws-sdk/client-iot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JSON_OUTPUTS } from '../../cli/json-output.ts';
import { createConsoleApi } from '../../console/console-api.ts';
import { readLocalProfile } from '../../fleet/profile.ts';
import { newerAgentMessage, nextMajorMessage } from '../helpers/newer-agent-telemetry.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { iotClient, removeDir, startTestHub, TestDevice } from '../local-hub/helpers.ts';
import type { LocalHub } from '../../local-hub/hub.ts';

let hub: LocalHub & { dir: string };
const WARNING =
  'fleetlm: warning: 2 telemetry messages from next-1 use fleetlm/telemetry@2, newer than the fleetlm/telemetry@1 this fleetlm reads; they are left out: upgrade fleetlm';

beforeAll(async () => {
  hub = await startTestHub();
  const iot = iotClient(hub);
  for (const thingName of ['new-1', 'next-1']) await iot.send(new CreateThingCommand({ thingName }));
  iot.destroy();
  const publish = async (thing: string, messages: unknown[]) => {
    const d = await TestDevice.connect(hub, thing, false);
    try {
      // QoS 1: the embedded broker acknowledges once the sink has stored (or rejected) the message.
      for (const m of messages) await d.client.publishAsync(`fleetlm/${thing}/telemetry`, JSON.stringify(m), { qos: 1 });
    } finally {
      await d.close();
    }
  };
  await publish('new-1', [newerAgentMessage('new-1', 1), newerAgentMessage('new-1', 2)]);
  await publish('next-1', [nextMajorMessage('next-1', 1), nextMajorMessage('next-1', 2)]);
}, 60_000);

afterAll(async () => {
  await hub?.stop();
  if (hub) await removeDir(hub.dir);
});

describe('fleetlm telemetry and devices with agents newer than the CLI', () => {
  it('telemetry --json reads the newer agent\'s figures and counts the newer-schema messages it left out', async () => {
    const r = await runCliCaptured(['telemetry', '--local', hub.dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON_OUTPUTS.telemetry.parse(JSON.parse(r.stdout));
    expect(out.messages).toBe(2);
    expect(out.skipped).toEqual({ newerSchema: 2, invalid: 0 });
    expect(out.byDevice).toEqual([expect.objectContaining({ key: 'new-1', messages: 2, requests: 7, firstTokenMsP50: 12.5, tokensPerSecondP50: 40 })]);
    expect(r.stderr.trim()).toBe(WARNING);
  });

  it('devices shows the newer agent\'s device with its figures, and says why the other is missing', async () => {
    const r = await runCliCaptured(['devices', '--local', hub.dir]);
    expect(r.code, r.stderr).toBe(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith('new-1'));
    expect(row).toMatch(/m@1\.0\.0.*\b51\b.*\b40\b.*12\.5/);
    expect(r.stderr.trim()).toBe(WARNING);
  });

  it('the console charts the newer agent\'s figures', async () => {
    const points = await createConsoleApi(readLocalProfile(hub.dir)).telemetry('new-1');
    expect(points).toEqual([1, 2].map((seq) => ({ t: 1_700_000_000_000 + seq * 1000, tokensPerSecond: 40, firstTokenMs: 12.5, rssMb: 150, temperatureC: 51, powerW: null })));
  });
});
