// Job lifecycle behaviour of the local hub through real protocols: CONTINUOUS targets, abort,
// step and in-progress timeouts, retries, VersionMismatch. Time is scaled (1 "minute" = 200 ms).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AddThingToThingGroupCommand,
  CancelJobCommand,
  CreateJobCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  DescribeJobCommand,
  DescribeJobExecutionCommand,
  ListJobExecutionsForJobCommand,
  ListJobExecutionsForThingCommand,
  type IoTClient,
} from '@aws-sdk/client-iot';
import type { LocalHub } from '../../local-hub/hub.ts';
import { TestDevice, eventually, iotClient, removeDir, startTestHub } from './helpers.ts';

const MINUTE_MS = 200;
const ACCOUNT = 'arn:aws:iot:us-east-1:123456789012';

describe('local hub: job lifecycle', () => {
  let hub: LocalHub & { dir: string };
  let iot: IoTClient;
  const devices: TestDevice[] = [];

  async function thing(name: string, group?: string): Promise<TestDevice> {
    await iot.send(new CreateThingCommand({ thingName: name }));
    if (group) await iot.send(new AddThingToThingGroupCommand({ thingGroupName: group, thingName: name }));
    const d = await TestDevice.connect(hub, name);
    devices.push(d);
    return d;
  }

  async function jobStatus(jobId: string) {
    return (await iot.send(new DescribeJobCommand({ jobId }))).job!;
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

  it('a CONTINUOUS job reaches a thing added to the group later', async () => {
    await iot.send(new CreateThingGroupCommand({ thingGroupName: 'continuous' }));
    const early = await thing('cont-early', 'continuous');
    await iot.send(
      new CreateJobCommand({ jobId: 'cont-1', targets: [`${ACCOUNT}:thinggroup/continuous`], targetSelection: 'CONTINUOUS', document: '{"v":1}' }),
    );
    await early.waitFor(`${early.base}/notify-next`, (p) => p.execution !== undefined);
    const late = await thing('cont-late');
    expect((await late.request('get')).payload.queuedJobs).toEqual([]);
    await iot.send(new AddThingToThingGroupCommand({ thingGroupName: 'continuous', thingName: 'cont-late' }));
    const next = await late.waitFor(`${late.base}/notify-next`, (p) => p.execution !== undefined);
    expect(next.payload.execution).toMatchObject({ jobId: 'cont-1', status: 'QUEUED', jobDocument: { v: 1 } });
    const r = await late.request('start-next');
    expect((r.payload.execution as Record<string, unknown>).status).toBe('IN_PROGRESS');
    expect((await late.request('cont-1/update', { status: 'SUCCEEDED' })).outcome).toBe('accepted');
    // CONTINUOUS jobs never complete on their own.
    expect((await jobStatus('cont-1')).status).toBe('IN_PROGRESS');
    const forThing = await iot.send(new ListJobExecutionsForThingCommand({ thingName: 'cont-late' }));
    expect(forThing.executionSummaries).toMatchObject([{ jobId: 'cont-1', jobExecutionSummary: { status: 'SUCCEEDED' } }]);
  });

  it('rejects a stale update with VersionMismatch and the current execution state', async () => {
    const d = await thing('ver-1');
    await iot.send(new CreateJobCommand({ jobId: 'ver-job', targets: [`${ACCOUNT}:thing/ver-1`], document: '{}' }));
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    const started = await d.request('start-next');
    expect((started.payload.execution as Record<string, unknown>).versionNumber).toBe(2);
    const stale = await d.request('ver-job/update', { status: 'SUCCEEDED', expectedVersion: 1 });
    expect(stale.outcome).toBe('rejected');
    expect(stale.payload).toMatchObject({ code: 'VersionMismatch', executionState: { status: 'IN_PROGRESS', versionNumber: 2 } });
    expect(typeof stale.payload.message).toBe('string');
    expect(stale.payload.clientToken).toMatch(/^t-/);
    const ok = await d.request('ver-job/update', { status: 'SUCCEEDED', expectedVersion: 2 });
    expect(ok.outcome).toBe('accepted');
    const again = await d.request('ver-job/update', { status: 'IN_PROGRESS' });
    expect(again.payload).toMatchObject({ code: 'InvalidStateTransition', executionState: { status: 'SUCCEEDED', versionNumber: 3 } });
  });

  it('moves an execution whose step timer runs out to TIMED_OUT', async () => {
    const d = await thing('step-1');
    await iot.send(new CreateJobCommand({ jobId: 'step-job', targets: [`${ACCOUNT}:thing/step-1`], document: '{}' }));
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    const t0 = Date.now();
    await d.request('start-next', { stepTimeoutInMinutes: 1 });
    const described = await iot.send(new DescribeJobExecutionCommand({ jobId: 'step-job', thingName: 'step-1' }));
    expect(described.execution?.approximateSecondsBeforeTimedOut).toBeGreaterThanOrEqual(0);
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution === undefined, 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(MINUTE_MS - 20);
    const exec = await iot.send(new DescribeJobExecutionCommand({ jobId: 'step-job', thingName: 'step-1' }));
    expect(exec.execution?.status).toBe('TIMED_OUT');
    const late = await d.request('step-job/update', { status: 'SUCCEEDED' });
    expect(late.payload.code).toBe('InvalidStateTransition');
    const job = await eventually(async () => ((await jobStatus('step-job')).status === 'COMPLETED' ? jobStatus('step-job') : undefined));
    expect(job.jobProcessDetails?.numberOfTimedOutThings).toBe(1);
  });

  it('a step timer can be reset by an IN_PROGRESS update and cancelled with -1', async () => {
    const d = await thing('step-2');
    await iot.send(new CreateJobCommand({ jobId: 'step-job-2', targets: [`${ACCOUNT}:thing/step-2`], document: '{}' }));
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    await d.request('start-next', { stepTimeoutInMinutes: 1 });
    expect((await d.request('step-job-2/update', { status: 'IN_PROGRESS', stepTimeoutInMinutes: -1 })).outcome).toBe('accepted');
    await new Promise((r) => setTimeout(r, MINUTE_MS * 2));
    const exec = await iot.send(new DescribeJobExecutionCommand({ jobId: 'step-job-2', thingName: 'step-2' }));
    expect(exec.execution?.status).toBe('IN_PROGRESS');
    expect((await d.request('step-job-2/update', { status: 'SUCCEEDED' })).outcome).toBe('accepted');
  });

  it('applies timeoutConfig.inProgressTimeoutInMinutes from the moment the execution starts', async () => {
    const d = await thing('ipt-1');
    await iot.send(
      new CreateJobCommand({ jobId: 'ipt-job', targets: [`${ACCOUNT}:thing/ipt-1`], document: '{}', timeoutConfig: { inProgressTimeoutInMinutes: 2 } }),
    );
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    await new Promise((r) => setTimeout(r, MINUTE_MS * 3)); // QUEUED executions do not time out
    expect((await iot.send(new DescribeJobExecutionCommand({ jobId: 'ipt-job', thingName: 'ipt-1' }))).execution?.status).toBe('QUEUED');
    const t0 = Date.now();
    await d.request('start-next');
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution === undefined, 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * MINUTE_MS - 20);
    expect((await iot.send(new DescribeJobExecutionCommand({ jobId: 'ipt-job', thingName: 'ipt-1' }))).execution?.status).toBe('TIMED_OUT');
  });

  it('retries a FAILED execution as jobExecutionsRetryConfig allows', async () => {
    const d = await thing('retry-1');
    await iot.send(
      new CreateJobCommand({
        jobId: 'retry-job',
        targets: [`${ACCOUNT}:thing/retry-1`],
        document: '{}',
        jobExecutionsRetryConfig: { criteriaList: [{ failureType: 'FAILED', numberOfRetries: 1 }] },
      }),
    );
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    await d.request('start-next');
    const from = d.messages.length;
    expect((await d.request('retry-job/update', { status: 'FAILED', statusDetails: { reason: 'disk full' } })).outcome).toBe('accepted');
    const retry = await d.waitFor(`${d.base}/notify-next`, (p) => (p.execution as Record<string, unknown> | undefined)?.executionNumber === 2, 5000, from);
    expect(retry.payload.execution).toMatchObject({ jobId: 'retry-job', status: 'QUEUED', versionNumber: 1 });
    await d.request('start-next');
    // The second failure exhausts the retries: the job completes with a FAILED thing.
    expect((await d.request('retry-job/update', { status: 'FAILED' })).outcome).toBe('accepted');
    const job = await eventually(async () => ((await jobStatus('retry-job')).status === 'COMPLETED' ? jobStatus('retry-job') : undefined));
    expect(job.jobProcessDetails?.numberOfFailedThings).toBe(1);
    const list = await iot.send(new ListJobExecutionsForJobCommand({ jobId: 'retry-job' }));
    expect(list.executionSummaries?.[0]?.jobExecutionSummary).toMatchObject({ status: 'FAILED', executionNumber: 2, retryAttempt: 1 });
    const first = await iot.send(new DescribeJobExecutionCommand({ jobId: 'retry-job', thingName: 'retry-1', executionNumber: 1 }));
    expect(first.execution).toMatchObject({ status: 'FAILED', statusDetails: { detailsMap: { reason: 'disk full' } } });
  });

  it('aborts the job once failures pass the abortConfig threshold', async () => {
    await iot.send(new CreateThingGroupCommand({ thingGroupName: 'abortable' }));
    const ds = [];
    for (let i = 1; i <= 4; i++) ds.push(await thing(`abort-${i}`, 'abortable'));
    await iot.send(
      new CreateJobCommand({
        jobId: 'abort-job',
        targets: [`${ACCOUNT}:thinggroup/abortable`],
        document: '{}',
        abortConfig: { criteriaList: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 50, minNumberOfExecutedThings: 2 }] },
      }),
    );
    for (const d of ds) await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    await ds[0]!.request('start-next');
    await ds[0]!.request('abort-job/update', { status: 'FAILED' });
    expect((await jobStatus('abort-job')).status).toBe('IN_PROGRESS'); // 1 executed < minNumberOfExecutedThings
    await ds[1]!.request('start-next');
    await ds[2]!.request('start-next');
    await ds[1]!.request('abort-job/update', { status: 'FAILED' });
    const job = await jobStatus('abort-job');
    expect(job.status).toBe('CANCELED');
    expect(job.reasonCode).toBe('ABORTED');
    // Queued executions are canceled; the one in progress may still finish.
    await ds[3]!.waitFor(`${ds[3]!.base}/notify-next`, (p) => p.execution === undefined);
    expect((await iot.send(new DescribeJobExecutionCommand({ jobId: 'abort-job', thingName: 'abort-4' }))).execution?.status).toBe('CANCELED');
    expect((await iot.send(new DescribeJobExecutionCommand({ jobId: 'abort-job', thingName: 'abort-3' }))).execution?.status).toBe('IN_PROGRESS');
    expect((await ds[2]!.request('abort-job/update', { status: 'SUCCEEDED' })).outcome).toBe('accepted');
  });

  it('CancelJob with force cancels executions in progress', async () => {
    const d = await thing('cancel-1');
    await iot.send(new CreateJobCommand({ jobId: 'cancel-job', targets: [`${ACCOUNT}:thing/cancel-1`], document: '{}' }));
    await d.waitFor(`${d.base}/notify-next`, (p) => p.execution !== undefined);
    await d.request('start-next');
    await iot.send(new CancelJobCommand({ jobId: 'cancel-job', force: true, comment: 'bad build' }));
    const job = await jobStatus('cancel-job');
    expect(job).toMatchObject({ status: 'CANCELED', forceCanceled: true, comment: 'bad build' });
    const exec = await iot.send(new DescribeJobExecutionCommand({ jobId: 'cancel-job', thingName: 'cancel-1' }));
    expect(exec.execution).toMatchObject({ status: 'CANCELED', forceCanceled: true });
    expect((await d.request('cancel-job/update', { status: 'SUCCEEDED' })).payload.code).toBe('InvalidStateTransition');
    const described = await d.request('cancel-job/get');
    expect(described.payload).toMatchObject({ code: 'TerminalStateReached', executionState: { status: 'CANCELED' } });
  });
});
