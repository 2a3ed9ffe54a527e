// Faults an adversarial operator (or bad luck) produces, against real agent processes, a real hub and
// onnxruntime: a model whose logits are NaN or flat, damaged current.json / install-state.json after a
// power cut, a disk that fills during the download (a real tmpfs), a phase that keeps crashing the agent,
// and a storage outage longer than the old retry budget.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initWeights } from '../../models/arch/weights.ts';
import { buildDecoderModel } from '../../models/onnx/build-decoder.ts';
import { saveOnnxModel } from '../../models/onnx/proto.ts';
import { readTelemetryDir } from '../../fleet/telemetry-reader.ts';
import { AgentProcess, TEST_SPEC, TestFleet, buildTestModel, eventually, sleep, tempDir, type BuiltModel } from './agent-fixture.ts';
import { canMountTmpfs } from '../helpers/tmpfs.ts';

let fleet: TestFleet;
let good: BuiltModel;
let good2: BuiltModel;
const agents: AgentProcess[] = [];

/** The test model with one weight tensor changed after initialisation. */
async function buildBrokenModel(seed: number, tensor: string, change: (data: Float32Array) => void): Promise<BuiltModel> {
  const dir = await tempDir('fleetlm-agent-broken-');
  const weights = initWeights(TEST_SPEC, seed);
  change(weights.get(tensor)!.data);
  const saved = await saveOnnxModel(buildDecoderModel(TEST_SPEC, weights), path.join(dir, 'model.onnx'));
  return { dir, files: [{ name: 'model.onnx', path: saved.modelPath }] };
}

async function startAgent(thing: string, dir: string, env: Record<string, string> = {}): Promise<AgentProcess> {
  const a = await AgentProcess.start(fleet, thing, dir, env);
  agents.push(a);
  return a;
}

async function deploy(jobId: string, arn: string, thing: string, modelId: string, version: string, model: BuiltModel) {
  await fleet.createJob(jobId, arn, await fleet.publish(modelId, version, model));
  return fleet.waitTerminal(jobId, thing, 60_000);
}

/** Bytes in the `.part` files under an agent's state directory (a download in flight). */
async function partFileBytes(dir: string): Promise<number> {
  const entries = await fs.readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let total = 0;
  for (const e of entries.filter((n) => n.endsWith('.part'))) total += (await fs.stat(path.join(dir, e)).catch(() => ({ size: 0 }))).size;
  return total;
}

const readJson = async (file: string) => JSON.parse(await fs.readFile(file, 'utf8'));

beforeAll(async () => {
  fleet = await TestFleet.start();
  good = await buildTestModel(11);
  good2 = await buildTestModel(12);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.kill();
  await fleet?.stop();
});

describe('health check against broken weights', () => {
  it('rejects NaN logits and flat logits with their own codes, rolls back, and keeps serving the old model', async () => {
    const thing = 'fault-nan-1';
    const arn = await fleet.createThing(thing);
    const agent = await startAgent(thing, await tempDir('fleetlm-agent-nan-'));
    expect((await deploy('nan-base', arn, thing, 'nan', '1', good)).status).toBe('SUCCEEDED');

    // One NaN in the final norm's gain: every logit is NaN, yet greedy decoding emits token 0 at full speed.
    const nan = await buildBrokenModel(13, 'final_ln.weight', (d) => (d[0] = Number.NaN));
    const bad = await deploy('nan-job', arn, thing, 'nan', '2', nan);
    expect(bad.status).toBe('FAILED');
    expect(bad.statusDetails?.detailsMap).toMatchObject({ step: 'health-check', code: 'HEALTH_NON_FINITE_LOGITS', rolledBackTo: 'nan@1' });
    expect(bad.statusDetails?.detailsMap?.reason).toMatch(/logits must be finite; \d+ of \d+ values/);

    // A zero gain: every logit is 0, so the model prefers no token (the output is token 0 forever).
    const flat = await buildBrokenModel(14, 'final_ln.weight', (d) => d.fill(0));
    const deg = await deploy('flat-job', arn, thing, 'nan', '3', flat);
    expect(deg.status).toBe('FAILED');
    expect(deg.statusDetails?.detailsMap).toMatchObject({ code: 'HEALTH_DEGENERATE_OUTPUT', rolledBackTo: 'nan@1' });

    const g = await agent.generate('Hello');
    expect(g.status).toBe(200);
    expect(g.body.model).toEqual({ modelId: 'nan', version: '1' });
    await agent.stop();
  }, 120_000);
});

describe('damaged files after a power cut', () => {
  it('rebuilds an empty current.json from the newest complete version, reports it, and keeps taking jobs', async () => {
    const thing = 'fault-pointer-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-pointer-');
    let agent = await startAgent(thing, dir);
    expect((await deploy('ptr-1', arn, thing, 'ptr', '1', good)).status).toBe('SUCCEEDED');
    expect((await deploy('ptr-2', arn, thing, 'ptr', '2', good2)).status).toBe('SUCCEEDED');
    await agent.stop();

    const pointer = path.join(dir, 'models', 'current.json');
    await fs.writeFile(pointer, ''); // what an SD card that dropped the write leaves
    agent = await startAgent(thing, dir);
    expect((await agent.generate('Hi')).body.model).toEqual({ modelId: 'ptr', version: '2' });
    expect((await readJson(pointer)).current).toEqual({ modelId: 'ptr', version: '2' });
    const kept = (await fs.readdir(path.join(dir, 'models'))).filter((n) => n.startsWith('current.json.corrupt-'));
    expect(kept).toHaveLength(1);
    expect(await fs.readFile(path.join(dir, 'models', kept[0]!), 'utf8')).toBe('');
    const note = await eventually(
      async () =>
        (await readTelemetryDir(fleet.hub.endpoints.telemetryDir)).find((t) => t.thingName === thing && t.event === 'recovery')?.recovery?.[0],
      15_000,
      'a recovery telemetry message',
    );
    expect(note).toMatchObject({ file: pointer, problem: 'the file is empty', action: expect.stringMatching(/current ptr@2/) });
    await agent.stop();

    // Garbage in the pointer and a damaged newest version: only a version whose files match its signed manifest serves.
    await fs.writeFile(pointer, '{"schema":"fleetlm/current@1","cur');
    const v2 = path.join(dir, 'models', 'versions', 'ptr', '2', 'model.onnx');
    const bytes = await fs.readFile(v2);
    bytes[bytes.length >> 1] ^= 0xff;
    await fs.writeFile(v2, bytes);
    agent = await startAgent(thing, dir);
    expect((await agent.generate('Hi')).body.model).toEqual({ modelId: 'ptr', version: '1' });
    expect((await readJson(pointer)).current).toEqual({ modelId: 'ptr', version: '1' });
    expect(agent.count((l) => l.msg === 'installed version left out of the rebuilt pointer' && l.model === 'ptr@2')).toBe(1);
    // Still reachable: the next deploy goes through.
    expect((await deploy('ptr-3', arn, thing, 'ptr', '3', good2)).status).toBe('SUCCEEDED');
    await agent.stop();
  }, 150_000);

  it('keeps an empty install-state.json aside and finishes the job it lost when the service offers it again', async () => {
    const thing = 'fault-state-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-state-');
    let agent = await startAgent(thing, dir);
    expect((await deploy('st-1', arn, thing, 'st', '1', good)).status).toBe('SUCCEEDED');
    await agent.stop();

    // Power cut mid-download, and the state file written last comes back empty.
    agent = await startAgent(thing, dir, { FLEETLM_AGENT_TEST_HOOKS_KILL_ON_PHASE: 'downloading' });
    await fleet.createJob('st-2', arn, await fleet.publish('st', '2', good2));
    expect(await agent.waitExit()).toBeNull();
    const stateFile = path.join(dir, 'state', 'install-state.json');
    expect((await readJson(stateFile)).active.jobId).toBe('st-2');
    await fs.writeFile(stateFile, '');

    agent = await startAgent(thing, dir);
    expect(agent.count((l) => l.msg === 'recovered a damaged file' && l.file === stateFile)).toBe(1);
    const exec = await fleet.waitTerminal('st-2', thing, 60_000);
    expect(exec.status).toBe('SUCCEEDED');
    expect((await agent.generate('Hi')).body.model).toEqual({ modelId: 'st', version: '2' });
    expect((await fs.readdir(path.join(dir, 'state'))).some((n) => n.startsWith('install-state.json.corrupt-'))).toBe(true);
    await agent.stop();
  }, 150_000);
});

describe('crash loop', () => {
  it('rolls a job back with AGENT_CRASH_LOOP after it crashed the agent 3 times in one phase', async () => {
    const thing = 'fault-loop-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-loop-');
    let agent = await startAgent(thing, dir);
    expect((await deploy('loop-1', arn, thing, 'loop', '1', good)).status).toBe('SUCCEEDED');
    await agent.stop();

    // systemd's Restart=always: the agent comes back after each crash, and the job crashes it again in installing.
    const hook = { FLEETLM_AGENT_TEST_HOOKS_KILL_ON_PHASE: 'installing' };
    await fleet.createJob('loop-2', arn, await fleet.publish('loop', '2', good2));
    let crashes = 0;
    for (let run = 0; run < 6; run++) {
      // It may die before it logs 'agent started' (the job resumes as soon as the state is read).
      const started = await AgentProcess.start(fleet, thing, dir, hook).catch(() => null);
      if (started) {
        agents.push(started);
        const ended = await Promise.race([
          started.waitExit().then(() => 'died' as const),
          fleet.waitTerminal('loop-2', thing, 60_000).then(() => 'job ended' as const, () => 'died' as const),
        ]);
        if (ended === 'job ended') {
          agent = started;
          break;
        }
      }
      crashes++;
    }
    expect(crashes).toBe(3);
    const exec = await fleet.waitTerminal('loop-2', thing, 60_000);
    expect(exec.status).toBe('FAILED');
    expect(exec.statusDetails?.detailsMap).toMatchObject({ step: 'installing', code: 'AGENT_CRASH_LOOP', rolledBackTo: 'loop@1' });
    expect((await agent.generate('Hi')).body.model).toEqual({ modelId: 'loop', version: '1' });
    await expect(fs.stat(path.join(dir, 'models', 'versions', 'loop', '2'))).rejects.toThrow();
    await expect(fs.readdir(path.join(dir, 'models', 'staging'))).resolves.toEqual([]);
    await agent.stop();
  }, 180_000);
});

describe('storage faults during the download', () => {
  it('rides out a storage outage longer than the old retry budget (~15 s) with the retry policy', async () => {
    const thing = 'fault-outage-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-outage-');
    const agent = await startAgent(thing, dir, {
      FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC: '150000',
      FLEETLM_AGENT_DOWNLOAD_RETRY_INITIAL_DELAY_MS: '500',
      FLEETLM_AGENT_DOWNLOAD_RETRY_MAX_DELAY_MS: '3000',
      FLEETLM_AGENT_DOWNLOAD_RETRY_DEADLINE_MS: '120000',
    });
    await fleet.createJob('outage-1', arn, await fleet.publish('outage', '1', good));
    await agent.waitLog((l) => l.msg === 'install phase' && l.phase === 'downloading');
    // Bytes must be on disk before the outage, or the resume has nothing to ask a Range for (a loaded CI
    // machine can still be connecting when the phase starts).
    await eventually(async () => (await partFileBytes(dir)) >= 100_000, 60_000, 'the first 100 kB of the model');
    // Storage and broker gone for 30 s, starting mid-download (the 3.2 MB model takes ~20 s at this rate).
    await fleet.hubDown(async () => {
      await agent.waitLog((l) => l.msg === 'download interrupted; will resume', 30_000);
      await sleep(30_000);
    });
    const exec = await fleet.waitTerminal('outage-1', thing, 90_000);
    expect(exec.status).toBe('SUCCEEDED');
    const interrupted = agent.logs.filter((l) => l.msg === 'download interrupted; will resume');
    // At least the interruption the outage caused; usually several retries follow within the 30 s, but one CI run
    // (loaded machine) logged a single one and still resumed: the download logs go into the message to find out why.
    expect(interrupted.length, JSON.stringify(agent.logs.filter((l) => /download|resum|install phase/.test(String(l.msg))))).toBeGreaterThanOrEqual(1);
    expect(Math.max(...interrupted.map((l) => Number(l.delayMs)))).toBeLessThanOrEqual(3000); // the backoff cap
    // An outage that cuts the file short is resumed with a Range request. The server writes the whole 3.2 MB
    // into loopback socket buffers long before the throttled agent reads it, so in some runs (three loaded CI
    // runs of about ten) the hub went down after the last byte had left it: the agent then reads every byte,
    // sees the connection end early, and its retry only verifies the complete file, with no request at all.
    const rangeRequests = Number(exec.statusDetails?.detailsMap?.rangeRequests);
    const size = (await fs.stat(good.files.find((f) => f.name === 'model.onnx')!.path)).size;
    expect(interrupted.map((l) => Number(l.expectedBytes))).toEqual(interrupted.map(() => size));
    const cutShort = interrupted.filter((l) => Number(l.bytesOnDisk) < size);
    expect(rangeRequests).toBe(cutShort.length > 0 ? cutShort.length : 0);
    // Either way no byte came twice: each resume asked for the rest only.
    expect(Number(exec.statusDetails?.detailsMap?.bytesFetched)).toBe(size);
    await agent.stop();
  }, 180_000);

  // A real full filesystem: the model directory is a small tmpfs that a filler file fills mid-download.

  it.skipIf(!canMountTmpfs)('fails at once with VALIDATION_DISK_FULL when the disk fills mid-download, leaving nothing behind', async () => {
    const thing = 'fault-full-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-full-');
    const models = path.join(dir, 'models');
    await fs.mkdir(models);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', models]);
    let agent: AgentProcess | undefined;
    try {
      agent = await startAgent(thing, dir, {
        FLEETLM_AGENT_DOWNLOAD_RESERVE_FREE_BYTES: '0',
        FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC: '600000',
      });
      const jobId = 'full-1';
      await fleet.createJob(jobId, arn, await fleet.publish('full', '1', good));
      const part = path.join(models, 'staging', jobId, 'model.onnx.part');
      await eventually(async () => ((await fs.stat(part).catch(() => null))?.size ?? 0) > 200_000, 20_000, 'part of the download');
      // Another writer takes all but 256 KiB of what is left (the margin keeps the filler itself from hitting ENOSPC).
      const st = await fs.statfs(models);
      await fs.writeFile(path.join(models, 'filler'), Buffer.alloc(Number(st.bavail) * Number(st.bsize) - 256 * 1024));
      const exec = await fleet.waitTerminal(jobId, thing, 30_000);
      expect(exec.status).toBe('FAILED');
      expect(exec.statusDetails?.detailsMap).toMatchObject({ step: 'downloading', code: 'VALIDATION_DISK_FULL' });
      expect(agent.count((l) => l.msg === 'download interrupted; will resume')).toBe(0);
      expect(await fs.readdir(path.join(models, 'staging')).catch(() => [])).toEqual([]);
      await agent.stop();
    } finally {
      await agent?.kill();
      execFileSync('umount', ['-l', models]);
    }
  }, 120_000);
});
