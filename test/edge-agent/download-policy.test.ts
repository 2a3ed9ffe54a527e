// Server-side request forgery through job documents, against real agent processes, a real hub and two more
// real HTTP servers: a "LAN service" the job must not reach, and an allowed host that redirects to it.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeployModelDocumentInput } from '../../contracts/job-document.ts';
import { UrlPolicy, defaultAllowedHosts } from '../../edge-agent/url-policy.ts';
import { AgentProcess, TestFleet, buildTestModel, tempDir, type BuiltModel } from './agent-fixture.ts';

const SECRET = Buffer.from('internal-service-secret: do not leak me\n');
const SECRET_SHA = createHash('sha256').update(SECRET).digest('hex');

let fleet: TestFleet;
let model: BuiltModel;
let lan: Server;
let redirector: Server;
let lanRequests = 0;
const agents: AgentProcess[] = [];

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  fleet = await TestFleet.start();
  model = await buildTestModel(31);
  lan = createServer((_req, res) => {
    lanRequests++;
    res.writeHead(200, { 'content-length': SECRET.length }).end(SECRET);
  });
  const lanHost = await listen(lan);
  redirector = createServer((req, res) => {
    // Same-origin redirect first (allowed), then off to the LAN service (refused).
    if (req.url === '/hop') res.writeHead(302, { location: '/to-lan' }).end();
    else res.writeHead(302, { location: `http://${lanHost}/secret` }).end();
  });
  await listen(redirector);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.kill();
  await fleet?.stop();
  lan?.close();
  redirector?.close();
});

const hostOf = (s: Server) => `127.0.0.1:${(s.address() as AddressInfo).port}`;

describe('artifact URLs in job documents', () => {
  it('refuses hosts outside download.allowedHosts and cross-host redirects, fetches nothing there, and reports no detail of it', async () => {
    const thing = 'ssrf-1';
    const arn = await fleet.createThing(thing);
    const s3Host = new URL(fleet.hub.endpoints.s3.endpoint).host;
    const agent = await AgentProcess.start(fleet, thing, await tempDir('fleetlm-agent-ssrf-'), {
      FLEETLM_AGENT_DOWNLOAD_ALLOWED_HOSTS: `${s3Host},${hostOf(redirector)}`,
    });
    agents.push(agent);
    const doc = await fleet.publish('ssrf', '1', model);
    const withUrl = (url: string): DeployModelDocumentInput => ({ ...doc, artifacts: doc.artifacts.map((a, i) => (i === 0 ? { ...a, url } : a)) });

    const cases: Array<[string, string, string]> = [
      ['ssrf-lan', `http://${hostOf(lan)}/secret`, 'VALIDATION_URL_NOT_ALLOWED'],
      ['ssrf-metadata', 'http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'VALIDATION_URL_NOT_ALLOWED'],
      ['ssrf-file', 'file:///etc/passwd', 'VALIDATION_URL_NOT_ALLOWED'],
      ['ssrf-redirect', `http://${hostOf(redirector)}/hop`, 'VALIDATION_URL_REDIRECT'],
    ];
    for (const [jobId, url, code] of cases) {
      await fleet.createJob(jobId, arn, withUrl(url));
      const e = await fleet.waitTerminal(jobId, thing);
      expect(e.status, jobId).toBe('FAILED');
      expect(e.statusDetails?.detailsMap?.code, jobId).toBe(code);
      const text = JSON.stringify(e.statusDetails);
      expect(text).not.toContain(SECRET_SHA);
      expect(text).not.toContain(String(SECRET.length) + ' bytes');
      expect(text).not.toContain('internal-service');
    }
    expect(lanRequests).toBe(0);

    // The allowed artifact host still works.
    await fleet.createJob('ssrf-ok', arn, doc);
    expect((await fleet.waitTerminal('ssrf-ok', thing, 60_000)).status).toBe('SUCCEEDED');
  }, 180_000);
});

describe('UrlPolicy', () => {
  it('allows https to listed hosts and http only to loopback', () => {
    const p = new UrlPolicy(['*.s3.eu-west-1.amazonaws.com', 'artifacts.example.com:8443', '127.0.0.1']);
    expect(p.check('https://b.s3.eu-west-1.amazonaws.com/k?X-Amz-Signature=1', 'a').host).toBe('b.s3.eu-west-1.amazonaws.com');
    expect(() => p.check('http://b.s3.eu-west-1.amazonaws.com/k', 'a')).toThrow(/scheme http is refused/);
    expect(() => p.check('https://s3.eu-west-1.amazonaws.com.evil.example/k', 'a')).toThrow(/not in download.allowedHosts/);
    expect(() => p.check('https://artifacts.example.com/k', 'a')).toThrow(/not in download.allowedHosts/);
    expect(p.check('https://artifacts.example.com:8443/k', 'a').port).toBe('8443');
    expect(p.check('http://127.0.0.1:9000/k', 'a').port).toBe('9000');
    expect(() => p.check('https://user:pw@artifacts.example.com:8443/k', 'a')).toThrow(/user information/);
  });

  it('derives the region S3 hosts from an AWS IoT endpoint, and loopback for a local broker', () => {
    expect(defaultAllowedHosts('abc123-ats.iot.eu-central-1.amazonaws.com')).toContain('*.s3.eu-central-1.amazonaws.com');
    expect(defaultAllowedHosts('127.0.0.1')).toContain('127.0.0.1');
    expect(defaultAllowedHosts('mqtt.example.com')).toEqual([]);
  });
});
