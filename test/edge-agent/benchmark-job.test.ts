// benchmark@1 end to end: `createBenchmarkRollout` publishes a signed grid and sends one job per device of
// a group; real agent processes download and verify it, time it in their niced worker and upload a
// layer-latency table with the job's presigned PUT; the tables merge and drive a search. Real local hub
// (MQTT, IoT Jobs, S3 stand-in), real onnxruntime. A job whose upload URL leaves the allow-list is refused.
// A llama grid (family, K/V heads) goes the same way.
import path from 'node:path';
import { AddThingToThingGroupCommand, CreateThingGroupCommand, GetJobDocumentCommand } from '@aws-sdk/client-iot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKeySigner } from '../../contracts/manifest-signing.ts';
import { createBenchmarkRollout, readRunTables, type BenchmarkRun } from '../../fleet/benchmark-rollout.ts';
import { mergeLatencyTables } from '../../fleet/latency-merge.ts';
import { groupLatencyTable, mergedTableKey, putMergedTable } from '../../fleet/latency-tables.ts';
import { localProfile } from '../../fleet/profile.ts';
import { parseLatencyTable } from '../../models/search/latency-table.ts';
import { searchArchitecture } from '../../models/search/search.ts';
import { AgentProcess, TestFleet, tempDir } from './agent-fixture.ts';

let fleet: TestFleet;
const agents: AgentProcess[] = [];
const THINGS = ['bench-1', 'bench-2'];
const arns = new Map<string, string>();
const GROUP = 'bench-fleet';
let run: BenchmarkRun;

beforeAll(async () => {
  fleet = await TestFleet.start();
  await fleet.iot.send(new CreateThingGroupCommand({ thingGroupName: GROUP }));
  for (const t of THINGS) {
    arns.set(t, await fleet.createThing(t));
    await fleet.iot.send(new AddThingToThingGroupCommand({ thingGroupName: GROUP, thingName: t }));
    agents.push(await AgentProcess.start(fleet, t, await tempDir(`fleetlm-agent-${t}-`)));
  }
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => {});
  await fleet?.stop();
});

/** A benchmark@1 run of `grid` on the group: two KV lengths, a few samples, one thread. */
function rolloutGrid(grid: Parameters<typeof createBenchmarkRollout>[3]['grid']) {
  return createBenchmarkRollout(fleet.iot, fleet.s3, localProfile(fleet.hub.endpoints), {
    group: GROUP,
    deviceClass: 'rpi4',
    grid,
    kvLengths: [16, 64],
    samples: 5,
    warmup: 1,
    threads: 1,
    timeLimitSec: 60,
    idleQuietMs: 0,
    timeoutMinutes: 10,
    signer: new LocalKeySigner(fleet.keys.privateKeyPem),
  });
}

describe('benchmark job', () => {
  it('times the signed grid on every device and uploads tables that merge and drive the search', async () => {
    const profile = localProfile(fleet.hub.endpoints);
    run = await rolloutGrid({ widths: [64, 128], ffnRatios: [4], headDim: 64, vocabSize: 512, storage: 'fp32' });
    expect(run.jobs.map((j) => j.thingName)).toEqual(THINGS);
    for (const j of run.jobs) {
      const e = await fleet.waitTerminal(j.jobId, j.thingName, 90_000);
      expect(e.status, JSON.stringify(e.statusDetails)).toBe('SUCCEEDED');
      expect(Number(e.statusDetails!.detailsMap!.layers)).toBeGreaterThan(0);
      expect(e.statusDetails!.detailsMap!.onnxruntime).toMatch(/^\d+\.\d+/);
    }
    const { tables, missing } = await readRunTables(fleet.s3, profile.s3.bucket, run);
    expect(missing).toEqual([]);
    for (const [i, value] of tables.entries()) {
      const t = parseLatencyTable(value);
      expect(t.device).toBe('rpi4');
      expect(t.storage).toBe('fp32');
      expect(t.seqLen).toBe(16);
      expect(t.measuredOn!.thingName).toBe(THINGS[i]);
      expect(t.measuredOn!.runId).toBe(run.runId);
      expect(t.measuredOn!.board.length).toBeGreaterThan(0);
      // Every layer at both KV lengths unless noise left one without a positive difference.
      expect(t.layers.length).toBeGreaterThan(0);
      expect(t.layers.every((l) => l.ms > 0 && [16, 64].includes(l.seqLen!))).toBe(true);
    }
    const [merged] = mergeLatencyTables(tables);
    expect(merged!.devices).toEqual(THINGS);
    await putMergedTable(fleet.s3, profile.s3.bucket, mergedTableKey(GROUP, 'rpi4', 'fp32'), merged!.table);
    const found = await groupLatencyTable(profile, GROUP, 'rpi4', undefined);
    expect(found?.url).toContain(`latency/${GROUP}/rpi4-fp32.json`);
    const r = searchArchitecture({ device: 'rpi4', latencyTable: found!.table, seqLen: 16, vocabSize: 512, contextLength: 64, widths: [64, 128], iterations: 2000, budgets: { latencyMs: 50 } });
    expect(r.device?.latencyModel).toBe('measured');
    expect(await groupLatencyTable(profile, 'no-such-group', 'rpi4', undefined)).toBeNull();
  }, 180_000);

  it('refuses a benchmark whose upload URL is outside download.allowedHosts, before downloading anything', async () => {
    const doc = JSON.parse((await fleet.iot.send(new GetJobDocumentCommand({ jobId: run.jobs[0]!.jobId }))).document!) as { upload: { url: string } };
    doc.upload.url = 'https://uploads.example.com/benchmarks/x.json';
    await fleet.createJob('bench-bad-upload', arns.get(THINGS[0]!)!, doc);
    const e = await fleet.waitTerminal('bench-bad-upload', THINGS[0]!, 30_000);
    expect(e.status).toBe('REJECTED');
    expect(e.statusDetails!.detailsMap!.code).toBe('VALIDATION_URL_NOT_ALLOWED');
    expect(agents[0]!.count((l) => l.msg === 'download complete' && l.jobId === 'bench-bad-upload')).toBe(0);
  }, 60_000);

  it('times a llama grid (K/V heads 1 and 2) and its entries merge apart from gpt2 ones; gpt2 job documents carry no family', async () => {
    const gpt2Doc = JSON.parse((await fleet.iot.send(new GetJobDocumentCommand({ jobId: run.jobs[0]!.jobId }))).document!) as { models: object[] };
    expect(gpt2Doc.models.some((m) => 'family' in m || 'kvHeads' in m)).toBe(false);
    const profile = localProfile(fleet.hub.endpoints);
    const llamaRun = await rolloutGrid({ widths: [64], ffnRatios: [3], heads: [4], headDim: 16, vocabSize: 512, storage: 'fp32', family: 'llama', kvHeads: [1, 2] });
    expect(llamaRun.family).toBe('llama');
    const doc = JSON.parse((await fleet.iot.send(new GetJobDocumentCommand({ jobId: llamaRun.jobs[0]!.jobId }))).document!) as { models: Array<{ family?: string; kvHeads?: number }> };
    expect(doc.models.every((m) => m.family === 'llama' && [1, 2].includes(m.kvHeads!))).toBe(true);
    for (const j of llamaRun.jobs) {
      const e = await fleet.waitTerminal(j.jobId, j.thingName, 90_000);
      expect(e.status, JSON.stringify(e.statusDetails)).toBe('SUCCEEDED');
    }
    const gpt2Tables = (await readRunTables(fleet.s3, profile.s3.bucket, run)).tables;
    const { tables } = await readRunTables(fleet.s3, profile.s3.bucket, llamaRun);
    for (const value of tables) {
      const t = parseLatencyTable(value);
      expect(t.layers.length).toBeGreaterThan(0);
      expect(t.layers.every((l) => l.family === 'llama' && [1, 2].includes(l.kvHeads!) && l.heads === 4 && l.headDim === 16)).toBe(true);
      expect(t.heads.every((h) => h.family === 'llama')).toBe(true);
    }
    // Both runs' tables of a device class merge into one table; the families stay separate entries.
    const [merged] = mergeLatencyTables([...gpt2Tables, ...tables]);
    // Each device timed two runs and counts once.
    expect(merged!.devices).toEqual(THINGS);
    expect(merged!.table.mergedFrom!.runIds).toEqual([run.runId, llamaRun.runId].sort());
    expect(merged!.table.layers.some((l) => l.family === undefined)).toBe(true);
    expect(merged!.table.layers.some((l) => l.family === 'llama')).toBe(true);
    const r = searchArchitecture({ device: 'rpi4', family: 'llama', headDim: 16, latencyTable: merged!.table, seqLen: 16, vocabSize: 512, contextLength: 64, widths: [64], iterations: 1000, budgets: { latencyMs: 50 } });
    expect(r.device?.latencyModel).toBe('measured');
    expect(r.spec.positions).toBe('rotary');
  }, 180_000);
});
