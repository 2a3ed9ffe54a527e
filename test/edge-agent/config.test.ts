// Config layering: defaults < file < FLEETLM_AGENT_* env < --set, validated once.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { envNameFor, loadAgentConfig } from '../../edge-agent/config.ts';

async function file(obj: unknown): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-cfg-'));
  const p = path.join(dir, 'agent.json');
  await fs.writeFile(p, JSON.stringify(obj));
  return p;
}

const base = { thingName: 'dev-1', mqtt: { host: '127.0.0.1', port: 1883 }, modelDir: 'models', stateDir: 'state', fleetPublicKeyPath: 'fleet.pem' };

describe('loadAgentConfig', () => {
  it('fills defaults and resolves paths against the file', async () => {
    const p = await file(base);
    const c = loadAgentConfig({ configPath: p });
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080, maxConcurrent: 4 });
    expect(c.modelDir).toBe(path.join(path.dirname(p), 'models'));
    expect(c.download.throttleBytesPerSec).toBe(0);
  });

  it('lets env override the file and --set override env', async () => {
    const p = await file(base);
    const env = { [envNameFor('http.port')]: '9001', [envNameFor('download.throttleBytesPerSec')]: '1000' };
    expect(envNameFor('download.throttleBytesPerSec')).toBe('FLEETLM_AGENT_DOWNLOAD_THROTTLE_BYTES_PER_SEC');
    const c = loadAgentConfig({ configPath: p, env, overrides: ['http.port=9002'] });
    expect(c.http.port).toBe(9002);
    expect(c.download.throttleBytesPerSec).toBe(1000);
  });

  it('defaults the jobs step timer and refuses heartbeats too slow for it', async () => {
    const p = await file(base);
    expect(loadAgentConfig({ configPath: p }).jobs).toEqual({ stepTimeoutInMinutes: 10, heartbeatMs: 60_000, crashLoopLimit: 3 });
    expect(envNameFor('jobs.stepTimeoutInMinutes')).toBe('FLEETLM_AGENT_JOBS_STEP_TIMEOUT_IN_MINUTES');
    const env = { FLEETLM_AGENT_JOBS_STEP_TIMEOUT_IN_MINUTES: '2', FLEETLM_AGENT_JOBS_HEARTBEAT_MS: '61000' };
    expect(() => loadAgentConfig({ configPath: p, env })).toThrow(/jobs.heartbeatMs: must be at most half of jobs.stepTimeoutInMinutes \(2 min = 120000 ms\), got 61000/);
    expect(() => loadAgentConfig({ configPath: p, overrides: ['jobs.stepTimeoutInMinutes=0'] })).toThrow(/jobs.stepTimeoutInMinutes/);
    expect(loadAgentConfig({ configPath: p, env: { ...env, FLEETLM_AGENT_JOBS_HEARTBEAT_MS: '60000' } }).jobs).toEqual({
      stepTimeoutInMinutes: 2,
      heartbeatMs: 60_000,
      crashLoopLimit: 3,
    });
  });

  it('defaults the download retry policy to minutes of patience and layers it like any key', async () => {
    const p = await file({ ...base, download: { retry: { maxDelayMs: 30_000 } } });
    expect(loadAgentConfig({ configPath: p }).download.retry).toEqual({ maxAttempts: 50, initialDelayMs: 1000, maxDelayMs: 30_000, deadlineMs: 1_800_000 });
    const env = { FLEETLM_AGENT_DOWNLOAD_RETRY_DEADLINE_MS: '600000' };
    expect(loadAgentConfig({ configPath: p, env, overrides: ['download.retry.maxAttempts=7'] }).download.retry).toMatchObject({ maxAttempts: 7, deadlineMs: 600_000 });
    expect(() => loadAgentConfig({ configPath: p, overrides: ['download.retry.initialDelayMs=60000'] })).toThrow(/initialDelayMs must be <= maxDelayMs/);
  });

  it('still loads a config written before the retry policy', async () => {
    // What `fleetlm device` wrote: every default, including the old 5 retries from 500 ms.
    const old = await file({ ...base, download: { maxArtifactBytes: 1000, retries: 5, retryBaseMs: 500, idleTimeoutMs: 30_000 } });
    expect(loadAgentConfig({ configPath: old }).download).toMatchObject({ maxArtifactBytes: 1000, retry: { maxAttempts: 50, initialDelayMs: 1000 } });
    const chosen = await file({ ...base, download: { retries: 9, retryBaseMs: 200 } });
    expect(loadAgentConfig({ configPath: chosen }).download.retry).toMatchObject({ maxAttempts: 10, initialDelayMs: 200, maxDelayMs: 60_000 });
    expect('retries' in loadAgentConfig({ configPath: chosen }).download).toBe(false);
  });

  it('demands TLS for a broker that is not on loopback', async () => {
    const p = await file({ ...base, mqtt: { host: 'abc-ats.iot.eu-west-1.amazonaws.com' } });
    expect(() => loadAgentConfig({ configPath: p })).toThrow(/mqtt.tls: is required for non-loopback host/);
    const q = await file({ ...base, mqtt: { host: 'abc-ats.iot.eu-west-1.amazonaws.com', port: 443, tls: { certPath: 'c.pem', keyPath: 'k.pem' } } });
    expect(loadAgentConfig({ configPath: q }).mqtt.port).toBe(443);
  });

  it('names the bad key and value', async () => {
    const p = await file(base);
    expect(() => loadAgentConfig({ configPath: p, overrides: ['http.port=abc'] })).toThrow(/http.port must be a number, got "abc"/);
    expect(() => loadAgentConfig({ configPath: p, overrides: ['nope=1'] })).toThrow(/unknown config key nope/);
    const bad = await file({ ...base, thingName: 'bad name' });
    expect(() => loadAgentConfig({ configPath: bad })).toThrow(/thingName/);
  });
});
