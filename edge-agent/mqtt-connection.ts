// The agent's MQTT 3.1.1 link (aws-iot-device-sdk-v2 / aws-crt): mutual TLS to AWS IoT Core on 8883, or 443
// with ALPN `x-amzn-mqtt-ca`; plain TCP for loopback brokers. Client id = thing name. The agent owns the
// reconnect loop (exponential backoff with full jitter) so it can resubscribe and announce each reconnect.
// https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html (port 443 + ALPN)
// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
import { readFileSync, statSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { iot, io, mqtt } from 'aws-iot-device-sdk-v2';
import { TransportError, describeError } from '../common/errors.ts';
import type { Logger } from './log.ts';

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

// Reconnects are driven here, so the CRT's own reconnect is pushed far out of the way.
const CRT_RECONNECT_SEC = 3600;

/** MQTT 3.1.1 connection over aws-crt with agent-driven reconnect and resubscribe. */
export class CrtMqttConnection extends EventEmitter implements MqttTransport {
  private readonly client = new mqtt.MqttClient();
  private readonly subs = new Map<string, MessageHandler>();
  private conn: mqtt.MqttClientConnection | undefined;
  private isConnected = false;
  private stopped = true;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private connecting = false;

  constructor(private readonly opts: MqttConnectionOptions) {
    super();
  }

  get connected(): boolean {
    return this.isConnected;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connectOnce();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const conn = this.conn;
    this.conn = undefined;
    const was = this.isConnected;
    this.isConnected = false;
    if (conn) await this.closeQuietly(conn);
    if (was) this.emit('disconnected');
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<void> {
    this.subs.set(filter, handler);
    if (this.conn && this.isConnected) await this.subscribeOn(this.conn, filter, handler);
  }

  async publish(topic: string, payload: string | Uint8Array, qos: 0 | 1): Promise<void> {
    const conn = this.conn;
    if (!conn || !this.isConnected) throw new TransportError(`cannot publish to ${topic}: not connected`, { code: 'TRANSPORT_OFFLINE' });
    const body = typeof payload === 'string' ? payload : Buffer.from(payload);
    try {
      await withTimeout(
        conn.publish(topic, body, qos === 1 ? mqtt.QoS.AtLeastOnce : mqtt.QoS.AtMostOnce),
        this.opts.requestTimeoutMs,
        `publish to ${topic}`,
      );
    } catch (err) {
      throw err instanceof TransportError ? err : new TransportError(`publish to ${topic} failed: ${describeError(err)}`, { cause: err });
    }
  }

  private buildConfig(): mqtt.MqttConnectionConfig {
    const o = this.opts;
    if (o.tls) {
      // new_mtls_builder_from_path puts `x-amzn-mqtt-ca` first in the ALPN list, which port 443 requires.
      if (o.port === 443 && !io.is_alpn_available()) {
        throw new TransportError('MQTT over port 443 needs TLS ALPN, which this platform lacks; use port 8883');
      }
      let builder = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(o.tls.certPath, o.tls.keyPath);
      if (o.tls.caPath) builder = builder.with_certificate_authority_from_path(undefined, o.tls.caPath);
      return builder
        .with_endpoint(o.host)
        .with_port(o.port)
        .with_client_id(o.clientId)
        .with_clean_session(true)
        .with_keep_alive_seconds(o.keepAliveSec)
        .with_reconnect_min_sec(CRT_RECONNECT_SEC)
        .with_reconnect_max_sec(CRT_RECONNECT_SEC)
        .build();
    }
    return {
      client_id: o.clientId,
      host_name: o.host,
      port: o.port,
      clean_session: true,
      keep_alive: o.keepAliveSec,
      socket_options: new io.SocketOptions(io.SocketType.STREAM, io.SocketDomain.IPV4, 5000),
      reconnect_min_sec: CRT_RECONNECT_SEC,
      reconnect_max_sec: CRT_RECONNECT_SEC,
      // The SDK-metrics username is an AWS IoT convention; a local broker would read it as credentials.
      disable_metrics: true,
      ...(o.passwordFile ? { username: o.clientId, password: readDeviceSecret(o.passwordFile, o.log) } : {}),
    };
  }

  private async subscribeOn(conn: mqtt.MqttClientConnection, filter: string, handler: MessageHandler): Promise<void> {
    const granted = await withTimeout(
      conn.subscribe(filter, mqtt.QoS.AtLeastOnce, (topic, payload) => {
        try {
          handler(topic, Buffer.from(payload));
        } catch (err) {
          this.opts.log.error('message handler failed', { topic, error: describeError(err) });
        }
      }),
      this.opts.requestTimeoutMs,
      `subscribe to ${filter}`,
    );
    // SUBACK 0x80: the broker's policy refused this filter.
    if ((granted.qos as number) === 128 || granted.error_code) {
      throw new TransportError(`broker refused subscription to ${filter}`, { code: 'TRANSPORT_SUBSCRIBE_REFUSED' });
    }
  }

  private async connectOnce(): Promise<void> {
    if (this.stopped || this.connecting) return;
    this.connecting = true;
    let conn: mqtt.MqttClientConnection | undefined;
    try {
      conn = this.client.new_connection(this.buildConfig());
      const c = conn;
      c.on('interrupt', (err) => this.lost(c, `interrupted: ${describeError(err)}`));
      c.on('error', (err) => this.opts.log.warn('mqtt error', { error: describeError(err) }));
      c.on('disconnect', () => this.lost(c, 'disconnected by peer'));
      await withTimeout(c.connect(), this.opts.requestTimeoutMs, `MQTT connect to ${this.opts.host}:${this.opts.port}`);
      this.conn = c;
      for (const [filter, handler] of this.subs) await this.subscribeOn(c, filter, handler);
      if (this.stopped) {
        await this.closeQuietly(c);
        return;
      }
      this.isConnected = true;
      this.attempt = 0;
      this.opts.log.info('mqtt connected', { host: this.opts.host, port: this.opts.port, tls: Boolean(this.opts.tls) });
      this.emit('connected');
    } catch (err) {
      this.opts.log.warn('mqtt connect failed', { error: describeError(err) });
      if (conn) {
        if (this.conn === conn) this.conn = undefined;
        void this.closeQuietly(conn);
      }
      this.scheduleReconnect();
    } finally {
      this.connecting = false;
    }
  }

  private lost(conn: mqtt.MqttClientConnection, why: string): void {
    if (this.conn !== conn || this.stopped) return;
    this.conn = undefined;
    const was = this.isConnected;
    this.isConnected = false;
    this.opts.log.warn('mqtt connection lost', { why });
    void this.closeQuietly(conn);
    if (was) this.emit('disconnected');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const delay = backoffDelayMs(this.attempt++, this.opts.reconnectMinMs, this.opts.reconnectMaxMs);
    this.opts.log.debug('mqtt reconnect scheduled', { delayMs: delay, attempt: this.attempt });
    this.timer = setTimeout(() => void this.connectOnce(), delay);
  }

  private async closeQuietly(conn: mqtt.MqttClientConnection): Promise<void> {
    try {
      await withTimeout(conn.disconnect(), 2000, 'MQTT disconnect');
    } catch {
      // The link is being abandoned either way.
    }
  }
}
