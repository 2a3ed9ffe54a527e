// The local API against a browser on the device and the network, over real HTTP: DNS rebinding (foreign
// Host), cross-site "simple" POSTs (text/plain, foreign Origin), and binding a non-loopback address.
import http from 'node:http';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../edge-agent/config.ts';
import { resolveApiToken } from '../../edge-agent/api-guard.ts';
import { InferenceServer } from '../../edge-agent/inference-server.ts';
import { InferenceStats } from '../../edge-agent/inference-stats.ts';
import { ModelHolder } from '../../edge-agent/model-holder.ts';
import { tempDir } from './agent-fixture.ts';

const servers: InferenceServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function start(host: string, apiToken?: string): Promise<number> {
  const s = new InferenceServer({ host, port: 0, maxConcurrent: 2, holder: new ModelHolder(), stats: new InferenceStats(), apiToken });
  const port = await s.start();
  servers.push(s);
  return port;
}

/** A raw HTTP request, so Host and Origin can be what a browser under attack would send. */
function request(port: number, opts: { method?: string; path: string; headers?: Record<string, string>; body?: string; connectTo?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.connectTo ?? '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const generate = JSON.stringify({ prompt: 'hi', maxTokens: 2 });

describe('local API without a token (loopback)', () => {
  it('refuses a rebound DNS name in Host, a foreign Origin and a text/plain POST; answers loopback JSON callers', async () => {
    const port = await start('127.0.0.1');
    // DNS rebinding: the page's own name resolves to 127.0.0.1, the browser sends Host: evil.example.
    const rebound = await request(port, { method: 'POST', path: '/v1/generate', headers: { host: `evil.example:${port}`, 'content-type': 'application/json' }, body: generate });
    expect(rebound.status).toBe(421);
    expect((await request(port, { path: '/metrics', headers: { host: 'evil.example' } })).status).toBe(421);
    // A cross-site form post: text/plain needs no preflight, so the content type is what stops it.
    const simple = await request(port, { method: 'POST', path: '/v1/generate', headers: { host: `127.0.0.1:${port}`, 'content-type': 'text/plain' }, body: generate });
    expect(simple.status).toBe(415);
    const foreign = await request(port, { method: 'POST', path: '/v1/completions', headers: { host: `localhost:${port}`, origin: 'https://evil.example', 'content-type': 'application/json' }, body: generate });
    expect(foreign.status).toBe(403);
    // The same request from this machine gets through the guard (503: no model installed).
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost']) {
      const ok = await request(port, { method: 'POST', path: '/v1/generate', headers: { host, 'content-type': 'application/json; charset=utf-8' }, body: generate });
      expect(ok.status, host).toBe(503);
    }
    const local = await request(port, { method: 'POST', path: '/v1/generate', headers: { host: `127.0.0.1:${port}`, origin: `http://localhost:3000`, 'content-type': 'application/json' }, body: generate });
    expect(local.status).toBe(503);
  });
});

describe('local API on a non-loopback address', () => {
  it('refuses to bind without a token', async () => {
    await expect(start('0.0.0.0')).rejects.toThrow(/apiToken/);
    const dir = await tempDir('fleetlm-api-cfg-');
    const cfg = path.join(dir, 'agent.json');
    await fs.writeFile(cfg, JSON.stringify({ thingName: 't', mqtt: { host: '127.0.0.1' }, modelDir: 'm', stateDir: 's', fleetPublicKeyPath: 'k.pem', http: { host: '0.0.0.0' } }));
    expect(() => loadAgentConfig({ configPath: cfg })).toThrow(/http.apiToken/);
  });

  it('with a token from a file, answers only Bearer callers, whatever the Host', async () => {
    const dir = await tempDir('fleetlm-api-token-');
    const file = path.join(dir, 'api-token');
    const token = 'tok-0123456789abcdef-secret';
    await fs.writeFile(file, `${token}\n`, { mode: 0o600 });
    const port = await start('0.0.0.0', resolveApiToken({ apiTokenFile: file }));
    const headers = { host: `jetson-7.lan:${port}`, 'content-type': 'application/json' };
    expect((await request(port, { method: 'POST', path: '/v1/generate', headers, body: generate })).status).toBe(401);
    expect((await request(port, { method: 'POST', path: '/v1/generate', headers: { ...headers, authorization: 'Bearer wrong-token-0123456789' }, body: generate })).status).toBe(401);
    expect((await request(port, { path: '/metrics', headers })).status).toBe(401);
    expect((await request(port, { method: 'POST', path: '/v1/generate', headers: { ...headers, authorization: `Bearer ${token}` }, body: generate })).status).toBe(503);
    expect((await request(port, { method: 'POST', path: '/v1/generate', headers: { ...headers, authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body: generate })).status).toBe(415);
    expect((await request(port, { path: '/healthz', headers })).status).toBe(503);
  });
});
