// What the device agent loads at start-up, read from the bundle's esbuild metafile: the MQTT client, the
// config and metrics, but not onnxruntime, the tokenizer libraries, the GPT-2 vocabulary or the model
// runtime. Those load with the first model (`import()`), which keeps idle RSS low (bench/agent-package.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleAgent } from '../../cli/agent-package/agent-bundle.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-agent-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('agent start-up set', () => {
  it('leaves onnxruntime, the tokenizers and the model runtime out of start-up', async () => {
    const r = await bundleAgent({ repoRoot: REPO, outDir: path.join(dir, 'agent'), launcherOutDir: path.join(dir, 'launcher'), version: '0.0.0-test' });
    const packages = new Set(r.startup.inputs.filter((i) => i.includes('node_modules/')).map((i) => i.split('node_modules/').pop()!.split('/').slice(0, i.split('node_modules/').pop()!.startsWith('@') ? 2 : 1).join('/')));
    // Present at start: the MQTT client and what the agent needs before any model.
    expect(packages).toContain('mqtt');
    expect(packages).toContain('zod');
    for (const heavy of ['@huggingface/tokenizers', '@huggingface/jinja', 'gpt-tokenizer', 'onnx-proto', 'protobufjs']) expect(packages, heavy).not.toContain(heavy);
    expect(r.startup.externals).not.toContain('onnxruntime-node');
    const modelFiles = r.startup.inputs.filter((i) => i.startsWith('models/'));
    for (const f of ['models/runtime/language-model.ts', 'models/runtime/onnx-backend.ts', 'models/runtime/tokenizer-hf.ts', 'models/runtime/tokenizer.ts']) expect(modelFiles, f).not.toContain(f);
    // The benchmark job's runner and timer load with the first benchmark job, not at start-up.
    for (const f of ['edge-agent/benchmark-runner.ts', 'edge-agent/benchmark-worker.ts', 'models/benchmark/decode-step-timer.ts']) expect(r.startup.inputs, f).not.toContain(f);
    expect(r.inputs).toContain('models/benchmark/decode-step-timer.ts');
    // The device never builds models: the ONNX builder, the quantizer and the grid builder are not in the bundle at all.
    const builders = r.inputs.filter((i) => /^models\/(onnx|quantization|compression|training)\/|^models\/benchmark\/grid\.ts$/.test(i));
    expect(builders).toEqual([]);
  });
});
