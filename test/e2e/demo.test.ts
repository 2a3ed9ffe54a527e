// The demo pipeline end to end with small settings: a real hub, three agent processes, search,
// build, evaluate, signed publish, IoT Job rollout, a broken version and a rollback. Assertions
// read only what devices report through the protocols: job executions via @aws-sdk/client-iot,
// telemetry via the hub's sink, completions via each agent's HTTP API.
import { describe, expect, it } from 'vitest';
import { DescribeJobCommand, DescribeJobExecutionCommand, IoTClient, ListJobExecutionsForJobCommand, ListJobsCommand } from '@aws-sdk/client-iot';
import { DEFAULT_DEMO, runDemo, type DemoLive } from '../../local-demo/demo.ts';
import { queryTelemetry } from '../../local-hub/telemetry-sink.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

async function executions(iot: IoTClient, jobId: string): Promise<Record<string, string>> {
  const out = await iot.send(new ListJobExecutionsForJobCommand({ jobId }));
  return Object.fromEntries((out.executionSummaries ?? []).map((e) => [e.thingArn!.split('/').pop()!, e.jobExecutionSummary!.status!]));
}

describe('local demo pipeline', () => {
  it('deploys a signed model to three devices, aborts a broken version and rolls back', { timeout: 240_000 }, async () => {
    const lines: string[] = [];
    let checked = false;
    const inspect = async (live: DemoLive) => {
      const e = live.endpoints;
      const iot = new IoTClient({ endpoint: e.iotEndpoint, region: e.region, credentials: e.credentials });
      const jobs = (await iot.send(new ListJobsCommand({ thingGroupName: live.group }))).jobs ?? [];
      expect(jobs).toHaveLength(3);
      const described = await Promise.all(jobs.map(async (j) => (await iot.send(new DescribeJobCommand({ jobId: j.jobId! }))).job!));
      described.sort((a, b) => a.createdAt!.getTime() - b.createdAt!.getTime());
      const [good, broken, rollback] = described;

      // v1: every device reports SUCCEEDED.
      expect(good!.description).toMatch(/@1\.0\.0 /);
      expect(Object.values(await executions(iot, good!.jobId!))).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
      expect(good!.status).toBe('COMPLETED');

      // v2 (corrupt ONNX, validly signed): the canary fails its health check, the abort criterion cancels the job,
      // and no device ever reports SUCCEEDED for it.
      expect(broken!.description).toMatch(/@2\.0\.0-broken /);
      expect(broken!.status).toBe('CANCELED');
      const brokenExecs = await executions(iot, broken!.jobId!);
      expect(Object.values(brokenExecs)).toContain('FAILED');
      expect(Object.values(brokenExecs)).not.toContain('SUCCEEDED');
      const failedThing = Object.entries(brokenExecs).find(([, s]) => s === 'FAILED')![0];
      const failed = await iot.send(new DescribeJobExecutionCommand({ jobId: broken!.jobId!, thingName: failedThing }));
      expect(JSON.stringify(failed.execution!.statusDetails?.detailsMap ?? {})).toMatch(/onnx|load/i);

      // Rollback: a new job for the last good version, SUCCEEDED everywhere.
      expect(rollback!.description).toMatch(/@1\.0\.0 /);
      expect(Object.values(await executions(iot, rollback!.jobId!))).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);

      // Telemetry through the hub's sink: every device reports, and its latest message names v1.
      const records = await queryTelemetry(e.telemetryDir);
      for (const t of live.things) {
        const mine = records.filter((r) => r.thingName === t);
        expect(mine.length).toBeGreaterThan(0);
        expect(mine.at(-1)!.telemetry.model).toEqual({ modelId: DEFAULT_DEMO.modelId, version: '1.0.0' });
        expect(mine.at(-1)!.telemetry.system.rssBytes).toBeGreaterThan(0);
      }

      // Completions from each agent's local API, served by v1.
      for (const a of live.agents) {
        const res = await fetch(`${a.httpUrl}/v1/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'The sea', maxTokens: 5 }),
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { text: string; model: { version: string } };
        expect(body.model.version).toBe('1.0.0');
        expect(body.text.length).toBeGreaterThan(0);
      }
      checked = true;
    };
    const result = await runDemo({
      ...DEFAULT_DEMO,
      maxParams: 4_000_000,
      searchIterations: 2000,
      searchPopulation: 64,
      evalChars: 1200,
      log: (l) => lines.push(l),
      inspect,
    });
    expect(checked).toBe(true);
    expect(result.timings.every((t) => t.ok)).toBe(true);
    expect(Number.isFinite(result.evaluation.perplexityDense)).toBe(true);
  });
});
