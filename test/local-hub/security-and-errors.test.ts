// Isolation between things (client id = thing name, own topics only) and AWS-style rejections of
// malformed requests on both the MQTT Jobs API and the HTTP control plane.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import mqtt from 'mqtt';
import {
  CreateJobCommand,
  CreateThingCommand,
  DescribeJobCommand,
  DescribeJobExecutionCommand,
  IoTClient,
  IoTServiceException,
} from '@aws-sdk/client-iot';
import type { LocalHub } from '../../local-hub/hub.ts';
import { TestDevice, iotClient, removeDir, sleep, startTestHub } from './helpers.ts';

const ACCOUNT = 'arn:aws:iot:us-east-1:123456789012';

describe('local hub: isolation and malformed requests', () => {
  let hub: LocalHub & { dir: string };
  let iot: IoTClient;
  let alice: TestDevice;
  let bob: TestDevice;

  beforeAll(async () => {
    hub = await startTestHub();
    iot = iotClient(hub);
    for (const t of ['alice', 'bob']) await iot.send(new CreateThingCommand({ thingName: t }));
    alice = await TestDevice.connect(hub, 'alice');
    bob = await TestDevice.connect(hub, 'bob');
    await iot.send(new CreateJobCommand({ jobId: 'iso-job', targets: [`${ACCOUNT}:thing/alice`, `${ACCOUNT}:thing/bob`], document: '{"a":1}' }));
    await bob.waitFor(`${bob.base}/notify-next`, (p) => p.execution !== undefined);
    await bob.request('start-next');
  });

  afterAll(async () => {
    await alice?.close();
    await bob?.close();
    iot?.destroy();
    await hub?.stop();
    if (hub) await removeDir(hub.dir);
  });

  it('refuses a client id that is not a registered thing', async () => {
    await expect(mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: 'mallory', reconnectPeriod: 0 })).rejects.toThrow(/Not authorized|5/i);
  });

  it('does not let one thing subscribe to another thing\'s topics', async () => {
    const eve = await TestDevice.connect(hub, 'alice', false).catch(() => undefined);
    // Connecting a second "alice" takes over the session; reconnect the original below.
    await eve?.close();
    const watcher = await mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: 'alice', reconnectPeriod: 0 });
    // mqtt.js rejects a SUBSCRIBE whose SUBACK carries 0x80 (failure) for the filter.
    for (const filter of ['$aws/things/bob/jobs/#', '$aws/things/+/jobs/#', '#', '$aws/things/bob/jobs/iso-job/get/accepted', 'fleetlm/bob/telemetry', 'fleetlm/+/telemetry']) {
      await expect(watcher.subscribeAsync(filter, { qos: 1 }), filter).rejects.toThrow(/Subscribe error/);
    }
    const granted = await watcher.subscribeAsync(['fleetlm/alice/#', '$aws/things/alice/jobs/+/get/accepted'], { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1, 1]);
    await watcher.endAsync(true);
    alice = await TestDevice.connect(hub, 'alice');
  });

  it('disconnects a thing that publishes on another thing\'s jobs topics, leaving that execution untouched', async () => {
    const before = await iot.send(new DescribeJobExecutionCommand({ jobId: 'iso-job', thingName: 'bob' }));
    const intruder = await mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: 'alice', reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => intruder.once('close', () => resolve()));
    intruder.publish('$aws/things/bob/jobs/iso-job/update', JSON.stringify({ status: 'FAILED' }), { qos: 1 });
    intruder.publish('$aws/things/bob/jobs/get', '{}', { qos: 1 });
    await closed;
    await sleep(100);
    const after = await iot.send(new DescribeJobExecutionCommand({ jobId: 'iso-job', thingName: 'bob' }));
    expect(after.execution).toMatchObject({ status: 'IN_PROGRESS', versionNumber: before.execution!.versionNumber });
    intruder.end(true);
    alice = await TestDevice.connect(hub, 'alice');
  });

  it('disconnects a thing that publishes on its own reserved response topics', async () => {
    const spoofer = await mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: 'alice', reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => spoofer.once('close', () => resolve()));
    spoofer.publish('$aws/things/alice/jobs/notify-next', '{}', { qos: 1 });
    await closed;
    spoofer.end(true);
    alice = await TestDevice.connect(hub, 'alice');
  });

  it('answers bad JSON with InvalidJson', async () => {
    const r = await alice.request('start-next', '{"clientToken": ');
    expect(r).toMatchObject({ outcome: 'rejected', payload: { code: 'InvalidJson' } });
    expect(typeof r.payload.message).toBe('string');
    expect(typeof r.payload.timestamp).toBe('number');
  });

  it('answers unknown fields, bad statuses and oversized statusDetails with InvalidRequest', async () => {
    const unknown = await alice.request('get', { bogus: true });
    expect(unknown.payload).toMatchObject({ code: 'InvalidRequest' });
    expect(unknown.payload.message).toMatch(/bogus/);
    const status = await alice.request('iso-job/update', { status: 'DONE' });
    expect(status.payload.code).toBe('InvalidRequest');
    const eleven = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v']));
    const tooMany = await alice.request('iso-job/update', { status: 'IN_PROGRESS', statusDetails: eleven });
    expect(tooMany.payload).toMatchObject({ code: 'InvalidRequest' });
    expect(tooMany.payload.message).toMatch(/10/);
    const longValue = await alice.request('iso-job/update', { status: 'IN_PROGRESS', statusDetails: { k: 'x'.repeat(1025) } });
    expect(longValue.payload.code).toBe('InvalidRequest');
    const badKey = await alice.request('start-next', { statusDetails: { 'bad key': 'v' } });
    expect(badKey.payload.code).toBe('InvalidRequest');
    const badTimeout = await alice.request('start-next', { stepTimeoutInMinutes: 0 });
    expect(badTimeout.payload.code).toBe('InvalidRequest');
    // Nothing above changed alice's execution.
    const exec = await iot.send(new DescribeJobExecutionCommand({ jobId: 'iso-job', thingName: 'alice' }));
    expect(exec.execution).toMatchObject({ status: 'QUEUED', versionNumber: 1 });
  });

  it('answers an unknown job with ResourceNotFound and an unknown topic with InvalidTopic', async () => {
    expect((await alice.request('no-such-job/update', { status: 'SUCCEEDED' })).payload.code).toBe('ResourceNotFound');
    expect((await alice.request('no-such-job/get')).payload.code).toBe('ResourceNotFound');
    const r = await alice.request('iso-job/explode', {});
    expect(r.payload.code).toBe('InvalidTopic');
  });

  it('still serves requests after all of the above', async () => {
    const r = await alice.request('iso-job/get', { includeJobDocument: true });
    expect(r.outcome).toBe('accepted');
    expect(r.payload.execution).toMatchObject({ jobId: 'iso-job', thingName: 'alice', jobDocument: { a: 1 } });
  });

  it('refuses at CreateJob a document deeper or larger than the limits, stores nothing, and later jobs still reach the device', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const tooDeep = await iot.send(new CreateJobCommand({ jobId: 'deep-doc', targets: [`${ACCOUNT}:thing/alice`], document: deep })).catch((e: unknown) => e);
    expect((tooDeep as IoTServiceException).name).toBe('InvalidRequestException');
    expect((tooDeep as IoTServiceException).message).toMatch(/deeper than 64/);
    // Multi-byte characters: under 32,768 characters but over 32 KB of UTF-8.
    const big = JSON.stringify({ s: 'é'.repeat(17_000) });
    const tooBig = await iot.send(new CreateJobCommand({ jobId: 'big-doc', targets: [`${ACCOUNT}:thing/alice`], document: big })).catch((e: unknown) => e);
    expect((tooBig as IoTServiceException).message).toMatch(/at most 32768 bytes/);
    for (const id of ['deep-doc', 'big-doc']) {
      expect(((await iot.send(new DescribeJobCommand({ jobId: id })).catch((e: unknown) => e)) as IoTServiceException).name).toBe('ResourceNotFoundException');
    }
    // A string holding brackets is not nesting.
    await iot.send(new CreateJobCommand({ jobId: 'brackets-in-string', targets: [`${ACCOUNT}:thing/alice`], document: JSON.stringify({ s: '['.repeat(200) }) }));
    expect((await iot.send(new DescribeJobCommand({ jobId: 'brackets-in-string' }))).job?.jobId).toBe('brackets-in-string');
  });

  it('returns control-plane errors as AWS does (x-amzn-ErrorType, message)', async () => {
    const err = await iot.send(new DescribeJobCommand({ jobId: 'missing' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IoTServiceException);
    expect((err as IoTServiceException).name).toBe('ResourceNotFoundException');
    expect((err as IoTServiceException).$metadata.httpStatusCode).toBe(404);
    const dup = await iot.send(new CreateJobCommand({ jobId: 'iso-job', targets: [`${ACCOUNT}:thing/alice`], document: '{}' })).catch((e: unknown) => e);
    expect((dup as IoTServiceException).name).toBe('ResourceAlreadyExistsException');
    const badDoc = await iot.send(new CreateJobCommand({ jobId: 'bad-doc', targets: [`${ACCOUNT}:thing/alice`], document: '{not json' })).catch((e: unknown) => e);
    expect((badDoc as IoTServiceException).name).toBe('InvalidRequestException');
    expect((badDoc as IoTServiceException).message).toMatch(/JSON/);
    const badTarget = await iot.send(new CreateJobCommand({ jobId: 'bad-target', targets: [`${ACCOUNT}:thing/nobody`], document: '{}' })).catch((e: unknown) => e);
    expect((badTarget as IoTServiceException).name).toBe('ResourceNotFoundException');
    const badRate = await iot
      .send(new CreateJobCommand({ jobId: 'bad-rate', targets: [`${ACCOUNT}:thing/alice`], document: '{}', jobExecutionsRolloutConfig: { maximumPerMinute: 0 } }))
      .catch((e: unknown) => e);
    expect((badRate as IoTServiceException).name).toBe('InvalidRequestException');

    // A body that is not JSON, signed properly: a build-step middleware swaps the body before SigV4.
    const mangled = iotClient(hub);
    mangled.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body: unknown; headers: Record<string, string> };
        request.body = '{oops';
        request.headers['content-length'] = '5';
        return next(args);
      },
      { step: 'build' },
    );
    const bad = await mangled.send(new CreateJobCommand({ jobId: 'mangled', targets: [`${ACCOUNT}:thing/alice`], document: '{}' })).catch((e: unknown) => e);
    expect((bad as IoTServiceException).name).toBe('InvalidRequestException');
    expect((bad as IoTServiceException).$metadata.httpStatusCode).toBe(400);
    expect((bad as IoTServiceException).message).toMatch(/JSON/);
    mangled.destroy();

    // A captured, validly signed CreateJob replayed with another body and the original body's hash in
    // x-amz-content-sha256: the hub hashes the body itself, so the signature no longer holds.
    const replayed = iotClient(hub);
    replayed.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body: string; headers: Record<string, string> };
        const original = request.body;
        request.headers['x-amz-content-sha256'] = createHash('sha256').update(original).digest('hex');
        request.body = original.replace('thing/alice', 'thing/bob');
        expect(request.body).not.toBe(original);
        request.headers['content-length'] = String(Buffer.byteLength(request.body));
        return next(args);
      },
      { step: 'deserialize' },
    );
    const forgedBody = await replayed
      .send(new CreateJobCommand({ jobId: 'replay-target', targets: [`${ACCOUNT}:thing/alice`], document: '{}' }))
      .catch((e: unknown) => e);
    expect((forgedBody as IoTServiceException).name).toBe('InvalidSignatureException');
    expect((forgedBody as IoTServiceException).message).toMatch(/x-amz-content-sha256/);
    replayed.destroy();
    const missing = await iot.send(new DescribeJobCommand({ jobId: 'replay-target' })).catch((e: unknown) => e);
    expect((missing as IoTServiceException).name).toBe('ResourceNotFoundException');

    const unsigned = await fetch(`${hub.endpoints.iotEndpoint}/jobs/iso-job`);
    expect(unsigned.status).toBe(403);
    expect(unsigned.headers.get('x-amzn-errortype')).toBe('UnrecognizedClientException');
    expect(await unsigned.json()).toMatchObject({ message: expect.any(String) });

    const stranger = new IoTClient({ region: 'us-east-1', endpoint: hub.endpoints.iotEndpoint, credentials: { accessKeyId: 'AKIAOTHER', secretAccessKey: 'x' }, maxAttempts: 1 });
    const denied = await stranger.send(new DescribeJobCommand({ jobId: 'iso-job' })).catch((e: unknown) => e);
    expect((denied as IoTServiceException).$metadata.httpStatusCode).toBe(403);
    stranger.destroy();
    const wrongSecret = new IoTClient({
      region: 'us-east-1',
      endpoint: hub.endpoints.iotEndpoint,
      credentials: { accessKeyId: hub.endpoints.credentials.accessKeyId, secretAccessKey: 'not-the-secret' },
      maxAttempts: 1,
    });
    const forged = await wrongSecret.send(new DescribeJobCommand({ jobId: 'iso-job' })).catch((e: unknown) => e);
    expect((forged as IoTServiceException).name).toBe('InvalidSignatureException');
    wrongSecret.destroy();
  });
});
