// Durability under a hard kill: whatever the hub acknowledged (an accepted job update, a PUBACKed
// telemetry message, a 200 from CreateJob) is still there after SIGKILL and a restart on the same dir.
import { issueDeviceSecret } from '../../local-hub/device-credentials.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateJobCommand, CreateThingCommand, DescribeJobExecutionCommand, GetJobDocumentCommand } from '@aws-sdk/client-iot';
import type { HubEndpoints, LocalHub } from '../../local-hub/hub.ts';
import { queryTelemetry } from '../../local-hub/telemetry-sink.ts';
import { TestDevice, iotClient, removeDir, startTestHub, tempDir } from './helpers.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/fleetlm.js');

describe('local hub: crash recovery', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('keeps everything it acknowledged across SIGKILL', async () => {
    const dir = await tempDir();
    cleanups.push(() => removeDir(dir));
    const child = spawn(process.execPath, [BIN, 'local', 'up', '--dir', dir, '--json'], {
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    const endpoints = await new Promise<HubEndpoints>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('hub did not start')), 30_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        try {
          resolve(JSON.parse(out) as HubEndpoints);
          clearTimeout(timer);
        } catch {
          // incomplete
        }
      });
    });
    // The hub runs in another process; its device secrets live in its directory.
    const remote = { endpoints, issueDeviceSecret: (thing: string) => issueDeviceSecret(dir, thing) } as LocalHub;
    const iot = iotClient(remote);
    await iot.send(new CreateThingCommand({ thingName: 'crash-1' }));
    await iot.send(new CreateJobCommand({ jobId: 'crash-job', targets: ['arn:aws:iot:us-east-1:123456789012:thing/crash-1'], document: '{"k":"v"}' }));
    const d = await TestDevice.connect(remote, 'crash-1');
    expect((await d.request('start-next')).outcome).toBe('accepted');
    expect((await d.request('crash-job/update', { status: 'SUCCEEDED', statusDetails: { done: 'yes' } })).outcome).toBe('accepted');
    await d.client.publishAsync(
      'fleetlm/crash-1/telemetry',
      JSON.stringify({
        schema: 'fleetlm/telemetry@1',
        thingName: 'crash-1',
        timestamp: 1_700_000_000_000,
        seq: 7,
        event: 'install',
        model: { modelId: 'm', version: '1' },
        inference: { requests: 0, firstTokenMs: null, tokensPerSecond: null },
        system: { rssBytes: 1, cpuLoad1m: 0, temperatureC: null, powerW: null, energyJ: 0, energyEstimated: false },
        dropped: 0,
      }),
      { qos: 1 },
    ); // resolves on PUBACK
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await d.close();
    iot.destroy();

    const hub = await startTestHub({ dir });
    cleanups.push(() => hub.stop());
    const iot2 = iotClient(hub);
    const exec = await iot2.send(new DescribeJobExecutionCommand({ jobId: 'crash-job', thingName: 'crash-1' }));
    expect(exec.execution).toMatchObject({ status: 'SUCCEEDED', versionNumber: 3, statusDetails: { detailsMap: { done: 'yes' } } });
    expect((await iot2.send(new GetJobDocumentCommand({ jobId: 'crash-job' }))).document).toBe('{"k":"v"}');
    iot2.destroy();
    const t = await queryTelemetry(hub.endpoints.telemetryDir, { thingName: 'crash-1' });
    expect(t.map((r) => r.telemetry.seq)).toEqual([7]);
  });
});
