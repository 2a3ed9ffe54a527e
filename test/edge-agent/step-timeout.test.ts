// The IoT Jobs step timer (UpdateJobExecution stepTimeoutInMinutes) end to end: the agent process keeps
// it alive while it works and lets it expire when it dies. The hub's minute is scaled down to 1 s.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, TestFleet, buildTestModel, eventually, tempDir, type BuiltModel } from './agent-fixture.ts';

const MINUTE_MS = 1000;
let fleet: TestFleet;
let model: BuiltModel;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  fleet = await TestFleet.start({ minuteMs: MINUTE_MS });
  model = await buildTestModel(4);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.kill();
  await fleet?.stop();
});

// A 2-"minute" (2 s) step timeout, a download that takes ~5 s, and heartbeats at most every 250 ms.
const ENV = {
  FLEETLM_AGENT_JOBS_STEP_TIMEOUT_IN_MINUTES: '2',
  FLEETLM_AGENT_JOBS_HEARTBEAT_MS: '250',
  FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC: '600000',
};

async function startAgent(thing: string, dir: string, env: Record<string, string> = ENV): Promise<AgentProcess> {
  const agent = await AgentProcess.start(fleet, thing, dir, env);
  agents.push(agent);
  return agent;
}

describe('step timeout', () => {
  it('does not time out a job while the agent is making progress for longer than the step timeout', async () => {
    const thing = 'step-alive-1';
    const arn = await fleet.createThing(thing);
    const agent = await startAgent(thing, await tempDir('fleetlm-agent-step-alive-'));
    const t0 = Date.now();
    await fleet.createJob('step-alive-job-1', arn, await fleet.publish('step-alive', '1', model));
    const exec = await fleet.waitTerminal('step-alive-job-1', thing, 60_000);
    expect(exec.status).toBe('SUCCEEDED');
    // The job took well over the 2 s step timeout, so only the refreshed timer kept it alive.
    expect(Date.now() - t0).toBeGreaterThan(3 * MINUTE_MS);
    await agent.stop();
  }, 90_000);

  it('times the job out when the agent dies mid-download, and the restarted agent drops it', async () => {
    const thing = 'step-dead-1';
    const jobId = 'step-dead-job-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-step-dead-');
    const first = await startAgent(thing, dir);
    await fleet.createJob(jobId, arn, await fleet.publish('step-dead', '1', model));
    await first.waitLog((l) => l.msg === 'install phase' && l.phase === 'downloading');
    const part = path.join(dir, 'models', 'staging', jobId, 'model.onnx.part');
    await eventually(async () => ((await fs.stat(part).catch(() => null))?.size ?? 0) > 300_000, 15_000, 'part of the download');
    await first.kill();
    expect((await fleet.execution(jobId, thing)).status).toBe('IN_PROGRESS');
    const exec = await fleet.waitTerminal(jobId, thing, 20_000);
    expect(exec.status).toBe('TIMED_OUT');

    const second = await startAgent(thing, dir);
    await second.waitLog((l) => l.msg === 'job canceled by the service; stopping its work' && l.jobId === jobId, 20_000);
    await eventually(
      async () => JSON.parse(await fs.readFile(path.join(dir, 'state', 'install-state.json'), 'utf8')).active === null,
      20_000,
      'the timed-out job to be dropped',
    );
    expect(second.count((l) => l.msg === 'install phase' && l.phase === 'installing')).toBe(0);
    expect((await fleet.execution(jobId, thing)).status).toBe('TIMED_OUT');
    await second.stop();
  }, 90_000);
});
