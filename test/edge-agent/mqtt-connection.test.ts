// The agent's MQTT link (mqtt.js) against a real aedes broker: plain TCP on loopback with reconnect and
// resubscribe after the broker restarts, a listener that resets every connection, a refused subscription,
// and mutual TLS with certificates made by openssl.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../edge-agent/log.ts';
import { MqttConnection, backoffDelayMs } from '../../edge-agent/mqtt-connection.ts';

interface RunningBroker {
  port: number;
  broker: Aedes;
  clientIds: string[];
  close(): Promise<void>;
}

async function startBroker(port = 0, tlsOptions?: tls.TlsOptions, refuse?: string): Promise<RunningBroker> {
  // `refuse`: a filter the broker's policy refuses (SUBACK 0x80), as AWS IoT does for one its policy lacks.
  const broker = await Aedes.createBroker(refuse ? { authorizeSubscribe: (_c, sub, done) => done(null, sub.topic === refuse ? null : sub) } : {});
  const clientIds: string[] = [];
  broker.on('client', (c) => clientIds.push(c.id));
  const sockets = new Set<net.Socket>();
  const server = tlsOptions ? tls.createServer(tlsOptions, broker.handle) : net.createServer(broker.handle);
  server.on(tlsOptions ? 'secureConnection' : 'connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    broker,
    clientIds,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function publishFromBroker(b: RunningBroker, topic: string, payload: string): Promise<void> {
  return new Promise((resolve, reject) =>
    b.broker.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false }, (err?: Error) =>
      err ? reject(err) : resolve(),
    ),
  );
}

const once = (conn: MqttConnection, event: 'connected' | 'disconnected', ms = 10_000) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    conn.once(event, () => {
      clearTimeout(t);
      resolve();
    });
  });

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const base = { keepAliveSec: 30, reconnectMinMs: 100, reconnectMaxMs: 400, requestTimeoutMs: 5000, log: silentLogger };

describe('MqttConnection', () => {
  it('connects with the thing name as client id, resubscribes after a broker restart', async () => {
    let b = await startBroker();
    const port = b.port;
    const conn = new MqttConnection({ ...base, clientId: 'thing-7', host: '127.0.0.1', port });
    cleanups.push(() => conn.stop(), () => b.close());
    const got: string[] = [];
    await conn.subscribe('fleetlm/thing-7/in', (_t, p) => got.push(p.toString()));
    const up = once(conn, 'connected');
    conn.start();
    await up;
    expect(b.clientIds).toEqual(['thing-7']);
    await publishFromBroker(b, 'fleetlm/thing-7/in', 'one');
    await expect.poll(() => got, { timeout: 5000 }).toEqual(['one']);

    const down = once(conn, 'disconnected');
    await b.close();
    await down;
    await expect(conn.publish('fleetlm/thing-7/out', 'x', 1)).rejects.toThrow(/not connected/);
    const back = once(conn, 'connected');
    b = await startBroker(port);
    await back;
    await publishFromBroker(b, 'fleetlm/thing-7/in', 'two');
    await expect.poll(() => got, { timeout: 5000 }).toEqual(['one', 'two']);
  });

  it('rides out a listener that resets every connection, then connects when the broker returns', async () => {
    // A restarting broker or a load balancer with no healthy target: TCP connects, then the peer resets it.
    // aws-crt, the agent's earlier client, crashed the process (SIGSEGV) in this situation now and then.
    const resetter = net.createServer((s) => s.resetAndDestroy());
    await new Promise<void>((r) => resetter.listen(0, '127.0.0.1', r));
    const port = (resetter.address() as net.AddressInfo).port;
    const lines: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
    const log = { ...silentLogger, warn: (msg: string, fields?: Record<string, unknown>) => void lines.push({ msg, fields }) };
    const conn = new MqttConnection({ ...base, reconnectMinMs: 20, reconnectMaxMs: 60, log, clientId: 'thing-r', host: '127.0.0.1', port });
    cleanups.push(() => conn.stop());
    let up = 0;
    conn.on('connected', () => up++);
    conn.start();
    await expect.poll(() => lines.filter((l) => l.msg === 'mqtt connect failed').length, { timeout: 10_000 }).toBeGreaterThanOrEqual(20);
    expect(up).toBe(0);
    expect(conn.connected).toBe(false);
    expect(String(lines[0]!.fields?.error)).toMatch(/ECONNRESET|closed before CONNACK/);
    await new Promise<void>((r) => resetter.close(() => r()));
    const b = await startBroker(port);
    cleanups.push(() => b.close());
    await expect.poll(() => conn.connected, { timeout: 10_000 }).toBe(true);
    expect(up).toBe(1);
  });

  it('treats a refused subscription as a failed connect and retries; an in-flight publish fails when the link drops', async () => {
    const b = await startBroker(0, undefined, 'fleetlm/thing-s/secret');
    const lines: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
    const log = { ...silentLogger, warn: (msg: string, fields?: Record<string, unknown>) => void lines.push({ msg, fields }) };
    const conn = new MqttConnection({ ...base, log, clientId: 'thing-s', host: '127.0.0.1', port: b.port });
    cleanups.push(() => conn.stop(), () => b.close());
    await conn.subscribe('fleetlm/thing-s/secret', () => {});
    conn.start();
    await expect.poll(() => lines.filter((l) => l.msg === 'mqtt connect failed').length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(conn.connected).toBe(false);
    expect(String(lines[0]!.fields?.error)).toMatch(/broker refused subscription to fleetlm\/thing-s\/secret/);
    await conn.stop();

    // A QoS 1 publish the broker never acknowledges: the link drops under it and the promise rejects then,
    // not after the request timeout.
    const ok = new MqttConnection({ ...base, requestTimeoutMs: 60_000, clientId: 'thing-p', host: '127.0.0.1', port: b.port });
    cleanups.push(() => ok.stop());
    b.broker.authorizePublish = (_c, _p, _done) => {}; // hold every publish: no PUBACK
    const ready = once(ok, 'connected');
    ok.start();
    await ready;
    const started = Date.now();
    const pending = ok.publish('fleetlm/thing-p/out', 'x', 1);
    const rejected = expect(pending).rejects.toThrow(/publish to fleetlm\/thing-p\/out failed/);
    await new Promise((r) => setTimeout(r, 200));
    await b.close();
    await rejected;
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  const hasOpenssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!hasOpenssl)('speaks mutual TLS with a device certificate (skipped without the openssl CLI)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-mtls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test-ca');
    for (const name of ['server', 'device']) {
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name === 'server' ? 'localhost' : 'thing-9'}`);
      await fs.writeFile(path.join(dir, `${name}.ext`), name === 'server' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n');
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
    }
    const read = (f: string) => fs.readFile(path.join(dir, f));
    const b = await startBroker(0, { key: await read('server.key'), cert: await read('server.pem'), ca: await read('ca.pem'), requestCert: true, rejectUnauthorized: true });
    const conn = new MqttConnection({
      ...base,
      clientId: 'thing-9',
      host: 'localhost',
      port: b.port,
      tls: { certPath: path.join(dir, 'device.pem'), keyPath: path.join(dir, 'device.key'), caPath: path.join(dir, 'ca.pem') },
    });
    cleanups.push(() => conn.stop(), () => b.close());
    const got: string[] = [];
    await conn.subscribe('fleetlm/thing-9/echo', (_t, p) => got.push(p.toString()));
    const up = once(conn, 'connected');
    conn.start();
    await up;
    await conn.publish('fleetlm/thing-9/echo', 'over tls', 1);
    await expect.poll(() => got, { timeout: 5000 }).toEqual(['over tls']);
    expect(b.clientIds).toEqual(['thing-9']);
  });
});

describe('backoffDelayMs', () => {
  it('grows exponentially with full jitter between min and the capped ceiling', () => {
    expect(backoffDelayMs(0, 100, 10_000, () => 1)).toBe(100);
    expect(backoffDelayMs(3, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelayMs(3, 100, 10_000, () => 0)).toBe(100);
    expect(backoffDelayMs(20, 100, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelayMs(3, 100, 10_000, () => 0.5)).toBe(450);
  });
});
