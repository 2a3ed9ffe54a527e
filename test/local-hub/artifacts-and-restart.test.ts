// Presigned-URL substitution that downloads through the hub's S3 store, telemetry storage, the AWS
// IoT Device SDK v2 (MQTT 3.1.1) client against the Jobs API, and state surviving a hub restart.
import { afterAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { mqtt as crtMqtt, iotjobs } from 'aws-iot-device-sdk-v2';
import {
  CreateJobCommand,
  CreateThingCommand,
  DescribeJobCommand,
  DescribeJobExecutionCommand,
  GetJobDocumentCommand,
  ListThingsCommand,
} from '@aws-sdk/client-iot';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { queryTelemetry } from '../../local-hub/telemetry-sink.ts';
import type { Telemetry } from '../../contracts/telemetry.ts';
import { TestDevice, eventually, iotClient, removeDir, s3Client, startTestHub, tempDir } from './helpers.ts';

const ACCOUNT = 'arn:aws:iot:us-east-1:123456789012';
const ROLE = 'arn:aws:iam::000000000000:role/fleetlm-local-presign';

function telemetry(thingName: string, seq: number): Telemetry {
  return {
    schema: 'fleetlm/telemetry@1',
    thingName,
    timestamp: 1_700_000_000_000 + seq,
    seq,
    event: 'periodic',
    model: { modelId: 'tiny', version: '1.0.0' },
    inference: { requests: seq, firstTokenMs: { p50: 10, p95: 20 }, tokensPerSecond: null },
    system: { rssBytes: 1e6, cpuLoad1m: 0.5, temperatureC: null, powerW: null, energyJ: 1, energyEstimated: true },
    dropped: 0,
  };
}

describe('local hub: artifacts, telemetry, device SDK, restart', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('substitutes presigned URLs when a device reads the document, and they download (with Range)', async () => {
    const hub = await startTestHub();
    cleanups.push(async () => {
      await hub.stop();
      await removeDir(hub.dir);
    });
    const iot = iotClient(hub);
    const s3 = s3Client(hub);
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
    await s3.send(new PutObjectCommand({ Bucket: hub.endpoints.s3.bucket, Key: 'models/tiny/1.0.0/model.onnx', Body: bytes }));
    const stored = await s3.send(new GetObjectCommand({ Bucket: hub.endpoints.s3.bucket, Key: 'models/tiny/1.0.0/model.onnx' }));
    expect(Buffer.from(await stored.Body!.transformToByteArray()).equals(bytes)).toBe(true);

    await iot.send(new CreateThingCommand({ thingName: 'dl-1' }));
    const placeholder = '${aws:iot:s3-presigned-url:https://fleetlm-artifacts.s3.us-east-1.amazonaws.com/models/tiny/1.0.0/model.onnx}';
    const pathStyle = '${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/fleetlm-artifacts/models/tiny/1.0.0/model.onnx}';
    // The form the developer guide documents today (create-manage-jobs.html#create-manage-jobs-presigned-URLs).
    const v2 = '${aws:iot:s3-presigned-url-v2:https://s3.us-east-1.amazonaws.com/fleetlm-artifacts/models/tiny/1.0.0/model.onnx}';
    const document = JSON.stringify({ artifacts: [{ url: placeholder }, { url: pathStyle }, { url: v2 }] });
    await iot.send(
      new CreateJobCommand({
        jobId: 'dl-job',
        targets: [`${ACCOUNT}:thing/dl-1`],
        document,
        presignedUrlConfig: { roleArn: ROLE, expiresInSec: 600 },
      }),
    );
    // The stored document keeps its placeholders, as in AWS.
    expect((await iot.send(new GetJobDocumentCommand({ jobId: 'dl-job' }))).document).toBe(document);

    const d = await TestDevice.connect(hub, 'dl-1');
    const r = await d.request('start-next');
    const doc = (r.payload.execution as { jobDocument: { artifacts: Array<{ url: string }> } }).jobDocument;
    for (const a of doc.artifacts) {
      expect(a.url.startsWith(`${hub.endpoints.s3.endpoint}/fleetlm-artifacts/models/tiny/1.0.0/model.onnx?`)).toBe(true);
      expect(a.url).toMatch(/X-Amz-Signature=[0-9a-f]{64}/);
      expect(a.url).toMatch(/X-Amz-Expires=600/);
      const res = await fetch(a.url);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    }
    const part = await fetch(doc.artifacts[0]!.url, { headers: { Range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(100, 200))).toBe(true);
    // Without a valid signature the store refuses the object.
    const unsigned = await fetch(`${hub.endpoints.s3.endpoint}/fleetlm-artifacts/models/tiny/1.0.0/model.onnx`);
    expect(unsigned.status).toBe(403);
    await d.close();
    iot.destroy();
    s3.destroy();
  });

  it('works with the AWS IoT Device SDK v2 jobs client over MQTT 3.1.1', async () => {
    const hub = await startTestHub();
    cleanups.push(async () => {
      await hub.stop();
      await removeDir(hub.dir);
    });
    const iot = iotClient(hub);
    await iot.send(new CreateThingCommand({ thingName: 'sdk-thing' }));
    await iot.send(new CreateJobCommand({ jobId: 'sdk-job', targets: [`${ACCOUNT}:thing/sdk-thing`], document: '{"hello":"sdk"}' }));

    const client = new crtMqtt.MqttClient();
    const connection = client.new_connection({
      client_id: 'sdk-thing',
      // The device SDK's plain MQTT 3.1.1 connection carries the device login the hub requires.
      username: 'sdk-thing',
      password: await hub.issueDeviceSecret('sdk-thing'),
      host_name: hub.endpoints.mqtt.host,
      port: hub.endpoints.mqtt.port,
      clean_session: true,
      keep_alive: 30,
      socket_options: new (await import('aws-iot-device-sdk-v2')).io.SocketOptions(),
    } as never);
    await connection.connect();
    try {
      const jobs = new iotjobs.IotJobsClient(connection);
      const started = new Promise<iotjobs.model.StartNextJobExecutionResponse>((resolve, reject) => {
        void jobs.subscribeToStartNextPendingJobExecutionAccepted({ thingName: 'sdk-thing' }, crtMqtt.QoS.AtLeastOnce, (err, res) =>
          err ? reject(err) : resolve(res!),
        );
      });
      const updated = new Promise<iotjobs.model.UpdateJobExecutionResponse>((resolve, reject) => {
        void jobs.subscribeToUpdateJobExecutionAccepted({ thingName: 'sdk-thing', jobId: 'sdk-job' }, crtMqtt.QoS.AtLeastOnce, (err, res) =>
          err ? reject(err) : resolve(res!),
        );
      });
      await new Promise((r) => setTimeout(r, 200)); // SUBACKs
      await jobs.publishStartNextPendingJobExecution({ thingName: 'sdk-thing', clientToken: 'sdk-1', stepTimeoutInMinutes: 10 }, crtMqtt.QoS.AtLeastOnce);
      const s = await started;
      expect(s.clientToken).toBe('sdk-1');
      expect(s.execution?.jobId).toBe('sdk-job');
      expect(s.execution?.jobDocument).toEqual({ hello: 'sdk' });
      await jobs.publishUpdateJobExecution(
        { thingName: 'sdk-thing', jobId: 'sdk-job', status: iotjobs.model.JobStatus.SUCCEEDED, expectedVersion: s.execution!.versionNumber!, includeJobExecutionState: true },
        crtMqtt.QoS.AtLeastOnce,
      );
      const u = await updated;
      expect(u.executionState?.status).toBe('SUCCEEDED');
    } finally {
      await connection.disconnect();
    }
    const job = await eventually(async () => {
      const j = (await iot.send(new DescribeJobCommand({ jobId: 'sdk-job' }))).job;
      return j?.status === 'COMPLETED' ? j : undefined;
    });
    expect(job.jobProcessDetails?.numberOfSucceededThings).toBe(1);
    iot.destroy();
  });

  it('keeps things, jobs, executions, objects and telemetry across a restart', async () => {
    const dir = await tempDir();
    cleanups.push(() => removeDir(dir));
    let hub = await startTestHub({ dir });
    let iot = iotClient(hub);
    await iot.send(new CreateThingCommand({ thingName: 'persist-1' }));
    await iot.send(new CreateJobCommand({ jobId: 'persist-job', targets: [`${ACCOUNT}:thing/persist-1`], document: '{"keep":true}' }));
    const s3 = s3Client(hub);
    await s3.send(new PutObjectCommand({ Bucket: hub.endpoints.s3.bucket, Key: 'kept.txt', Body: 'still here' }));
    s3.destroy();
    let d = await TestDevice.connect(hub, 'persist-1');
    await d.request('start-next', { statusDetails: { step: 'downloading' } });
    for (let seq = 0; seq < 3; seq++) await d.client.publishAsync('fleetlm/persist-1/telemetry', JSON.stringify(telemetry('persist-1', seq)), { qos: 1 });
    await d.client.publishAsync('fleetlm/persist-1/telemetry', '{"schema":"nope"}', { qos: 1 });
    await d.client.publishAsync('fleetlm/persist-1/telemetry', JSON.stringify(telemetry('someone-else', 9)), { qos: 1 });
    await d.close();
    const before = structuredClone(hub.endpoints);
    await hub.stop();
    iot.destroy();

    // Same ports, as a broker restart under running agents looks.
    hub = await startTestHub({
      dir,
      mqttPort: before.mqtt.port,
      httpPort: Number(new URL(before.iotEndpoint).port),
      s3Port: Number(new URL(before.s3.endpoint).port),
    });
    cleanups.push(() => hub.stop());
    expect(hub.endpoints.mqtt.url).toBe(before.mqtt.url);
    iot = iotClient(hub);
    expect((await iot.send(new ListThingsCommand({}))).things?.map((t) => t.thingName)).toEqual(['persist-1']);
    const exec = await iot.send(new DescribeJobExecutionCommand({ jobId: 'persist-job', thingName: 'persist-1' }));
    expect(exec.execution).toMatchObject({ status: 'IN_PROGRESS', versionNumber: 2, statusDetails: { detailsMap: { step: 'downloading' } } });
    d = await TestDevice.connect(hub, 'persist-1');
    const pending = await d.request('get');
    expect((pending.payload.inProgressJobs as Array<{ jobId: string }>).map((j) => j.jobId)).toEqual(['persist-job']);
    expect((await d.request('persist-job/update', { status: 'SUCCEEDED', expectedVersion: 2 })).outcome).toBe('accepted');
    await d.close();
    const job = (await iot.send(new DescribeJobCommand({ jobId: 'persist-job' }))).job;
    expect(job?.status).toBe('COMPLETED');
    const s3b = s3Client(hub);
    const kept = await s3b.send(new GetObjectCommand({ Bucket: hub.endpoints.s3.bucket, Key: 'kept.txt' }));
    expect(await kept.Body!.transformToString()).toBe('still here');
    s3b.destroy();
    iot.destroy();

    const records = await queryTelemetry(hub.endpoints.telemetryDir, { thingName: 'persist-1' });
    expect(records.map((r) => r.telemetry.seq)).toEqual([0, 1, 2]);
    expect(await queryTelemetry(hub.endpoints.telemetryDir, { thingName: 'persist-1', limit: 1 })).toHaveLength(1);
    const rejected = (await readFile(path.join(dir, 'telemetry-rejected.jsonl'), 'utf8')).trim().split('\n');
    expect(rejected).toHaveLength(2);
    expect(JSON.parse(rejected[1]!).reason).toMatch(/does not match/);
  });
});
