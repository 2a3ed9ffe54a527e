// Test helpers for the local hub: real clients only (mqtt.js, @aws-sdk/client-iot, client-s3).
export { sleep, eventually } from '../helpers/wait.ts';
export { tempDir } from '../helpers/temp-dir.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { rm } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { IoTClient } from '@aws-sdk/client-iot';
import { S3Client } from '@aws-sdk/client-s3';
import { startHub, type HubOptions, type LocalHub } from '../../local-hub/hub.ts';

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Starts a hub in a fresh temp dir. */
export async function startTestHub(options: Partial<HubOptions> = {}): Promise<LocalHub & { dir: string }> {
  const dir = options.dir ?? (await tempDir('fleetlm-hub-'));
  const hub = await startHub({ ...options, dir });
  return Object.assign(hub, { dir });
}

export function iotClient(hub: LocalHub): IoTClient {
  return new IoTClient({
    region: hub.endpoints.region,
    endpoint: hub.endpoints.iotEndpoint,
    credentials: hub.endpoints.credentials,
    maxAttempts: 1,
  });
}

export function s3Client(hub: LocalHub): S3Client {
  return new S3Client({
    region: hub.endpoints.region,
    endpoint: hub.endpoints.s3.endpoint,
    forcePathStyle: true,
    credentials: hub.endpoints.credentials,
  });
}

export interface Received {
  topic: string;
  payload: Record<string, unknown>;
  at: number;
}

/** An mqtt.js device connected as `thingName`, recording every message it receives. */
export class TestDevice {
  readonly messages: Received[] = [];
  private waiters: Array<{ match: (m: Received) => boolean; resolve: (m: Received) => void; from: number }> = [];
  private constructor(readonly thingName: string, readonly client: MqttClient) {
    client.on('message', (topic, payload) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
      } catch {
        parsed = { raw: payload.toString('utf8') };
      }
      const msg = { topic, payload: parsed, at: Date.now() };
      this.messages.push(msg);
      const index = this.messages.length - 1;
      this.waiters = this.waiters.filter((w) => {
        if (index >= w.from && w.match(msg)) {
          w.resolve(msg);
          return false;
        }
        return true;
      });
    });
  }

  static async connect(hub: LocalHub, thingName: string, subscribe = true): Promise<TestDevice> {
    // Each device logs in as itself with its own secret, as the agent does (local-hub/device-credentials.ts).
    const password = await hub.issueDeviceSecret(thingName);
    const client = await mqtt.connectAsync(hub.endpoints.mqtt.url, { clientId: thingName, username: thingName, password, reconnectPeriod: 0, protocolVersion: 4 });
    const device = new TestDevice(thingName, client);
    if (subscribe) await client.subscribeAsync(`$aws/things/${thingName}/jobs/#`, { qos: 1 });
    return device;
  }

  get base(): string {
    return `$aws/things/${this.thingName}/jobs`;
  }

  /** Waits for the first message (from index `from`) whose topic is `topic` and that passes `match`. */
  waitFor(topic: string, match: (p: Record<string, unknown>) => boolean = () => true, timeoutMs = 10_000, from = 0): Promise<Received> {
    const test = (m: Received) => m.topic === topic && match(m.payload);
    const found = this.messages.slice(from).find(test);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.thingName}: no message on ${topic} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match: test,
        from,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** Publishes a request with a fresh clientToken and waits for its accepted/rejected reply. */
  async request(suffix: string, body: Record<string, unknown> | string = {}): Promise<{ outcome: 'accepted' | 'rejected'; payload: Record<string, unknown> }> {
    const clientToken = `t-${Math.random().toString(36).slice(2, 10)}`;
    const text = typeof body === 'string' ? body : JSON.stringify({ ...body, clientToken });
    const topic = `${this.base}/${suffix}`;
    const from = this.messages.length;
    const match = (p: Record<string, unknown>) => typeof body === 'string' || p.clientToken === clientToken;
    const reply = Promise.race([
      this.waitFor(`${topic}/accepted`, match, 10_000, from).then((m) => ({ outcome: 'accepted' as const, payload: m.payload })),
      this.waitFor(`${topic}/rejected`, match, 10_000, from).then((m) => ({ outcome: 'rejected' as const, payload: m.payload })),
    ]);
    await this.client.publishAsync(topic, text, { qos: 1 });
    return reply;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

