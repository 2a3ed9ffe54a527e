// Fleet indexing on the local hub: SearchIndex through @aws-sdk/client-iot answers each thing's MQTT
// connectivity (connected, timestamp, disconnectReason) and groups, as AWS IoT does once indexing is on.
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SearchIndexCommand, type IoTClient } from '@aws-sdk/client-iot';
import { provisionThings } from '../../local-demo/provision.ts';
import { parseQuery, InvalidQueryError } from '../../local-hub/fleet-index.ts';
import { readConnectivity } from '../../fleet/fleet-inventory.ts';
import { TestDevice, eventually, iotClient, removeDir, startTestHub } from './helpers.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let hub: Awaited<ReturnType<typeof startTestHub>>;
let iot: IoTClient;

beforeAll(async () => {
  hub = await startTestHub();
  iot = iotClient(hub);
  await provisionThings(iot, 'lab', ['pi-1', 'pi-2']);
  await provisionThings(iot, 'jetson', ['jet-1']);
});

afterAll(async () => {
  await hub?.stop();
  await removeDir(hub.dir);
});

async function connectivity(thing: string) {
  const r = await iot.send(new SearchIndexCommand({ indexName: 'AWS_Things', queryString: `thingName:${thing}` }));
  expect(r.things).toHaveLength(1);
  return r.things![0]!.connectivity!;
}

describe('SearchIndex with connectivity on the local hub', () => {
  it('reports a connected device as connected and a never-connected one as not', async () => {
    const before = Date.now();
    const device = await TestDevice.connect(hub, 'pi-1', false);
    try {
      const c = await connectivity('pi-1');
      expect(c.connected).toBe(true);
      expect(Number(c.timestamp)).toBeGreaterThanOrEqual(before - 1000);
      expect((await connectivity('pi-2')).connected).toBe(false);
      const online = await iot.send(new SearchIndexCommand({ queryString: 'connectivity.connected:true' }));
      expect(online.things!.map((t) => t.thingName)).toEqual(['pi-1']);
      const lab = await iot.send(new SearchIndexCommand({ queryString: 'thingGroupNames:lab AND connectivity.connected:false' }));
      expect(lab.things!.map((t) => [t.thingName, t.thingGroupNames])).toEqual([['pi-2', ['lab']]]);
    } finally {
      await device.client.endAsync();
    }
    const c = await eventually(async () => {
      const v = await connectivity('pi-1');
      return v.connected === false ? v : undefined;
    }, 5000, 'pi-1 to show as disconnected');
    expect(c.disconnectReason).toBe('CLIENT_INITIATED_DISCONNECT');
  });

  it('says CONNECTION_LOST when the socket dies without DISCONNECT, and a takeover keeps the thing online', async () => {
    // A device logs in as itself (local-hub/device-credentials.ts).
    const login = { clientId: 'jet-1', username: 'jet-1', password: await hub.issueDeviceSecret('jet-1'), reconnectPeriod: 0 };
    const first = await mqtt.connectAsync(hub.endpoints.mqtt.url, login);
    first.stream.destroy();
    const lost = await eventually(async () => {
      const v = await connectivity('jet-1');
      return v.connected === false ? v : undefined;
    }, 5000, 'jet-1 to show as disconnected');
    expect(lost.disconnectReason).toBe('CONNECTION_LOST');

    // Same client id twice: the broker drops the older session; the newer one is what counts.
    const a = await mqtt.connectAsync(hub.endpoints.mqtt.url, login);
    const b = await mqtt.connectAsync(hub.endpoints.mqtt.url, login);
    await eventually(async () => a.disconnected || !a.connected, 5000, 'the older session to be dropped');
    expect((await connectivity('jet-1')).connected).toBe(true);
    await b.endAsync();
    a.end(true);
  });

  it('reads connectivity per thing through the operator library, and refuses queries it cannot answer', async () => {
    const all = await readConnectivity(iot);
    expect(all.indexed).toBe(true);
    expect([...all.things.keys()]).toEqual(['jet-1', 'pi-1', 'pi-2']);
    expect(all.things.get('pi-2')).toMatchObject({ connected: false, groups: ['lab'] });
    await expect(iot.send(new SearchIndexCommand({ queryString: 'thingName:a OR thingName:b' }))).rejects.toMatchObject({ name: 'InvalidQueryException' });
    expect(() => parseQuery('shadow.reported.x:1')).toThrow(InvalidQueryError);
    expect(parseQuery('*')).toEqual([]);
  });
});
