// A job reaching every thing in a group, driven through @aws-sdk/client-iot and mqtt.js only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AddThingToThingGroupCommand,
  CreateJobCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  DescribeJobCommand,
  DescribeJobExecutionCommand,
  DescribeThingCommand,
  ListJobExecutionsForJobCommand,
  ListThingsInThingGroupCommand,
  type IoTClient,
} from '@aws-sdk/client-iot';
import type { LocalHub } from '../../local-hub/hub.ts';
import { TestDevice, eventually, iotClient, removeDir, startTestHub } from './helpers.ts';

describe('local hub: a job reaching a thing group', () => {
  let hub: LocalHub & { dir: string };
  let iot: IoTClient;
  const things = ['pi-1', 'pi-2', 'jetson-1'];
  const devices: TestDevice[] = [];

  beforeAll(async () => {
    hub = await startTestHub();
    iot = iotClient(hub);
    for (const t of things) await iot.send(new CreateThingCommand({ thingName: t, attributePayload: { attributes: { kind: 'test' } } }));
    await iot.send(new CreateThingGroupCommand({ thingGroupName: 'lab' }));
    for (const t of things) await iot.send(new AddThingToThingGroupCommand({ thingGroupName: 'lab', thingName: t }));
    for (const t of things) devices.push(await TestDevice.connect(hub, t));
  });

  afterAll(async () => {
    for (const d of devices) await d.close();
    iot?.destroy();
    await hub?.stop();
    if (hub) await removeDir(hub.dir);
  });

  it('registers things and groups like IoT does', async () => {
    const thing = await iot.send(new DescribeThingCommand({ thingName: 'pi-1' }));
    expect(thing.thingArn).toBe('arn:aws:iot:us-east-1:123456789012:thing/pi-1');
    expect(thing.defaultClientId).toBe('pi-1');
    expect(thing.attributes).toEqual({ kind: 'test' });
    const members = await iot.send(new ListThingsInThingGroupCommand({ thingGroupName: 'lab' }));
    expect(members.things).toEqual(things);
  });

  it('notifies all 3 things, which take the job through start-next to SUCCEEDED', async () => {
    const document = { operation: 'deploy', version: '1.0.0' };
    const created = await iot.send(
      new CreateJobCommand({
        jobId: 'deploy-1',
        targets: ['arn:aws:iot:us-east-1:123456789012:thinggroup/lab'],
        document: JSON.stringify(document),
        description: 'three things',
      }),
    );
    expect(created.jobArn).toBe('arn:aws:iot:us-east-1:123456789012:job/deploy-1');

    for (const d of devices) {
      const next = await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
      const exec = next.payload.execution as Record<string, unknown>;
      expect(exec).toMatchObject({ jobId: 'deploy-1', thingName: d.thingName, status: 'QUEUED', versionNumber: 1, executionNumber: 1, jobDocument: document });
      const notify = await d.waitFor(`${d.base}/notify`);
      expect((notify.payload.jobs as Record<string, unknown[]>).QUEUED).toHaveLength(1);

      const pending = await d.request('get');
      expect(pending.outcome).toBe('accepted');
      expect((pending.payload.queuedJobs as unknown[]).length).toBe(1);
      expect(pending.payload.inProgressJobs).toEqual([]);

      const started = await d.request('start-next', { statusDetails: { step: 'download' } });
      expect(started.outcome).toBe('accepted');
      const startedExec = started.payload.execution as Record<string, unknown>;
      expect(startedExec).toMatchObject({ jobId: 'deploy-1', status: 'IN_PROGRESS', versionNumber: 2, statusDetails: { step: 'download' }, jobDocument: document });
      expect(typeof started.payload.timestamp).toBe('number');

      const done = await d.request('deploy-1/update', { status: 'SUCCEEDED', expectedVersion: 2, includeJobExecutionState: true });
      expect(done.outcome).toBe('accepted');
      expect(done.payload.executionState).toEqual({ status: 'SUCCEEDED', statusDetails: { step: 'download' }, versionNumber: 3 });
      const empty = await d.waitFor(`${d.base}/notify-next`, (p) => p.execution === undefined);
      expect(typeof empty.payload.timestamp).toBe('number');
    }

    const job = await eventually(async () => {
      const r = await iot.send(new DescribeJobCommand({ jobId: 'deploy-1' }));
      return r.job?.status === 'COMPLETED' ? r.job : undefined;
    });
    expect(job.jobProcessDetails?.numberOfSucceededThings).toBe(3);
    expect(job.completedAt).toBeInstanceOf(Date);
    const list = await iot.send(new ListJobExecutionsForJobCommand({ jobId: 'deploy-1' }));
    expect(list.executionSummaries?.map((s) => s.thingArn?.split('/')[1]).sort()).toEqual([...things].sort());
    const exec = await iot.send(new DescribeJobExecutionCommand({ jobId: 'deploy-1', thingName: 'pi-2' }));
    expect(exec.execution).toMatchObject({ status: 'SUCCEEDED', versionNumber: 3, executionNumber: 1, statusDetails: { detailsMap: { step: 'download' } } });
  });

  it('start-next with nothing pending is accepted without an execution', async () => {
    const r = await devices[0]!.request('start-next');
    expect(r.outcome).toBe('accepted');
    expect(r.payload.execution).toBeUndefined();
  });
});
