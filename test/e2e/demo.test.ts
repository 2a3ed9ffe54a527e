// The demo pipeline end to end with small settings: a real hub, three agent processes, search,
// build, evaluate, signed publish, IoT Job rollout, a broken version and a rollback. Assertions
// read only what devices report through the protocols: job executions via @aws-sdk/client-iot,
// telemetry via the hub's sink, completions via each agent's HTTP API. By default the trained demo
// model (assets/demo-model) ships with its BPE tokenizer; `ship: 'searched'` ships random weights.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DescribeJobCommand, DescribeJobExecutionCommand, IoTClient, ListJobExecutionsForJobCommand, ListJobsCommand } from '@aws-sdk/client-iot';
import { DEFAULT_DEMO, runDemo, type DemoLive } from '../../local-demo/demo.ts';
import { queryTelemetry } from '../../local-hub/telemetry-sink.ts';
import { DEMO_MODEL_DIR } from '../../local-demo/model-pipeline.ts';
import { loadLanguageModel, loadTokenizer } from '../../models/runtime/index.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

async function complete(httpUrl: string, prompt: string, maxTokens: number, temperature?: number): Promise<{ text: string; model: { version: string } }> {
  const res = await fetch(`${httpUrl}/v1/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, maxTokens, ...(temperature !== undefined ? { temperature } : {}) }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { text: string; model: { version: string } };
}

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
      // Unfiltered: the canary job targets the canary device, not the group, so a group filter would not list it.
      const all = (await iot.send(new ListJobsCommand({}))).jobs ?? [];
      // One benchmark job per device came first (the fleet times its layers before the search).
      expect(all.filter((j) => j.jobId!.startsWith('fleetlm-bench-'))).toHaveLength(3);
      const jobs = all.filter((j) => !j.jobId!.startsWith('fleetlm-bench-'));
      expect(jobs).toHaveLength(3);
      const described = await Promise.all(jobs.map(async (j) => (await iot.send(new DescribeJobCommand({ jobId: j.jobId! }))).job!));
      described.sort((a, b) => a.createdAt!.getTime() - b.createdAt!.getTime());
      const [good, broken, rollback] = described;

      // v1: every device reports SUCCEEDED.
      expect(good!.description).toMatch(/@1\.0\.0 /);
      expect(Object.values(await executions(iot, good!.jobId!))).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
      expect(good!.status).toBe('COMPLETED');

      // v2 (corrupt ONNX): publish's bundle check refuses it; published with the check skipped (validly signed),
      // the canary job (one device) fails its health check, the abort criterion cancels it, no device ever
      // reports SUCCEEDED for it, and the rollout's own job for the others never exists.
      expect(live.result.brokenRefusal).toMatchObject({ code: 'VALIDATION_BUNDLE_LOAD', message: expect.stringMatching(/must load in onnxruntime/) });
      expect(broken!.description).toMatch(/@2\.0\.0-broken .*\(canary of \S+\)$/);
      expect(broken!.jobId).toMatch(/-canary$/);
      expect(Object.keys(await executions(iot, broken!.jobId!))).toHaveLength(1);
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

      // Completions from each agent's local API, served by v1: greedy text equals what the shipped
      // (compressed) model gives with the trained model's BPE tokenizer here, so the devices run the
      // trained weights and decode with the bundled tokenizer (GPT-2's ids would not even fit the 4,096-id embedding).
      const bpe = await loadTokenizer(path.join(DEMO_MODEL_DIR, 'tokenizer.json'));
      const lm = await loadLanguageModel(path.join(live.result.dir, 'bundle-v1', 'model.onnx'), { tokenizer: bpe, intraOpNumThreads: 1 });
      const prompt = 'The whale';
      const expected = await lm.generateText(prompt, { maxTokens: 12, temperature: 0 }).finally(() => lm.dispose());
      expect(expected.text.length).toBeGreaterThan(0);
      for (const a of live.agents) {
        const body = await complete(a.httpUrl, prompt, 12, 0);
        expect(body.model.version).toBe('1.0.0');
        expect(body.text).toBe(expected.text);
        expect(bpe.decode(bpe.encode(body.text))).toBe(body.text);
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
    // The devices benchmark first; the search designs against the merged measured table and says so.
    expect(lines.some((l) => /^\[\d+\] benchmark devices \(layer latency\) done .*median of [23] devices -> s3:\/\/.*latency\/demo-fleet\/rpi4-int4\.json/.test(l))).toBe(true);
    expect(lines.some((l) => /^\[\d+\] search \(rpi4[^)]*\) done .*by the fleet-measured table/.test(l))).toBe(true);
    // Three identical processes on one loaded machine: one may come out an outlier (named, left out of the median).
    expect(result.latency).toMatchObject({ searchLatencyModel: 'measured' });
    expect(result.latency!.devices.length + result.latency!.outliers.length).toBe(3);
    // The report: predicted (both models) vs reported decode latency of what shipped, on all three devices.
    expect(result.latency!.check).toHaveLength(1);
    expect(result.latency!.check[0]).toMatchObject({ deviceClass: 'rpi4', version: '1.0.0', devices: ['demo-device-1', 'demo-device-2', 'demo-device-3'] });
    expect(result.latency!.check[0]!.tableMs).toBeGreaterThan(0);
    expect(result.latency!.check[0]!.rooflineMs).toBeGreaterThan(0);
    expect(lines.some((l) => l.startsWith('Predicted vs measured decode latency'))).toBe(true);
    // The search still runs and shows its design; the trained model is what ships.
    expect(lines.some((l) => /^\[\d+\] search \(rpi4, objective [a-z-]+\) done/.test(l))).toBe(true);
    // The committed model comes from the demo's default search (assets/demo-model/provenance.json); this
    // run's smaller search finds another design, and the demo says so rather than claim it ships this one.
    expect(lines.some((l) => l.includes('the trained demo model is NOT this design: it is the design of another search (`fleetlm search --device rpi4 --params 6000000') && l.includes('fleetlm search --device rpi4 --params 4000000'))).toBe(true);
    expect(lines.some((l) => l.includes("shipping the trained demo model (another search's design, not this one): 6.0M params"))).toBe(true);
    expect(result.shipped.kind).toBe('trained');
    expect(result.published[0]!.manifest.tokenizer).toEqual({ kind: 'huggingface', file: 'tokenizer.json' });
    expect(result.published[0]!.files.map((f) => `${f.name}:${f.role}`).sort()).toEqual(['model.onnx:model', 'tokenizer.json:tokenizer']);
    // auto compares the methods at 2x; on this model SVD has by far the lowest error (docs/training.md).
    expect(result.compression.method).toBe('svd');
    expect(result.compression.why).toMatch(/auto picked svd .*tt-row .*tt-matrix/);
    // Held-out text: a trained model is far below the uniform 4,096, and 2x SVD costs little.
    expect(result.evaluation.text).toMatch(/held-out/);
    expect(result.evaluation.perplexityDense).toBeLessThan(1000);
    expect(result.evaluation.perplexityCompressed).toBeLessThan(result.evaluation.perplexityDense * 1.1);
    // Quantized after the compression: int4 passes the gate on this model and is what shipped.
    expect(result.quality).toMatchObject({ passed: true, quantization: 'int4 block 32' });
    expect(result.quality.steps.map((s) => s.step)).toEqual([expect.stringMatching(/^embedding svd/), 'quantize int4 block 32 asym']);
    expect(result.quality.totalChange).toBeLessThanOrEqual(result.quality.maxPerplexityIncrease);
    expect(result.published[0]!.manifest.evaluation).toMatchObject({ quality: { passed: true } });
  });

  it('ships the searched design with random weights and GPT-2 tokens when asked', { timeout: 120_000 }, async () => {
    const lines: string[] = [];
    let answered: string[] = [];
    const result = await runDemo({
      ...DEFAULT_DEMO,
      ship: 'searched',
      broken: false,
      devices: 1,
      maxParams: 4_000_000,
      searchIterations: 2000,
      searchPopulation: 64,
      evalChars: 600,
      log: (l) => lines.push(l),
      inspect: async (live) => {
        answered = await Promise.all(live.agents.map(async (a) => (await complete(a.httpUrl, 'The sea', 4)).text));
      },
    });
    expect(result.shipped.kind).toBe('searched');
    expect(result.published[0]!.manifest.tokenizer).toEqual({ kind: 'gpt2-bpe' });
    expect(result.compression.method).toBe('tt-row');
    expect(lines.some((l) => l.includes('shipping the trained demo model'))).toBe(false);
    expect(answered).toHaveLength(1);
    expect(answered[0]!.length).toBeGreaterThan(0);
  });
});
