// End to end: the agent as a real process against the local hub (aedes broker, S3-protocol server,
// IoT Jobs), installing tiny ONNX models built by the builder and serving them on 127.0.0.1.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CancelJobCommand } from '@aws-sdk/client-iot';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTelemetryDir } from '../../fleet/telemetry-reader.ts';
import { generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { AgentProcess, TestFleet, buildTestModel, eventually, sleep, tempDir, type BuiltModel } from './agent-fixture.ts';

let fleet: TestFleet;
let modelA: BuiltModel;
let modelB: BuiltModel;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  fleet = await TestFleet.start();
  [modelA, modelB] = await Promise.all([buildTestModel(1), buildTestModel(2)]);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.kill();
  await fleet?.stop();
});

async function startAgent(thing: string, env: Record<string, string> = {}, dir?: string): Promise<{ agent: AgentProcess; dir: string }> {
  const d = dir ?? (await tempDir(`fleetlm-agent-${thing}-`));
  const agent = await AgentProcess.start(fleet, thing, d, env);
  agents.push(agent);
  return { agent, dir: d };
}

describe('edge agent', () => {
  it('installs a model from a job, reports SUCCEEDED with figures, and serves it', async () => {
    const thing = 'happy-1';
    const arn = await fleet.createThing(thing);
    const { agent, dir } = await startAgent(thing);
    const doc = await fleet.publish('tiny', '1.0.0', modelA);
    await fleet.createJob('happy-job-1', arn, doc);
    const exec = await fleet.waitTerminal('happy-job-1', thing);
    expect(exec.status).toBe('SUCCEEDED');
    expect(exec.statusDetails?.detailsMap).toMatchObject({ step: 'done', model: 'tiny@1.0.0' });
    expect(Number(exec.statusDetails?.detailsMap?.firstTokenMs)).toBeGreaterThan(0);
    expect(Number(exec.statusDetails?.detailsMap?.tokensPerSecond)).toBeGreaterThan(0);
    const g = await agent.generate('Hello');
    expect(g.status).toBe(200);
    expect(g.body.model).toEqual({ modelId: 'tiny', version: '1.0.0' });
    expect(typeof g.body.text).toBe('string');
    const current = JSON.parse(await fs.readFile(path.join(dir, 'models', 'current.json'), 'utf8'));
    expect(current.current).toEqual({ modelId: 'tiny', version: '1.0.0' });
    const sse = await fetch(`http://127.0.0.1:${agent.httpPort}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Hello', maxTokens: 5, temperature: 0.7, topP: 0.9, stream: true }),
    });
    expect(sse.headers.get('content-type')).toBe('text/event-stream');
    const events = (await sse.text()).split('\n\n').filter(Boolean);
    expect(events.filter((e) => e.startsWith('event: token')).length).toBeGreaterThan(0);
    const done = events.find((e) => e.startsWith('event: done'))!;
    expect(JSON.parse(done.split('data: ')[1]!).usage.completionTokens).toBe(5);
    const bad = await agent.generate('Hello', { maxTokens: -1 });
    expect(bad.status).toBe(400);
    expect(String(bad.body.error)).toMatch(/maxTokens/);
    const health = await fetch(`http://127.0.0.1:${agent.httpPort}/healthz`);
    expect(health.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${agent.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/fleetlm_model_info\{model_id="tiny",version="1.0.0"\} 1/);
    expect(metrics).toMatch(/fleetlm_requests_total 3/);
    expect(metrics).toMatch(/fleetlm_first_token_ms\{quantile="0.95"\} \d/);
    // Every update carried the right expectedVersion: none needed a refresh.
    expect(agent.count((l) => l.msg === 'expectedVersion was stale; refreshing it')).toBe(0);
    expect(agent.count((l) => l.msg === 'progress update rejected')).toBe(0);
    await agent.stop();
  });

  it('resumes an interrupted download with a Range request after being killed', async () => {
    const thing = 'resume-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-resume-');
    // ~3.2 MB at 800 kB/s: about four seconds of download to interrupt.
    const first = (await startAgent(thing, { FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC: '800000' }, dir)).agent;
    await fleet.createJob('resume-job-1', arn, await fleet.publish('resume', '1', modelA));
    await first.waitLog((l) => l.msg === 'install phase' && l.phase === 'downloading');
    const part = path.join(dir, 'models', 'staging', 'resume-job-1', 'model.onnx.part');
    await eventually(async () => (await fs.stat(part).catch(() => null))?.size ?? 0 > 500_000, 15_000, 'half a download');
    await first.kill();
    const partial = (await fs.stat(part)).size;
    expect(partial).toBeGreaterThan(0);
    expect((await fleet.execution('resume-job-1', thing)).status).toBe('IN_PROGRESS');

    const second = (await startAgent(thing, {}, dir)).agent;
    const exec = await fleet.waitTerminal('resume-job-1', thing);
    expect(exec.status).toBe('SUCCEEDED');
    const details = exec.statusDetails?.detailsMap ?? {};
    expect(Number(details.rangeRequests)).toBeGreaterThanOrEqual(1);
    expect(Number(details.resumedBytes)).toBeGreaterThanOrEqual(partial);
    const resumed = await second.waitLog((l) => l.msg === 'download resumed' && l.file === 'model.onnx');
    expect(Number(resumed.resumedFrom)).toBeGreaterThanOrEqual(partial);
    expect((await second.generate('Hi')).status).toBe(200);
    expect(second.count((l) => l.msg === 'expectedVersion was stale; refreshing it')).toBe(0);
    await second.stop();
  });

  it('stops downloading when the operator cancels the job', async () => {
    const thing = 'cancel-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-cancel-');
    const { agent } = await startAgent(thing, { FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC: '500000' }, dir);
    await fleet.createJob('cancel-job-1', arn, await fleet.publish('cancel', '1', modelA));
    await agent.waitLog((l) => l.msg === 'install phase' && l.phase === 'downloading');
    await fleet.iot.send(new CancelJobCommand({ jobId: 'cancel-job-1', force: true }));
    await agent.waitLog((l) => l.msg === 'job canceled by the service; stopping its work', 15_000);
    await eventually(
      async () => JSON.parse(await fs.readFile(path.join(dir, 'state', 'install-state.json'), 'utf8')).active === null,
      15_000,
      'the canceled job to be dropped',
    );
    expect((await fleet.execution('cancel-job-1', thing)).status).toBe('CANCELED');
    expect(agent.count((l) => l.msg === 'install phase' && l.phase === 'installing')).toBe(0);
    await expect(fs.readdir(path.join(dir, 'models', 'staging'))).resolves.toEqual([]);
    await agent.stop();
  });

  it('rejects malformed job documents and fails oversized artifacts, with reasons', async () => {
    const thing = 'malformed-1';
    const arn = await fleet.createThing(thing);
    const { agent } = await startAgent(thing, { FLEETLM_AGENT_DOWNLOAD_MAX_ARTIFACT_BYTES: '1000000' });
    // Nothing installed yet: the local API says so instead of failing obscurely.
    expect((await agent.generate('Hi')).status).toBe(503);
    expect((await fetch(`http://127.0.0.1:${agent.httpPort}/healthz`)).status).toBe(503);
    await fleet.createJob('malformed-job-1', arn, { schema: 'fleetlm/deploy-model@1', modelId: 'Bad Id!', version: '1' });
    const exec = await fleet.waitTerminal('malformed-job-1', thing);
    expect(exec.status).toBe('REJECTED');
    expect(exec.statusDetails?.detailsMap?.reason).toMatch(/modelId/);
    await fleet.createJob('malformed-job-2', arn, { schema: 'something/else@9' });
    const exec2 = await fleet.waitTerminal('malformed-job-2', thing);
    expect(exec2.status).toBe('REJECTED');
    expect(exec2.statusDetails?.detailsMap?.reason).toMatch(/schema/);

    const good = await fleet.publish('limits', '1', modelA);
    const escaping = { ...good, artifacts: good.artifacts.map((a) => ({ ...a, name: '../../etc/cron.d/x' })) };
    await fleet.createJob('malformed-job-3', arn, escaping);
    const exec3 = await fleet.waitTerminal('malformed-job-3', thing);
    expect(exec3.status).toBe('REJECTED');
    expect(exec3.statusDetails?.detailsMap?.reason).toMatch(/artifacts\.0\.name/);

    const clashing = { ...good, artifacts: good.artifacts.map((a) => ({ ...a, name: 'manifest.json' })) };
    await fleet.createJob('malformed-job-4', arn, clashing);
    const exec5 = await fleet.waitTerminal('malformed-job-4', thing);
    expect(exec5.status).toBe('REJECTED');
    expect(exec5.statusDetails?.detailsMap?.reason).toMatch(/reserved/);

    await fleet.createJob('too-big-1', arn, good); // 3.2 MB model, 1 MB limit
    const exec4 = await fleet.waitTerminal('too-big-1', thing);
    expect(exec4.status).toBe('FAILED');
    expect(exec4.statusDetails?.detailsMap).toMatchObject({ step: 'downloading', code: 'VALIDATION_TOO_LARGE' });
    expect(agent.count((l) => l.msg === 'download complete')).toBe(0);
    await agent.stop();
  });

  describe('failed deploys keep the previous model serving', () => {
    const thing = 'rollback-1';
    let agent: AgentProcess;
    let dir: string;
    let arn: string;

    async function currentPointer(): Promise<unknown> {
      return JSON.parse(await fs.readFile(path.join(dir, 'models', 'current.json'), 'utf8')).current;
    }

    beforeAll(async () => {
      arn = await fleet.createThing(thing);
      ({ agent, dir } = await startAgent(thing));
      await fleet.createJob('rb-base', arn, await fleet.publish('rb', '1', modelA));
      expect((await fleet.waitTerminal('rb-base', thing)).status).toBe('SUCCEEDED');
    }, 60_000);

    afterAll(async () => {
      await agent?.stop();
    });

    it('fails a corrupted artifact on its sha256', async () => {
      await fleet.createJob('rb-corrupt', arn, await fleet.publish('rb', '2', modelB, { corrupt: 'model.onnx' }));
      const exec = await fleet.waitTerminal('rb-corrupt', thing);
      expect(exec.status).toBe('FAILED');
      expect(exec.statusDetails?.detailsMap?.reason).toMatch(/sha256/);
      expect(await currentPointer()).toEqual({ modelId: 'rb', version: '1' });
      expect((await agent.generate('Hi')).body.model).toEqual({ modelId: 'rb', version: '1' });
    });

    it('fails a manifest signed by another key before downloading the model', async () => {
      const other = generateSigningKeyPair();
      await fleet.createJob('rb-badsig', arn, await fleet.publish('rb', '3', modelB, { signWithPem: other.privateKeyPem }));
      const exec = await fleet.waitTerminal('rb-badsig', thing);
      expect(exec.status).toBe('FAILED');
      expect(exec.statusDetails?.detailsMap).toMatchObject({ step: 'verifying', code: 'VALIDATION_SIGNATURE' });
      expect(exec.statusDetails?.detailsMap?.reason).toMatch(/signature/);
      const done = agent.logs.filter((l) => l.msg === 'download complete' && l.jobId === 'rb-badsig');
      expect(done).toEqual([]);
      expect((await agent.generate('Hi')).body.model).toEqual({ modelId: 'rb', version: '1' });
    });

    it('rolls back a model that fails its health check', async () => {
      const doc = await fleet.publish('rb', '4', modelB, { healthCheck: { prompt: 'Hello', maxTokens: 8, minTokensPerSecond: 1e9 } });
      await fleet.createJob('rb-slow', arn, doc);
      const exec = await fleet.waitTerminal('rb-slow', thing);
      expect(exec.status).toBe('FAILED');
      expect(exec.statusDetails?.detailsMap).toMatchObject({ step: 'health-check', rolledBackTo: 'rb@1' });
      expect(exec.statusDetails?.detailsMap?.reason).toMatch(/below minTokensPerSecond/);
      expect(await currentPointer()).toEqual({ modelId: 'rb', version: '1' });
      const g = await agent.generate('Hi');
      expect(g.status).toBe(200);
      expect(g.body.model).toEqual({ modelId: 'rb', version: '1' });
      await expect(fs.stat(path.join(dir, 'models', 'versions', 'rb', '4'))).rejects.toThrow();
    });

    it('keeps answering /v1/generate without a gap while a good update lands', async () => {
      const statuses: number[] = [];
      const versions = new Set<string>();
      let running = true;
      const load = (async () => {
        while (running) {
          const g = await agent.generate('Hi', { maxTokens: 2 });
          statuses.push(g.status);
          const m = g.body.model as { version?: string } | undefined;
          if (m?.version) versions.add(m.version);
        }
      })();
      await fleet.createJob('rb-good', arn, await fleet.publish('rb', '5', modelB));
      const exec = await fleet.waitTerminal('rb-good', thing);
      await sleep(300);
      running = false;
      await load;
      expect(exec.status).toBe('SUCCEEDED');
      expect(statuses.length).toBeGreaterThan(5);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect([...versions].sort()).toEqual(['1', '5']);
    });

    it('falls back to the previous version when the current one no longer loads after a restart', async () => {
      await agent.stop();
      await fs.writeFile(path.join(dir, 'models', 'versions', 'rb', '5', 'model.onnx'), 'not an onnx file');
      agent = await AgentProcess.start(fleet, thing, dir);
      agents.push(agent);
      const g = await agent.generate('Hi');
      expect(g.status).toBe(200);
      expect(g.body.model).toEqual({ modelId: 'rb', version: '1' });
      expect(await currentPointer()).toEqual({ modelId: 'rb', version: '1' });
      expect(agent.count((l) => l.msg === 'fell back to an older installed version')).toBe(1);
    });
  });

  it('finishes a job across a broker restart', async () => {
    const thing = 'broker-1';
    const arn = await fleet.createThing(thing);
    const { agent } = await startAgent(thing, { FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC: '1500000' });
    await fleet.createJob('broker-job-1', arn, await fleet.publish('brk', '1', modelA));
    await agent.waitLog((l) => l.msg === 'install phase' && l.phase === 'downloading');
    const lostBefore = agent.count((l) => l.msg === 'mqtt connection lost');
    await fleet.restartHub(500);
    const exec = await fleet.waitTerminal('broker-job-1', thing);
    expect(exec.status).toBe('SUCCEEDED');
    expect(agent.count((l) => l.msg === 'mqtt connection lost')).toBeGreaterThan(lostBefore);
    expect(agent.count((l) => l.msg === 'mqtt connected')).toBeGreaterThanOrEqual(2);
    await agent.stop();
  });

  it('never installs twice when a job is delivered again', async () => {
    const thing = 'dup-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-dup-');
    // The first run dies right after installing, before the SUCCEEDED update: the job is redelivered.
    const first = (await startAgent(thing, { FLEETLM_AGENT_TEST_HOOKS_KILL_ON_PHASE: 'reporting' }, dir)).agent;
    await fleet.createJob('dup-job-1', arn, await fleet.publish('dup', '1', modelA));
    expect(await first.waitExit()).toBeNull(); // killed by SIGKILL
    expect((await fleet.execution('dup-job-1', thing)).status).toBe('IN_PROGRESS');
    const second = (await startAgent(thing, {}, dir)).agent;
    const exec = await fleet.waitTerminal('dup-job-1', thing);
    expect(exec.status).toBe('SUCCEEDED');
    expect(second.count((l) => l.msg === 'install phase' && l.phase !== 'reporting')).toBe(0);

    // A replayed notify-next for the finished job (an operator connection can publish as the service).
    const creds = fleet.hub.endpoints.credentials;
    const op = await mqtt.connectAsync(fleet.hub.endpoints.mqtt.url, { username: creds.accessKeyId, password: creds.secretAccessKey, protocolVersion: 4, reconnectPeriod: 0 });
    const before = second.count((l) => l.msg === 'notify-next');
    const execution = { jobId: 'dup-job-1', status: 'QUEUED', versionNumber: 1, executionNumber: 1, jobDocument: {} };
    await op.publishAsync(`$aws/things/${thing}/jobs/notify-next`, JSON.stringify({ timestamp: 1, execution }), { qos: 1 });
    await op.publishAsync(`$aws/things/${thing}/jobs/notify-next`, JSON.stringify({ timestamp: 2, execution }), { qos: 1 });
    await op.endAsync();
    await eventually(async () => second.count((l) => l.msg === 'notify-next') >= before + 2, 10_000, 'replayed notifications');
    await sleep(500);
    expect(second.count((l) => l.msg === 'job received')).toBe(0);
    expect(second.count((l) => l.msg === 'install phase')).toBe(0);
    expect(second.count((l) => l.msg === 'resuming job after restart' && l.phase === 'reporting')).toBe(1);
    const installs = async () =>
      // QoS 1 is at-least-once: a message whose PUBACK raced the kill is sent again, same seq and timestamp.
      new Set((await readTelemetryDir(fleet.hub.endpoints.telemetryDir)).filter((t) => t.thingName === thing && t.event === 'install').map((t) => `${t.seq}@${t.timestamp}`)).size;
    await eventually(async () => (await installs()) >= 1, 10_000, 'the install event');
    await sleep(300);
    expect(await installs()).toBe(1);
    await second.stop();
  });

  it('buffers telemetry on disk while the broker is down and sends it after', async () => {
    const thing = 'telemetry-1';
    await fleet.createThing(thing);
    const { agent } = await startAgent(thing, { FLEETLM_AGENT_TELEMETRY_INTERVAL_MS: '250' });
    const ours = async () => (await readTelemetryDir(fleet.hub.endpoints.telemetryDir)).filter((t) => t.thingName === thing);
    await eventually(async () => (await ours()).length >= 2, 10_000, 'telemetry before the outage');
    let lastBefore = 0;
    await fleet.hubDown(async () => {
      lastBefore = Math.max(...(await ours()).map((t) => t.seq));
      await agent.waitLog((l) => l.msg === 'mqtt connection lost');
      await sleep(2000); // about eight periodic samples taken offline
    });
    const after = await eventually(
      async () => {
        const all = await ours();
        return all.filter((t) => t.seq > lastBefore + 8).length > 0 ? all : undefined;
      },
      20_000,
      'telemetry after the outage',
    );
    const seqs = [...new Set(after.map((t) => t.seq))].sort((a, b) => a - b);
    // Every sequence number from start to the newest arrived: nothing measured offline was lost.
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i));
    const t = after[after.length - 1]!;
    expect(t.system.rssBytes).toBeGreaterThan(0);
    expect(t.system.energyEstimated).toBe(true);
    expect(t.dropped).toBe(0);
    await agent.stop();
  });
});
