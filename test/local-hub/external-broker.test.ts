// The hub joined to an external broker (mosquitto) instead of its embedded aedes, with an MQTT 5
// device. mosquitto's ACL does the client-id = thing-name enforcement. Skipped without mosquitto.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { CreateJobCommand, CreateThingCommand, DescribeJobCommand, type IoTClient } from '@aws-sdk/client-iot';
import type { LocalHub } from '../../local-hub/hub.ts';
import { queryTelemetry } from '../../local-hub/telemetry-sink.ts';
import { eventually, iotClient, removeDir, sleep, startTestHub, tempDir } from './helpers.ts';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/opt/homebrew/sbin/mosquitto'].find((p) => existsSync(p));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe.skipIf(!MOSQUITTO)('local hub with an external broker (mosquitto)', () => {
  let dir: string;
  let broker: ChildProcess;
  let hub: LocalHub & { dir: string };
  let iot: IoTClient;
  let url: string;

  beforeAll(async () => {
    dir = await tempDir();
    const port = await freePort();
    url = `mqtt://127.0.0.1:${port}`;
    await writeFile(
      path.join(dir, 'acl'),
      [
        'user fleetlm-hub',
        'topic readwrite $aws/things/#',
        'topic read fleetlm/#',
        '',
        'pattern readwrite $aws/things/%c/jobs/#',
        'pattern write fleetlm/%c/telemetry',
        '',
      ].join('\n'),
    );
    await writeFile(
      path.join(dir, 'mosquitto.conf'),
      [`listener ${port} 127.0.0.1`, 'allow_anonymous true', `acl_file ${path.join(dir, 'acl')}`, 'persistence false', 'log_type error', ...(process.getuid?.() === 0 ? ['user root'] : []), ''].join('\n'),
    );
    // As root, mosquitto would otherwise drop to user "mosquitto", who cannot read the 0700 temp dir.
    broker = spawn(MOSQUITTO!, ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'inherit'] });
    await eventually(async () => {
      try {
        const probe = await mqtt.connectAsync(url, { clientId: 'probe', reconnectPeriod: 0, connectTimeout: 500 });
        await probe.endAsync(true);
        return true;
      } catch {
        return false;
      }
    });
    hub = await startTestHub({ dir: path.join(dir, 'hub'), externalBroker: { url, username: 'fleetlm-hub' } });
    iot = iotClient(hub);
  });

  afterAll(async () => {
    iot?.destroy();
    await hub?.stop();
    broker?.kill('SIGTERM');
    if (dir) await removeDir(dir);
  });

  it('serves the Jobs API and telemetry to an MQTT 5 device through the external broker', async () => {
    expect(hub.endpoints.mqtt.url).toBe(url);
    await iot.send(new CreateThingCommand({ thingName: 'm5-thing' }));
    await iot.send(new CreateThingCommand({ thingName: 'm5-other' }));
    await iot.send(
      new CreateJobCommand({ jobId: 'm5-job', targets: ['arn:aws:iot:us-east-1:123456789012:thing/m5-thing', 'arn:aws:iot:us-east-1:123456789012:thing/m5-other'], document: '{"v":5}' }),
    );
    const device: MqttClient = await mqtt.connectAsync(url, { clientId: 'm5-thing', protocolVersion: 5, reconnectPeriod: 0 });
    const got: Array<{ topic: string; body: Record<string, unknown> }> = [];
    device.on('message', (topic, payload) => got.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }));
    await device.subscribeAsync('$aws/things/m5-thing/jobs/#', { qos: 1 });
    await device.publishAsync('$aws/things/m5-thing/jobs/start-next', JSON.stringify({ clientToken: 'a' }), { qos: 1 });
    const started = await eventually(async () => got.find((m) => m.topic.endsWith('start-next/accepted')));
    expect(started.body.execution).toMatchObject({ jobId: 'm5-job', status: 'IN_PROGRESS', jobDocument: { v: 5 } });
    // The broker's ACL drops a publish on another thing's topics.
    await device.publishAsync('$aws/things/m5-other/jobs/m5-job/update', JSON.stringify({ status: 'FAILED' }), { qos: 1 }).catch(() => undefined);
    await device.publishAsync('$aws/things/m5-thing/jobs/m5-job/update', JSON.stringify({ status: 'SUCCEEDED', clientToken: 'b' }), { qos: 1 });
    await eventually(async () => got.find((m) => m.topic.endsWith('m5-job/update/accepted')));
    await device.publishAsync(
      'fleetlm/m5-thing/telemetry',
      JSON.stringify({
        schema: 'fleetlm/telemetry@1',
        thingName: 'm5-thing',
        timestamp: Date.now(),
        seq: 1,
        event: 'startup',
        model: null,
        inference: { requests: 0, firstTokenMs: null, tokensPerSecond: null },
        system: { rssBytes: 1, cpuLoad1m: 0, temperatureC: null, powerW: null, energyJ: 0, energyEstimated: true },
        dropped: 0,
      }),
      { qos: 1 },
    );
    await device.endAsync();
    await sleep(200);
    const job = (await iot.send(new DescribeJobCommand({ jobId: 'm5-job' }))).job;
    expect(job?.jobProcessDetails).toMatchObject({ numberOfSucceededThings: 1, numberOfQueuedThings: 1, numberOfFailedThings: 0 });
    expect((await queryTelemetry(hub.endpoints.telemetryDir)).map((r) => r.thingName)).toEqual(['m5-thing']);
  });
});
