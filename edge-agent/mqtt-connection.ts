// The agent's MQTT 3.1.1 link (mqtt.js): mutual TLS to AWS IoT Core on 8883, or 443 with ALPN
// `x-amzn-mqtt-ca`; plain TCP for loopback brokers. Client id = thing name. The agent owns the reconnect loop
// (exponential backoff with full jitter) so it can resubscribe and announce each reconnect.
// mqtt.js, not aws-crt: aws-c-mqtt calls a connection's completion callback twice when the socket fails right
// after TCP setup (its CONNECT send fails, then the channel shutdown reports the failed connect again), and
// aws-crt-nodejs frees the callback's state on each call, so a broker that resets connections (a load
// balancer, a restarting hub) crashed the agent with SIGSEGV in aws_mem_release. A pure-JS client has no such
// failure mode and ships no native binary per board.
// https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html (port 443 + ALPN)
// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
import { readFileSync, statSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { TransportError, describeError } from '../common/errors.ts';
import type { Logger } from './log.ts';
import { topicMatchesFilter } from './mqtt-topic-filter.ts';

export type MessageHandler = (topic: string, payload: Buffer) => void;

/** What the rest of the agent needs from MQTT; lets tests and other transports stand in. */
export interface MqttTransport {
  readonly connected: boolean;
  /** Registers a subscription; it is (re)subscribed on every connect. */
  subscribe(filter: string, handler: MessageHandler): Promise<void>;
  /** Publishes; QoS 1 resolves on PUBACK. Rejects with TransportError when offline or on timeout. */
  publish(topic: string, payload: string | Uint8Array, qos: 0 | 1): Promise<void>;
  on(event: 'connected' | 'disconnected', listener: () => void): this;
  off(event: 'connected' | 'disconnected', listener: () => void): this;
  start(): void;
  stop(): Promise<void>;
}

export interface MqttConnectionOptions {
  clientId: string;
  host: string;
  port: number;
  tls?: { certPath: string; keyPath: string; caPath?: string };
  /** File holding the device secret for a password login (local hub); username is the client id. Read at each connect. */
  passwordFile?: string;
  keepAliveSec: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  requestTimeoutMs: number;
  log: Logger;
}

/** The device secret in `file` (first line); warns when others may read it. */
function readDeviceSecret(file: string, log: Logger): string {
  let text: string;
  try {
    if ((statSync(file).mode & 0o077) !== 0) log.warn('mqtt.passwordFile is readable by other users; chmod 600 it', { file });
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TransportError(`cannot read mqtt.passwordFile ${file}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`, { cause: err });
  }
  return text.split('\n')[0]!.trim();
}

/** Full-jitter backoff: uniform in [min, min(max, min * 2^attempt)]. */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(minMs + random() * (ceiling - minMs));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TransportError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Whether mqtt.js rejected a subscribe because its SUBACK carried a failure code (0x80: refused by policy). */
function subackRefused(err: unknown): boolean {
  const granted = (err as { packet?: { granted?: unknown } } | null)?.packet?.granted;
  return Array.isArray(granted) && granted.some((g) => typeof g === 'number' && (g & 0x80) !== 0);
}

/** One connection attempt: its client, the last error it reported, whether its socket has closed. */
interface Attempt {
  readonly client: MqttClient;
  lastError: unknown;
  closed: boolean;
}

/** MQTT 3.1.1 connection over mqtt.js with agent-driven reconnect and resubscribe: one client per attempt. */
export class MqttConnection extends EventEmitter implements MqttTransport {
  private readonly subs = new Map<string, MessageHandler>();
  private client: MqttClient | undefined;
  private isConnected = false;
  private stopped = true;
  /** Failed attempts in a row, for the backoff. */
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: MqttConnectionOptions) {
    super();
  }

  get connected(): boolean {
    return this.isConnected;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connectOnce();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    const was = this.isConnected;
    this.isConnected = false;
    if (client) await this.closeQuietly(client, was);
    if (was) this.emit('disconnected');
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<void> {
    this.subs.set(filter, handler);
    if (this.client && this.isConnected) await this.subscribeOn(this.client, filter);
  }

  async publish(topic: string, payload: string | Uint8Array, qos: 0 | 1): Promise<void> {
    const client = this.client;
    if (!client || !this.isConnected) throw new TransportError(`cannot publish to ${topic}: not connected`, { code: 'TRANSPORT_OFFLINE' });
    const body = typeof payload === 'string' ? payload : Buffer.from(payload);
    try {
      await withTimeout(client.publishAsync(topic, body, { qos }), this.opts.requestTimeoutMs, `publish to ${topic}`);
    } catch (err) {
      throw err instanceof TransportError ? err : new TransportError(`publish to ${topic} failed: ${describeError(err)}`, { cause: err });
    }
  }

  private buildOptions(): IClientOptions {
    const o = this.opts;
    const common: IClientOptions = {
      host: o.host,
      port: o.port,
      clientId: o.clientId,
      protocolVersion: 4,
      clean: true,
      keepalive: o.keepAliveSec,
      connectTimeout: o.requestTimeoutMs,
      // Reconnects and resubscribes are the agent's (see connectOnce): one client per attempt.
      reconnectPeriod: 0,
      resubscribe: false,
    };
    if (o.tls) {
      const read = (what: string, file: string): Buffer => {
        try {
          return readFileSync(file);
        } catch (err) {
          throw new TransportError(`cannot read mqtt.tls.${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`, { cause: err });
        }
      };
      return {
        ...common,
        protocol: 'mqtts',
        cert: read('certPath', o.tls.certPath),
        key: read('keyPath', o.tls.keyPath),
        ...(o.tls.caPath ? { ca: read('caPath', o.tls.caPath) } : {}),
        rejectUnauthorized: true,
        // AWS IoT Core takes MQTT on 443 only with this ALPN protocol name.
        ...(o.port === 443 ? { ALPNProtocols: ['x-amzn-mqtt-ca'] } : {}),
      };
    }
    return {
      ...common,
      protocol: 'mqtt',
      ...(o.passwordFile ? { username: o.clientId, password: readDeviceSecret(o.passwordFile, o.log) } : {}),
    };
  }

  private async subscribeOn(client: MqttClient, filter: string): Promise<void> {
    try {
      await withTimeout(client.subscribeAsync(filter, { qos: 1 }), this.opts.requestTimeoutMs, `subscribe to ${filter}`);
    } catch (err) {
      // SUBACK 0x80: the broker's policy refused this filter (mqtt.js rejects with the SUBACK packet attached).
      if (subackRefused(err)) {
        throw new TransportError(`broker refused subscription to ${filter}`, { code: 'TRANSPORT_SUBSCRIBE_REFUSED', cause: err });
      }
      throw err instanceof TransportError ? err : new TransportError(`subscribe to ${filter} failed: ${describeError(err)}`, { cause: err });
    }
  }

  private dispatch(topic: string, payload: Buffer): void {
    for (const [filter, handler] of this.subs) {
      if (!topicMatchesFilter(filter, topic)) continue;
      try {
        handler(topic, payload);
      } catch (err) {
        this.opts.log.error('message handler failed', { topic, error: describeError(err) });
      }
    }
  }

  private connectOnce(): void {
    if (this.stopped || this.client) return;
    let client: MqttClient;
    try {
      client = connect(this.buildOptions());
    } catch (err) {
      this.opts.log.warn('mqtt connect failed', { error: describeError(err) });
      this.scheduleReconnect();
      return;
    }
    this.client = client;
    const attempt: Attempt = { client, lastError: undefined, closed: false };
    client.on('error', (err) => {
      attempt.lastError = err;
      this.opts.log.debug('mqtt error', { error: describeError(err) });
    });
    client.on('message', (topic, payload) => this.dispatch(topic, payload));
    client.on('close', () => this.closed(attempt));
    client.once('connect', () => void this.established(attempt));
  }

  /** CONNACK accepted: subscribe everything, then announce the link. */
  private async established(attempt: Attempt): Promise<void> {
    const { client } = attempt;
    try {
      for (const filter of this.subs.keys()) await this.subscribeOn(client, filter);
    } catch (err) {
      // The close handler logs this and schedules the next attempt.
      attempt.lastError = err;
      client.end(true);
      return;
    }
    if (this.client !== client || this.stopped || attempt.closed) return;
    this.isConnected = true;
    this.failures = 0;
    this.opts.log.info('mqtt connected', { host: this.opts.host, port: this.opts.port, tls: Boolean(this.opts.tls) });
    this.emit('connected');
  }

  /** The client's socket closed: a failed attempt or a lost link. Either way the next attempt is scheduled. */
  private closed(attempt: Attempt): void {
    if (attempt.closed) return;
    attempt.closed = true;
    const { client, lastError } = attempt;
    // Fails in-flight publishes and subscribes at once instead of leaving them to their timeouts.
    client.end(true);
    if (this.client !== client || this.stopped) return;
    this.client = undefined;
    const was = this.isConnected;
    this.isConnected = false;
    if (was) {
      this.opts.log.warn('mqtt connection lost', { why: lastError === undefined ? 'closed by peer' : describeError(lastError) });
      this.emit('disconnected');
    } else {
      this.opts.log.warn('mqtt connect failed', { error: lastError === undefined ? 'closed before CONNACK' : describeError(lastError) });
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const delay = backoffDelayMs(this.failures++, this.opts.reconnectMinMs, this.opts.reconnectMaxMs);
    this.opts.log.debug('mqtt reconnect scheduled', { delayMs: delay, attempt: this.failures });
    this.timer = setTimeout(() => this.connectOnce(), delay);
  }

  /** Sends DISCONNECT when the link is up; gives up on a dead one after 2 s. */
  private async closeQuietly(client: MqttClient, connected: boolean): Promise<void> {
    try {
      if (connected) await withTimeout(client.endAsync(false), 2000, 'MQTT disconnect');
    } catch {
      // The link is being abandoned either way.
    } finally {
      client.end(true);
    }
  }
}
