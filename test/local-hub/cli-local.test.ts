// `fleetlm local up` / `fleetlm local endpoints` as an operator runs them (child processes).
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateThingCommand, IoTClient, ListThingsCommand } from '@aws-sdk/client-iot';
import type { HubEndpoints } from '../../local-hub/hub.ts';
import { resolveUpSettings } from '../../cli/commands/local.ts';
import { removeDir, tempDir } from './helpers.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/fleetlm.js');
const env = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };

describe('fleetlm local', () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const d of dirs) await removeDir(d);
  });

  /** Starts `fleetlm local up --dir DIR --json` and resolves once it has printed its endpoints. */
  async function localUp(dir: string): Promise<{ child: ChildProcess; endpoints: HubEndpoints }> {
    const child = spawn(process.execPath, [BIN, 'local', 'up', '--dir', dir, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    const endpoints = await new Promise<HubEndpoints>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no endpoints printed: ${out}`)), 30_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        try {
          const parsed = JSON.parse(out) as HubEndpoints;
          clearTimeout(timer);
          resolve(parsed);
        } catch {
          // not complete yet
        }
      });
    });
    return { child, endpoints };
  }

  it('resolves settings: defaults < environment < flags, validated', () => {
    expect(resolveUpSettings({}, {})).toMatchObject({ dir: '.fleetlm/local', allowUnregistered: false });
    expect(resolveUpSettings({}, { FLEETLM_LOCAL_DIR: '/x', FLEETLM_LOCAL_MQTT_PORT: '1883' })).toMatchObject({ dir: '/x', mqttPort: 1883 });
    expect(resolveUpSettings({ dir: '/y', mqttPort: '2000' }, { FLEETLM_LOCAL_DIR: '/x', FLEETLM_LOCAL_MQTT_PORT: '1883' })).toMatchObject({ dir: '/y', mqttPort: 2000 });
    expect(() => resolveUpSettings({ mqttPort: '70000' }, {})).toThrow(/--mqtt-port \(or FLEETLM_LOCAL_MQTT_PORT\)/);
    expect(resolveUpSettings({}, { FLEETLM_LOCAL_BROKER_URL: 'mqtt://127.0.0.1:1883' }).brokerUrl).toBe('mqtt://127.0.0.1:1883');
    expect(() => resolveUpSettings({ brokerUrl: 'http://x' }, {})).toThrow(/--broker-url \(or FLEETLM_LOCAL_BROKER_URL\)/);
  });

  it('runs a hub in the foreground, writes endpoints.json, and stops on SIGINT', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const { child, endpoints } = await localUp(dir);
    expect(JSON.parse(readFileSync(path.join(dir, 'endpoints.json'), 'utf8'))).toEqual(endpoints);
    const iot = new IoTClient({ region: endpoints.region, endpoint: endpoints.iotEndpoint, credentials: { ...endpoints.credentials }, maxAttempts: 1 });
    await iot.send(new CreateThingCommand({ thingName: 'cli-thing' }));
    expect((await iot.send(new ListThingsCommand({}))).things?.map((t) => t.thingName)).toEqual(['cli-thing']);
    iot.destroy();

    const shown = spawnSync(process.execPath, [BIN, 'local', 'endpoints', '--dir', dir, '--json'], { env, encoding: 'utf8' });
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual(endpoints);

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
  });

  it('keeps its ports across restarts in the same --dir, and exits with the error when one is taken', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const upOnce = async (): Promise<HubEndpoints> => {
      const { child, endpoints: e } = await localUp(dir);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      return e;
    };
    const first = await upOnce();
    const second = await upOnce();
    expect(second.mqtt.port).toBe(first.mqtt.port);
    expect(second.iotEndpoint).toBe(first.iotEndpoint);
    expect(second.s3.endpoint).toBe(first.s3.endpoint);
    expect(second.credentials).toEqual(first.credentials);

    // Something else now holds the S3 port: the hub says so and exits instead of hanging.
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(Number(new URL(first.s3.endpoint).port), '127.0.0.1', resolve));
    try {
      const r = spawnSync(process.execPath, [BIN, 'local', 'up', '--dir', dir], { env, encoding: 'utf8', timeout: 30_000 });
      expect(r.error).toBeUndefined();
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/reuses the ports in .*endpoints\.json/);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it('says how to start a hub when there is none', () => {
    const r = spawnSync(process.execPath, [BIN, 'local', 'endpoints', '--dir', '/nonexistent-fleetlm'], { env, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/fleetlm local up --dir/);
  });
});
