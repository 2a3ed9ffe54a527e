// `--json` output, checked on real runs: every command with --json has one schema in cli/json-output.ts, and
// what each prints (against a real local hub for the fleet commands, on tiny real models for the model
// commands) is one top-level object that matches it, with numbers as numbers.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { COMMANDS } from '../../cli/commands/index.ts';
import { JSON_OUTPUTS, JsonErrorSchema, type JsonOutputCommand } from '../../cli/json-output.ts';
import { createIotClient, readLocalProfile } from '../../fleet/profile.ts';
import { provisionThings } from '../../local-demo/provision.ts';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';
import { llamaFixture, writeHfFolder } from '../models/checkpoint/hf-fixtures.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { TestDevice } from '../local-hub/helpers.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const REPO = path.resolve(import.meta.dirname, '../..');

/** Commands whose --json output this file does not produce, and why (their schemas are still checked for presence). */
const NOT_RUN_HERE: Partial<Record<JsonOutputCommand, string>> = {
  'kms-public-key': 'needs AWS KMS GetPublicKey with KeySpec (moto lacks it; test/fleet/kms-signer.test.ts covers the export)',
  'agent package': 'copies the native packages into a tarball, minutes on this machine (test/cli/agent-package.test.ts)',
  demo: 'the whole demo loop (test/e2e/demo.test.ts runs it)',
  approve: 'answers a Step Functions task token: AWS only (test/cloud/approve.test.ts runs it against moto)',
  benchmark: 'needs agents that time a layer grid (test/edge-agent/benchmark-job.test.ts runs the job end to end)',
  latency: 'needs the tables of a finished benchmark run (test/edge-agent/benchmark-job.test.ts, test/fleet/latency-check.test.ts)',
};

/** Paths of string values that look like numbers, outside fields that are text by nature. */
function numericStrings(value: unknown, at = ''): string[] {
  if (typeof value === 'string') return /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value) ? [at] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => numericStrings(v, `${at}[${i}]`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) =>
      // Versions ("1.0"), generated text, IoT status details (strings by the Jobs API's rule).
      ['version', 'text', 'statusDetails', 'prompt'].includes(k) ? [] : numericStrings(v, at ? `${at}.${k}` : k),
    );
  }
  return [];
}

const validated = new Set<string>();

/** Runs `fleetlm ...args --json`, expects exit 0, and validates stdout against the command's schema. */
async function json<C extends JsonOutputCommand>(command: C, args: string[]): Promise<z.output<(typeof JSON_OUTPUTS)[C]>> {
  const r = await runCliCaptured([...command.split(' '), ...args, '--json']);
  expect(r.code, `${command}: ${r.stderr}`).toBe(0);
  return checkOutput(command, r.stdout);
}

function checkOutput<C extends JsonOutputCommand>(command: C, stdout: string): z.output<(typeof JSON_OUTPUTS)[C]> {
  const value: unknown = JSON.parse(stdout);
  expect(typeof value === 'object' && value !== null && !Array.isArray(value), `${command}: a top-level object`).toBe(true);
  const parsed = JSON_OUTPUTS[command].safeParse(value);
  expect(parsed.success ? [] : parsed.error.issues, command).toEqual([]);
  expect(numericStrings(value), `${command}: numbers as strings`).toEqual([]);
  validated.add(command);
  return parsed.data as z.output<(typeof JSON_OUTPUTS)[C]>;
}

/** Spawns a long-running command (`local up`, `console`), reads its one JSON object from stdout, then stops it with SIGINT. */
function firstJsonOfServer(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO, 'bin/fleetlm.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no JSON from fleetlm ${args.join(' ')}: ${err}`));
    }, 60_000);
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        JSON.parse(out);
      } catch {
        return; // not all of it yet
      }
      child.kill('SIGINT');
    });
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

let dir = '';
let hub: LocalHub;
let hubDir = '';
let bundleBytes = 0;

beforeAll(async () => {
  dir = await tempDir('fleetlm-json-');
  hubDir = path.join(dir, 'hub');
  hub = await startHub({ dir: hubDir });
  await provisionThings(createIotClient(readLocalProfile(hubDir)), 'lab', ['pi-1']);
  await provisionThings(createIotClient(readLocalProfile(hubDir)), 'rb', ['pi-3']);
  mkdirSync(path.join(dir, 'bundle'));
  // A real model: publish checks that the bundle loads and generates.
  bundleBytes = (await writeTinyModel(path.join(dir, 'bundle'))).modelBytes;
  writeFileSync(path.join(dir, 'text.txt'), 'the quick brown fox jumps over the lazy dog and keeps running into the night.\n'.repeat(20));
}, 60_000);

afterAll(async () => {
  await hub?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('--json output shapes', () => {
  it('has one schema for exactly the commands that take --json', async () => {
    const withJson: string[] = [];
    for (const entry of COMMANDS) {
      const program = new Command('fleetlm');
      (await entry.load()).register(program);
      const walk = (cmd: Command, prefix: string[]): void => {
        const names = [...prefix, cmd.name()];
        if (cmd.options.some((o) => o.long === '--json')) withJson.push(names.join(' '));
        for (const sub of cmd.commands) walk(sub, names);
      };
      for (const top of program.commands) walk(top, []);
    }
    expect(withJson.sort()).toEqual(Object.keys(JSON_OUTPUTS).sort());
  });

  it('fleet commands against a local hub: keygen, device register, publish, rollout, status, jobs, devices, versions, deprecate, telemetry, cancel, local endpoints, rollback, authorize-rollback', async () => {
    const local = ['--local', hubDir];
    const keys = await json('keygen', ['--out-dir', path.join(dir, 'keys')]);
    const device = await json('device register', [...local, '--thing', 'pi-2', '--group', 'lab', '--out', path.join(dir, 'pi-2', 'agent.json'), '--fleet-public-key', keys.publicKey]);
    expect(device.group).toBe('lab');
    const published = await json('publish', [...local, '--model-dir', path.join(dir, 'bundle'), '--model-id', 'tiny', '--version', '1.0', '--key', keys.privateKey]);
    expect(published.totalBytes).toBeGreaterThan(bundleBytes);
    const rollout = await json('rollout', [...local, '--model', 'tiny', '--version', '1.0', '--group', 'lab']);
    expect(rollout.targets).toEqual([expect.stringMatching(/thinggroup\/lab$/)]);
    const status = await json('status', [rollout.jobId, ...local]);
    expect(status.counts).toEqual({ QUEUED: 2 });
    const jobs = await json('jobs', local);
    expect(jobs.jobs[0]).toMatchObject({ jobId: rollout.jobId, total: 2 });
    const devices = await json('devices', local);
    expect(devices.devices.map((d) => d.thingName).sort()).toEqual(['pi-1', 'pi-2', 'pi-3']);
    const versions = await json('versions', local);
    expect(versions.versions[0]).toMatchObject({ modelId: 'tiny', version: '1.0', totalBytes: bundleBytes });
    const deprecated = await json('deprecate', [...local, '--model', 'tiny', '--version', '1.0', '--reason', 'a test']);
    expect(deprecated.deprecated?.reason).toBe('a test');
    await json('deprecate', [...local, '--model', 'tiny', '--version', '1.0', '--undo']);
    const telemetry = await json('telemetry', local);
    expect(telemetry.messages).toBe(0);
    const canceled = await json('cancel', [rollout.jobId, ...local]);
    expect(canceled.status).toBe('CANCELED');
    expect(canceled.canceled).toEqual([rollout.jobId]);
    const endpoints = await json('local endpoints', ['--dir', hubDir]);
    expect(endpoints.mqtt.port).toBe(hub.endpoints.mqtt.port);
    // A rollback: 1.0 succeeded on group rb (its device says so over the Jobs MQTT API), then 1.1 went out.
    const first = await json('rollout', [...local, '--model', 'tiny', '--version', '1.0', '--group', 'rb']);
    const pi3 = await TestDevice.connect(hub, 'pi-3');
    try {
      expect((await pi3.request(`${first.jobId}/update`, { status: 'IN_PROGRESS' })).outcome).toBe('accepted');
      expect((await pi3.request(`${first.jobId}/update`, { status: 'SUCCEEDED' })).outcome).toBe('accepted');
    } finally {
      await pi3.close();
    }
    await json('publish', [...local, '--model-dir', path.join(dir, 'bundle'), '--model-id', 'tiny', '--version', '1.1', '--key', keys.privateKey]);
    const second = await json('rollout', [...local, '--model', 'tiny', '--version', '1.1', '--group', 'rb']);
    const rolledBack = await json('rollback', [...local, '--group', 'rb']);
    expect(rolledBack).toMatchObject({ from: { jobId: second.jobId, version: '1.1' }, to: { jobId: first.jobId, version: '1.0' } });
    const authorized = await json('authorize-rollback', ['--model', 'tiny', '--version', '1.0', '--group', 'rb', '--key', keys.privateKey, '--out', path.join(dir, 'rb-auth.json')]);
    expect(authorized).toMatchObject({ modelId: 'tiny', version: '1.0', scope: { thingGroups: ['rb'], things: [] } });
    // Rolling back without an earlier good version fails: the error is one JSON object on stderr.
    const refused = await runCliCaptured(['rollback', ...local, '--group', 'lab', '--json']);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(JsonErrorSchema.parse(JSON.parse(refused.stderr)).error).toMatchObject({ code: 'VALIDATION', exitCode: 2 });
  }, 120_000);

  it('model commands on tiny real models: search, build, generate, perplexity, compress, quantize, train, import', async () => {
    const search = await json('search', ['--params', '2M', '--vocab', '512', '--context', '64', '--iterations', '200']);
    expect(search.params).toBeLessThanOrEqual(2_000_000);
    // A GPT-2-vocabulary model, so generate and perplexity use the default tokenizer.
    const spec = path.join(dir, 'gpt2-vocab.json');
    writeFileSync(spec, JSON.stringify({ name: 'gpt2-vocab-tiny', vocabSize: 50257, contextLength: 64, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }] }));
    const model = path.join(dir, 'g', 'model.onnx');
    const built = await json('build', ['--arch', spec, '--out', model]);
    expect(built.parameters).toBeGreaterThan(0);
    const generated = await json('generate', ['--model', model, '--prompt', 'Hello', '--max-tokens', '3', '--ignore-eos', '--threads', '1']);
    expect(generated.tokens).toHaveLength(3);
    const ppl = await json('perplexity', ['--model', model, '--text', path.join(dir, 'text.txt'), '--max-tokens', '32', '--threads', '1']);
    expect(ppl.perplexity).toBeGreaterThan(1);
    const compressed = await json('compress', ['--model', model, '--out', path.join(dir, 'g', 'c.onnx'), '--method', 'svd', '--ratio', '2']);
    expect(compressed.embedding.ratio).toBeGreaterThanOrEqual(2);
    const quantized = await json('quantize', ['--model', model, '--out', path.join(dir, 'g', 'q.onnx'), '--bits', '8']);
    expect(quantized.bits).toBe(8);
    const arch = path.join(dir, 'train-arch.json');
    writeFileSync(arch, JSON.stringify({ name: 't', vocabSize: 300, contextLength: 32, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }] }));
    const trained = await json('train', ['--arch', arch, '--text', path.join(dir, 'text.txt'), '--tokens', '64', '--seq', '8', '--batch', '2', '--tokenizer', 'bpe', '--vocab', '300', '--threads', '1', '--out', path.join(dir, 'ck', 't.safetensors')]);
    expect(trained.steps).toBe(4);
    const hf = path.join(dir, 'hf');
    const fx = llamaFixture({ architecture: 'LlamaForCausalLM', vocab: 48, hidden: 32, intermediate: 40, layers: 1, heads: 4, kvHeads: 2, tied: true, dtype: 'BF16', seed: 3 });
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'BF16', shards: 1, generationConfig: { eos_token_id: 2 } });
    const imported = await json('import', ['--hf', hf, '--out', path.join(dir, 'imported')]);
    expect(imported.parameters).toBeGreaterThan(0);
  }, 180_000);

  it('servers print one JSON object first: local up and console', async () => {
    checkOutput('local up', await firstJsonOfServer(['local', 'up', '--dir', path.join(dir, 'hub2'), '--json']));
    checkOutput('console', await firstJsonOfServer(['console', '--local', hubDir, '--json']));
  }, 120_000);

  it('ran every command with --json except the ones named in NOT_RUN_HERE', () => {
    const expected = Object.keys(JSON_OUTPUTS).filter((c) => !(c in NOT_RUN_HERE));
    expect([...validated].sort()).toEqual(expected.sort());
  });
});
