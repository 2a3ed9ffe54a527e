// runtime.executionProviders: validated in the agent config, checked against the installed onnxruntime
// (errors list what is installed), passed to session creation, and refused at agent start-up with exit 2.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../edge-agent/config.ts';
import { availableExecutionProviders, checkExecutionProviders, createSession } from '../../models/runtime/onnx-backend.ts';
import { REPO, buildTestModel, tempDir } from './agent-fixture.ts';

const base = { thingName: 't1', mqtt: { host: '127.0.0.1' }, modelDir: '/m', stateDir: '/s', fleetPublicKeyPath: '/k.pem' };

async function configFile(extra: Record<string, unknown> = {}): Promise<string> {
  const dir = await tempDir('fleetlm-ep-');
  const p = path.join(dir, 'agent.json');
  await fs.writeFile(p, JSON.stringify({ ...base, ...extra }));
  return p;
}

describe('runtime.executionProviders config', () => {
  it('defaults to the CPU provider and layers file < env < --set, comma-separated', async () => {
    expect(loadAgentConfig({ configPath: await configFile() }).runtime.executionProviders).toEqual(['cpu']);
    const file = await configFile({ runtime: { executionProviders: ['cuda', 'cpu'] } });
    expect(loadAgentConfig({ configPath: file }).runtime.executionProviders).toEqual(['cuda', 'cpu']);
    const env = { FLEETLM_AGENT_RUNTIME_EXECUTION_PROVIDERS: 'tensorrt, cuda,cpu' };
    expect(loadAgentConfig({ configPath: file, env }).runtime.executionProviders).toEqual(['tensorrt', 'cuda', 'cpu']);
    expect(loadAgentConfig({ configPath: file, env, overrides: ['runtime.executionProviders=cpu'] }).runtime.executionProviders).toEqual(['cpu']);
  });

  it('refuses an empty list, a repeated provider and a name that is not one', async () => {
    for (const [providers, why] of [
      [[], /runtime\.executionProviders/],
      [['cpu', 'cpu'], /must not repeat a provider/],
      [['CUDA EP'], /must be a provider name/],
    ] as const) {
      const file = await configFile({ runtime: { executionProviders: providers } });
      expect(() => loadAgentConfig({ configPath: file })).toThrow(why);
    }
  });
});

describe('installed execution providers', () => {
  const available = availableExecutionProviders();
  const installed = available.filter((p) => p.installed).map((p) => p.name);

  it('lists what onnxruntime-node reports, with the CPU provider installed', () => {
    expect(available.find((p) => p.name === 'cpu')).toEqual({ name: 'cpu', installed: true });
    expect(() => checkExecutionProviders(['cpu'])).not.toThrow();
  });

  it('refuses an unknown provider, naming the installed ones', () => {
    expect(() => checkExecutionProviders(['cpu', 'quantum'])).toThrow(new RegExp(`"quantum" is not in the installed onnxruntime-node .*installed: ${installed.join(', ')}`));
  });

  // The CPU build on this machine knows cuda but ships no CUDA provider library.
  const cuda = available.find((p) => p.name === 'cuda');
  it.skipIf(!cuda || cuda.installed)('refuses a known provider whose library is missing, at check and at session creation', async () => {
    expect(() => checkExecutionProviders(['cuda', 'cpu'])).toThrow(/cuda is known to onnxruntime-node .* libonnxruntime_providers_cuda\.so is not installed/);
    const model = await buildTestModel(1);
    await expect(createSession(model.files[0]!.path, { executionProviders: ['cuda', 'cpu'] })).rejects.toMatchObject({ code: 'MODEL_OPTIONS' });
    const ok = await createSession(model.files[0]!.path, { executionProviders: ['cpu'] });
    await ok.dispose();
  });

  it('the agent refuses to start with a provider that is not installed, exit 2, listing the installed ones', async () => {
    expect(existsSync(path.join(REPO, 'dist/agent/agent.mjs'))).toBe(true);
    const r = spawnSync(process.execPath, [path.join(REPO, 'bin/fleetlm-agent.js'), '--config', await configFile(), '--set', 'runtime.executionProviders=quantum,cpu'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`runtime\\.executionProviders: .*"quantum".*installed: ${installed.join(', ')}`));
  });
});
