// The agent's IoT Jobs client against the local hub over real MQTT (mqtt.js to aedes), with replies and
// notifications delivered out of order the way a loaded broker delivers them.
import { CreateJobCommand, CreateThingCommand, DescribeJobExecutionCommand, IoTClient } from '@aws-sdk/client-iot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobsClient } from '../../edge-agent/jobs-client.ts';
import { createLogger } from '../../edge-agent/log.ts';
import { MqttConnection } from '../../edge-agent/mqtt-connection.ts';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { DelayingTransport, type DelayRule } from './delaying-transport.ts';
import { eventually, sleep, tempDir } from './agent-fixture.ts';
import { writeDeviceSecretFile } from '../../local-hub/device-credentials.ts';
import path from 'node:path';

/** Issues `thing`'s device secret on `hub` and writes it where the connection reads it. */
async function devicePasswordFile(hub: LocalHub, thing: string): Promise<string> {
  const file = path.join(await tempDir('fleetlm-jobs-client-secret-'), 'mqtt-password');
  await writeDeviceSecretFile(file, await hub.issueDeviceSecret(thing));
  return file;
}

let hub: LocalHub;
let iot: IoTClient;

beforeAll(async () => {
  hub = await startHub({ dir: await tempDir('fleetlm-jobs-client-hub-') });
  iot = new IoTClient({ region: hub.endpoints.region, endpoint: hub.endpoints.iotEndpoint, credentials: hub.endpoints.credentials, maxAttempts: 1 });
});

afterAll(async () => {
  iot?.destroy();
  await hub?.stop();
});

async function connect(thingName: string, rule: DelayRule) {
  const { thingArn } = await iot.send(new CreateThingCommand({ thingName }));
  const warnings: Array<Record<string, unknown>> = [];
  const log = createLogger('warn', (line) => warnings.push(JSON.parse(line) as Record<string, unknown>));
  const inner = new MqttConnection({
    clientId: thingName,
    passwordFile: await devicePasswordFile(hub, thingName),
    host: hub.endpoints.mqtt.host,
    port: hub.endpoints.mqtt.port,
    keepAliveSec: 30,
    reconnectMinMs: 200,
    reconnectMaxMs: 1000,
    requestTimeoutMs: 5000,
    log,
  });
  const transport = new DelayingTransport(inner, rule);
  const jobs = new JobsClient(transport, thingName, log, 5000);
  await jobs.init();
  transport.start();
  await eventually(async () => transport.connected, 10_000, 'MQTT connection');
  return { transport, jobs, warnings, thingArn: thingArn! };
}

async function serviceVersion(jobId: string, thingName: string): Promise<number> {
  const r = await iot.send(new DescribeJobExecutionCommand({ jobId, thingName }));
  return Number(r.execution?.versionNumber);
}

describe('jobs client', () => {
  it('keeps expectedVersion right when older describe replies and notify-next land after newer update replies', async () => {
    const thing = 'jc-order-1';
    const jobId = 'jc-order-job-1';
    // Hold back describe replies and notify-next: each carries the versionNumber of when it was made.
    const { transport, jobs, warnings, thingArn } = await connect(thing, (topic) =>
      topic.endsWith(`/jobs/${jobId}/get/accepted`) || topic.endsWith('/jobs/notify-next') ? 700 : 0,
    );
    const notified: Array<string | null> = [];
    jobs.setNotifyListener((e) => notified.push(e?.jobId ?? null));
    try {
      await iot.send(new CreateJobCommand({ jobId, targets: [thingArn], document: '{"op":"x"}' }));
      const started = await jobs.startNext({ step: 'starting' }, 10);
      expect(started?.jobId).toBe(jobId);
      // A describe (the agent asks one when a notification names another job) goes out with the burst.
      const described = jobs.describe(jobId);
      const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => jobs.update(jobId, 'IN_PROGRESS', { step: 'downloading', progress: `${i * 10}%` }, 10)));
      expect(burst.every((r) => r.ok)).toBe(true);
      // Now the held, older messages arrive (notify-next from job creation says versionNumber 1, QUEUED).
      await described;
      await eventually(async () => notified.length > 0, 5000, 'the held notify-next');
      expect(jobs.trackedVersion(jobId)).toBe(await serviceVersion(jobId, thing));
      const after = await Promise.all([
        jobs.update(jobId, 'IN_PROGRESS', { step: 'verifying' }, 10),
        jobs.update(jobId, 'IN_PROGRESS', { step: 'health-checking' }, 10),
        jobs.update(jobId, 'SUCCEEDED', { step: 'done' }),
      ]);
      expect(after.map((r) => r.ok)).toEqual([true, true, true]);
      expect(transport.held.length).toBeGreaterThanOrEqual(2);
      // No update needed a VersionMismatch round trip: the tracked version never went backwards.
      expect(warnings.filter((w) => w.msg === 'expectedVersion was stale; refreshing it')).toEqual([]);
      expect(jobs.sentTerminal(jobId)).toBe('SUCCEEDED');
      const final = await iot.send(new DescribeJobExecutionCommand({ jobId, thingName: thing }));
      expect(final.execution?.status).toBe('SUCCEEDED');
      // created(1), start-next(2), six progress updates, two more and the final one.
      expect(final.execution?.versionNumber).toBe(11);
    } finally {
      await transport.stop();
    }
  });

  it('restarts the step timer with every update that carries stepTimeoutInMinutes', async () => {
    // A hub whose minute lasts 1 s: a 1-minute step timeout expires 1 s after the last refresh. (At 300 ms,
    // one slow MQTT round trip on a loaded CI machine let the timer expire between two refreshes.)
    const fast = await startHub({ dir: await tempDir('fleetlm-jobs-client-fast-hub-'), clock: { minuteMs: 1000 } });
    const iotFast = new IoTClient({ region: fast.endpoints.region, endpoint: fast.endpoints.iotEndpoint, credentials: fast.endpoints.credentials, maxAttempts: 1 });
    const thing = 'jc-step-1';
    const jobId = 'jc-step-job-1';
    const { thingArn } = await iotFast.send(new CreateThingCommand({ thingName: thing }));
    const log = createLogger('error', () => {});
    const transport = new MqttConnection({ clientId: thing, passwordFile: await devicePasswordFile(fast, thing), host: fast.endpoints.mqtt.host, port: fast.endpoints.mqtt.port, keepAliveSec: 30, reconnectMinMs: 200, reconnectMaxMs: 1000, requestTimeoutMs: 5000, log });
    const jobs = new JobsClient(transport, thing, log, 5000);
    const status = async () => (await iotFast.send(new DescribeJobExecutionCommand({ jobId, thingName: thing }))).execution?.status;
    try {
      await jobs.init();
      transport.start();
      await eventually(async () => transport.connected, 10_000, 'MQTT connection');
      await iotFast.send(new CreateJobCommand({ jobId, targets: [thingArn!], document: '{"op":"x"}' }));
      expect((await jobs.startNext(undefined, 1))?.status).toBe('IN_PROGRESS');
      // Refreshed every 100 ms for 1.6 s: longer than the timeout, so without the restarts it would have expired.
      for (let i = 0; i < 16; i++) {
        expect((await jobs.update(jobId, 'IN_PROGRESS', { step: 'downloading', progress: `${i}` }, 1)).ok).toBe(true);
        await sleep(100);
      }
      expect(await status()).toBe('IN_PROGRESS');
      // Silence: the service times the execution out, and a late update is refused.
      await eventually(async () => (await status()) === 'TIMED_OUT', 5000, 'the step timer to expire', 50);
      expect(await jobs.update(jobId, 'IN_PROGRESS', { step: 'late' }, 1)).toMatchObject({ ok: false, code: 'InvalidStateTransition' });
      // The service's own range check (1-10080 or -1) is reported, not thrown.
      expect(await jobs.update(jobId, 'IN_PROGRESS', { step: 'x' }, 0)).toMatchObject({ ok: false, code: 'InvalidRequest' });
    } finally {
      await transport.stop();
      iotFast.destroy();
      await fast.stop();
    }
  });
});
