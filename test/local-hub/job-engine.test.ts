// The local hub's job engine on its own (no broker, no HTTP): a real JobStore in a temp directory, a
// hand-driven clock and a recording publisher. End-to-end behaviour over MQTT is in the other local-hub tests.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubApiError } from '../../local-hub/hub-api-error.ts';
import { JobEngine, type CreateJobInput } from '../../local-hub/job-engine.ts';
import { JobStore } from '../../local-hub/job-store.ts';

const MINUTE = 60_000;
const REGION = 'us-east-1';
const ACCOUNT = '123456789012';

let dir: string;
let store: JobStore;
let now: number;
let published: Array<{ topic: string; payload: Record<string, unknown> }>;

function engineOn(s: JobStore): JobEngine {
  return new JobEngine(s, {
    region: REGION,
    accountId: ACCOUNT,
    minuteMs: MINUTE,
    now: () => now,
    publish: async (topic, payload) => {
      published.push({ topic, payload: JSON.parse(payload) as Record<string, unknown> });
    },
    renderDocument: async (job) => JSON.parse(job.document) as unknown,
  });
}

function fleet(engine: JobEngine, group: string, n: number): string[] {
  engine.createThingGroup(group, undefined);
  const names = Array.from({ length: n }, (_, i) => `${group}-${i}`);
  for (const name of names) {
    engine.createThing(name);
    engine.addThingToGroup(group, name);
  }
  return names;
}

const groupJob = (jobId: string, group: string, extra: Partial<CreateJobInput> = {}): CreateJobInput => ({
  jobId,
  targets: [`arn:aws:iot:${REGION}:${ACCOUNT}:thinggroup/${group}`],
  document: '{"op":"install"}',
  ...extra,
});

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-engine-'));
  store = await JobStore.open(dir);
  now = 1_700_000_000_000;
  published = [];
});
afterEach(async () => {
  await store.drain();
  rmSync(dir, { recursive: true, force: true });
});

describe('job engine', () => {
  it('refuses at CreateJob a 5,000-deep or oversized document and stores nothing', () => {
    const engine = engineOn(store);
    fleet(engine, 'g', 1);
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const err = (() => {
      try {
        engine.createJob(groupJob('deep', 'g', { document: deep }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(HubApiError);
    expect((err as HubApiError).kind).toBe('InvalidRequest');
    expect((err as HubApiError).message).toMatch(/deeper than 64/);
    expect(() => engine.createJob(groupJob('big', 'g', { document: JSON.stringify({ s: 'x'.repeat(40_000) }) }))).toThrow(/at most 32768 bytes/);
    expect(store.state.jobs).toEqual({});
    expect(store.state.executions).toEqual({});
    expect(engine.hasPendingNotifications()).toBe(false);
  });

  it('rolls out at maximumPerMinute per minute window on ticks, and completes once every execution succeeded', () => {
    const engine = engineOn(store);
    const things = fleet(engine, 'g', 5);
    engine.createJob(groupJob('rate', 'g', { rollout: { maximumPerMinute: 2 } }));
    const queued = () => engine.executionsForJob('rate').length;
    expect(queued()).toBe(2);
    now += MINUTE - 1;
    engine.tick();
    expect(queued()).toBe(2);
    now += 1;
    engine.tick();
    expect(queued()).toBe(4);
    now += MINUTE;
    engine.tick();
    expect(queued()).toBe(5);
    for (const t of things) engine.updateExecution(t, 'rate', { status: 'SUCCEEDED' });
    expect(engine.getJob('rate').status).toBe('COMPLETED');
    expect(engine.processDetails(engine.getJob('rate')).SUCCEEDED).toBe(5);
  });

  it('aborts by abortConfig: the job is CANCELED with reason ABORTED and queued executions are canceled', () => {
    const engine = engineOn(store);
    const [a, b, c] = fleet(engine, 'g', 3);
    engine.createJob(groupJob('abort', 'g', { abortCriteria: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 50, minNumberOfExecutedThings: 2 }] }));
    engine.updateExecution(a!, 'abort', { status: 'SUCCEEDED' });
    engine.updateExecution(b!, 'abort', { status: 'FAILED' });
    const job = engine.getJob('abort');
    expect(job).toMatchObject({ status: 'CANCELED', reasonCode: 'ABORTED' });
    expect(job.comment).toMatch(/1 of 2 executed things ended FAILED \(50\.0% >= 50%/);
    expect(engine.getExecution('abort', c!).status).toBe('CANCELED');
  });

  it('retries a failed execution as a new execution number, and times out an expired step timer', () => {
    const engine = engineOn(store);
    const [a] = fleet(engine, 'g', 1);
    engine.createJob(groupJob('retry', 'g', { retryCriteria: [{ failureType: 'ALL', numberOfRetries: 1 }] }));
    const first = engine.startNext(a!, undefined, 1)!;
    expect(first).toMatchObject({ status: 'IN_PROGRESS', executionNumber: 1, stepDeadline: now + MINUTE });
    expect(engine.secondsBeforeTimedOut(first)).toBe(60);
    now += MINUTE;
    engine.tick();
    expect(engine.getExecution('retry', a!, 1).status).toBe('TIMED_OUT');
    const second = engine.getExecution('retry', a!);
    expect(second).toMatchObject({ status: 'QUEUED', executionNumber: 2, retryAttempt: 1 });
    engine.updateExecution(a!, 'retry', { status: 'FAILED' });
    expect(engine.getExecution('retry', a!).executionNumber).toBe(2);
    expect(engine.getJob('retry').status).toBe('COMPLETED');
  });

  it('a CONTINUOUS job picks up things added to its group and removes queued executions of things that leave', () => {
    const engine = engineOn(store);
    fleet(engine, 'g', 1);
    engine.createJob(groupJob('cont', 'g', { targetSelection: 'CONTINUOUS' }));
    engine.createThing('late');
    engine.addThingToGroup('g', 'late');
    expect(engine.getExecution('cont', 'late').status).toBe('QUEUED');
    engine.removeThingFromGroup('g', 'late');
    expect(engine.getExecution('cont', 'late').status).toBe('REMOVED');
    expect(engine.getJob('cont').status).toBe('IN_PROGRESS');
  });

  it('notifies each touched thing once per change, and a restarted engine does not announce again', async () => {
    const engine = engineOn(store);
    const [a] = fleet(engine, 'g', 1);
    engine.createJob(groupJob('n', 'g'));
    expect(engine.hasPendingNotifications()).toBe(true);
    await engine.sendNotifications();
    expect(published.map((p) => p.topic).sort()).toEqual([`$aws/things/${a}/jobs/notify`, `$aws/things/${a}/jobs/notify-next`]);
    const next = published.find((p) => p.topic.endsWith('notify-next'))!.payload;
    expect(next).toMatchObject({ execution: { jobId: 'n', thingName: a, status: 'QUEUED', jobDocument: { op: 'install' } } });
    published = [];
    await engine.sendNotifications();
    expect(published).toEqual([]);

    // Moving to IN_PROGRESS neither adds to nor removes from the pending list: nothing is sent
    // (https://docs.aws.amazon.com/iot/latest/developerguide/jobs-comm-notifications.html).
    engine.startNext(a!, undefined, undefined);
    await engine.sendNotifications();
    expect(published).toEqual([]);
    published = [];
    await store.commit();
    const restarted = engineOn(await JobStore.open(dir));
    expect(restarted.hasPendingNotifications()).toBe(false);
    restarted.tick();
    await restarted.sendNotifications();
    expect(published).toEqual([]);

    // Finishing empties the pending list (notify with no jobs) and the next execution (notify-next without one).
    restarted.updateExecution(a!, 'n', { status: 'SUCCEEDED' });
    await restarted.sendNotifications();
    expect(Object.fromEntries(published.map((p) => [p.topic.split('/').at(-1), p.payload]))).toEqual({
      notify: { timestamp: expect.any(Number), jobs: {} },
      'notify-next': { timestamp: expect.any(Number) },
    });
  });
});
