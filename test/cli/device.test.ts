// `fleetlm device register` through the CLI: against the local hub (thing + group, plain-TCP
// config) and against an IoT control plane speaking AWS's REST protocol for the certificate
// calls the hub lacks (CreateKeysAndCertificate, AttachPolicy, AttachThingPrincipal, DescribeEndpoint).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { IoTClient, ListThingsInThingGroupCommand } from '@aws-sdk/client-iot';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../cli/main.ts';
import { AgentConfigSchema } from '../../edge-agent/config.ts';
import { generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const code = await runCli(['node', 'fleetlm', ...args]);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-device-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('device register against the local hub', () => {
  let hub: LocalHub;
  let hubDir: string;
  beforeAll(async () => {
    hubDir = path.join(dir, 'hub');
    hub = await startHub({ dir: hubDir });
    writeFileSync(path.join(hubDir, 'fleet-public-key.pem'), generateSigningKeyPair().publicKeyPem);
  });
  afterAll(async () => {
    await hub?.stop();
  });

  it('given a thing and group, when registered, then the thing is in the group and agent.json is a valid plain-TCP config', async () => {
    const out = path.join(dir, 'pi-007', 'agent.json');
    const r = await cli(['device', 'register', '--local', hubDir, '--thing', 'pi-007', '--group', 'fleetlm-rpi5', '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { mode: string; certificateArn: string | null; notes: string[] };
    expect(result).toMatchObject({ mode: 'local', certificateArn: null });
    expect(result.notes[0]).toMatch(/no certificate/);
    const config = AgentConfigSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
    expect(config).toMatchObject({ thingName: 'pi-007', mqtt: { host: hub.endpoints.mqtt.host, port: hub.endpoints.mqtt.port } });
    expect(config.mqtt.tls).toBeUndefined();
    expect(config.download.allowedHosts).toEqual([new URL(hub.endpoints.s3.endpoint).host]);
    // The agent accepts a signed rollback scoped to its group only if it knows the group.
    expect(config.thingGroups).toEqual(['fleetlm-rpi5']);
    // Its own secret, 0600, accepted by the hub's broker as pi-007 and by no other name.
    const secretFile = config.mqtt.passwordFile!;
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    const secret = readFileSync(secretFile, 'utf8').trim();
    const c = await mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: 'pi-007', username: 'pi-007', password: secret, reconnectPeriod: 0 });
    await c.endAsync(true);
    await expect(mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: 'pi-007', reconnectPeriod: 0 })).rejects.toThrow(/Bad username or password/i);
    expect(readFileSync(config.fleetPublicKeyPath, 'utf8')).toBe(readFileSync(path.join(hubDir, 'fleet-public-key.pem'), 'utf8'));
    const iot = new IoTClient({ region: hub.endpoints.region, endpoint: hub.endpoints.iotEndpoint, credentials: hub.endpoints.credentials });
    const members = await iot.send(new ListThingsInThingGroupCommand({ thingGroupName: 'fleetlm-rpi5' }));
    expect(members.things).toEqual(['pi-007']);
    // Registering again (same thing, same group) succeeds.
    expect((await cli(['device', 'register', '--local', hubDir, '--thing', 'pi-007', '--group', 'fleetlm-rpi5', '--out', out, '--json'])).code).toBe(0);
  });

  it('given an invalid thing name, when registered, then it exits 2 naming the rule', async () => {
    const r = await cli(['device', 'register', '--local', hubDir, '--thing', 'bad name', '--out', path.join(dir, 'x.json')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--thing must be 1-128 of \[a-zA-Z0-9:_-\]; got "bad name"/);
  });
});

interface Recorded {
  method: string;
  path: string;
  principal?: string;
  body: string;
}

/** AWS IoT control-plane REST calls device registration makes, answered like AWS does. */
async function startFakeIot(): Promise<{ endpoint: string; calls: Recorded[]; server: Server }> {
  const calls: Recorded[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      calls.push({ method: req.method!, path: decodeURIComponent(url.pathname) + url.search, principal: req.headers['x-amzn-principal'] as string | undefined, body: Buffer.concat(chunks).toString('utf8') });
      const json = (v: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      const p = url.pathname;
      if (req.method === 'POST' && p.startsWith('/things/')) return json({ thingName: p.split('/')[2], thingArn: `arn:aws:iot:eu-west-1:123456789012:thing/${p.split('/')[2]}` });
      if (req.method === 'POST' && p.startsWith('/thing-groups/')) return json({ thingGroupName: p.split('/')[2] });
      if (req.method === 'PUT' && p === '/thing-groups/addThingToThingGroup') return json({});
      if (req.method === 'POST' && p === '/certificates')
        return json({ certificateArn: 'arn:aws:iot:eu-west-1:123456789012:cert/csr456', certificateId: 'csr456', certificatePem: '-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n' });
      if (req.method === 'POST' && p === '/keys-and-certificate')
        return json({
          certificateArn: 'arn:aws:iot:eu-west-1:123456789012:cert/abc123',
          certificateId: 'abc123',
          certificatePem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
          keyPair: { PublicKey: 'pub', PrivateKey: '-----BEGIN RSA PRIVATE KEY-----\nsecret\n-----END RSA PRIVATE KEY-----\n' },
        });
      if (req.method === 'PUT' && p.startsWith('/target-policies/')) return json({});
      if (req.method === 'PUT' && p.endsWith('/principals')) return json({});
      if (req.method === 'GET' && p === '/endpoint') return json({ endpointAddress: 'abc123-ats.iot.eu-west-1.amazonaws.com' });
      res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'ResourceNotFoundException' });
      res.end(JSON.stringify({ message: `no route ${req.method} ${p}` }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls, server };
}

describe('device register against AWS IoT', () => {
  it('given an AWS profile, when registered, then keys, certificate, policy, principal and group are set up and agent.json uses mutual TLS', async () => {
    const fake = await startFakeIot();
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_REGION: 'eu-west-1' });
      delete process.env.FLEETLM_LOCAL_DIR;
      const profile = path.join(dir, 'profile.json');
      writeFileSync(profile, JSON.stringify({ region: 'eu-west-1', bucket: 'fleetlm-artifacts-test', iotEndpoint: fake.endpoint }));
      const pub = path.join(dir, 'kms-public.pem');
      writeFileSync(pub, generateSigningKeyPair().publicKeyPem);
      const out = path.join(dir, 'jetson-01', 'agent.json');
      const r = await cli(['device', 'register', '--profile', profile, '--thing', 'jetson-01', '--group', 'fleetlm-jetson-orin-nano', '--out', out, '--fleet-public-key', pub, '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(fake.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
        'POST /things/jetson-01',
        'POST /keys-and-certificate?setAsActive=true',
        'PUT /target-policies/fleetlm-device',
        'PUT /things/jetson-01/principals',
        'GET /endpoint?endpointType=iot%3AData-ATS',
        // Last: only a complete device becomes a group rollout's target.
        'POST /thing-groups/fleetlm-jetson-orin-nano',
        'PUT /thing-groups/addThingToThingGroup',
      ]);
      expect(JSON.parse(fake.calls[2]!.body)).toEqual({ target: 'arn:aws:iot:eu-west-1:123456789012:cert/abc123' });
      expect(fake.calls[3]!.principal).toBe('arn:aws:iot:eu-west-1:123456789012:cert/abc123');
      const config = AgentConfigSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
      expect(config.mqtt).toMatchObject({ host: 'abc123-ats.iot.eu-west-1.amazonaws.com', port: 8883, tls: { certPath: path.join(dir, 'jetson-01', 'jetson-01.cert.pem'), keyPath: path.join(dir, 'jetson-01', 'jetson-01.private.key') } });
      expect(readFileSync(config.mqtt.tls!.keyPath, 'utf8')).toContain('secret');
      expect(statSync(config.mqtt.tls!.keyPath).mode & 0o777).toBe(0o600);
    } finally {
      process.env = saved;
      await new Promise<void>((r) => fake.server.close(() => r()));
    }
  });

  it('given a CSR made on the device, when registered, then the certificate comes from CreateCertificateFromCsr and no key is written; a fleet key with the wrong sha256 is refused before anything is created', async () => {
    const fake = await startFakeIot();
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_REGION: 'eu-west-1' });
      delete process.env.FLEETLM_LOCAL_DIR;
      const profile = path.join(dir, 'profile-csr.json');
      writeFileSync(profile, JSON.stringify({ region: 'eu-west-1', bucket: 'fleetlm-artifacts-test', iotEndpoint: fake.endpoint }));
      const pubPem = generateSigningKeyPair().publicKeyPem;
      const pub = path.join(dir, 'fleet-csr.pem');
      writeFileSync(pub, pubPem);
      const pin = createHash('sha256').update(pubPem).digest('hex');
      const csr = path.join(dir, 'device.csr');
      // What `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj /CN=jetson-02` writes.
      writeFileSync(csr, '-----BEGIN CERTIFICATE REQUEST-----\nMIIBDEVICE\n-----END CERTIFICATE REQUEST-----\n');
      const out = path.join(dir, 'jetson-02', 'agent.json');
      const args = ['device', 'register', '--profile', profile, '--thing', 'jetson-02', '--out', out, '--fleet-public-key', pub, '--csr', csr, '--device-key-path', '/etc/fleetlm/device.key', '--json'];

      const wrong = await cli([...args, '--fleet-key-sha256', '0'.repeat(64)]);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toMatch(/has sha256 [0-9a-f]{64}, not 0{64} \(ManifestPublicKeySha256\): refusing it/);
      expect(fake.calls).toEqual([]);

      const r = await cli([...args, '--fleet-key-sha256', pin]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(fake.calls.map((c) => `${c.method} ${c.path}`)).toContain('POST /certificates?setAsActive=true');
      expect(fake.calls.map((c) => c.path)).not.toContain('/keys-and-certificate?setAsActive=true');
      expect(JSON.parse(fake.calls.find((c) => c.path.startsWith('/certificates'))!.body)).toEqual({ certificateSigningRequest: readFileSync(csr, 'utf8') });
      const config = AgentConfigSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
      expect(config.mqtt.tls).toMatchObject({ certPath: path.join(dir, 'jetson-02', 'jetson-02.cert.pem'), keyPath: '/etc/fleetlm/device.key' });
      expect(readdirSync(path.join(dir, 'jetson-02')).filter((f) => f.includes('key') && !f.includes('fleet'))).toEqual([]);
    } finally {
      process.env = saved;
      await new Promise<void>((r) => fake.server.close(() => r()));
    }
  });
});
