// Test transport: the agent's real MQTT connection (mqtt.js), with chosen incoming messages held back for a while.
// Under load the broker and the hub answer concurrently, so replies and notifications can reach a
// device out of order; this makes such an order happen on purpose.
import { EventEmitter } from 'node:events';
import type { MessageHandler, MqttTransport } from '../../edge-agent/mqtt-connection.ts';

/** Decides, per incoming message, how many ms to hold it (0 = deliver now). */
export type DelayRule = (topic: string, body: Record<string, unknown>) => number;

export class DelayingTransport extends EventEmitter implements MqttTransport {
  /** Messages held back so far, by topic. */
  readonly held: string[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly inner: MqttTransport,
    private readonly rule: DelayRule,
  ) {
    super();
    inner.on('connected', () => this.emit('connected'));
    inner.on('disconnected', () => this.emit('disconnected'));
  }

  get connected(): boolean {
    return this.inner.connected;
  }

  subscribe(filter: string, handler: MessageHandler): Promise<void> {
    return this.inner.subscribe(filter, (topic, payload) => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
      } catch {
        // Not JSON: never delayed.
      }
      const ms = this.rule(topic, body);
      if (ms <= 0) return handler(topic, payload);
      this.held.push(topic);
      const t = setTimeout(() => {
        this.timers.delete(t);
        handler(topic, payload);
      }, ms);
      this.timers.add(t);
    });
  }

  publish(topic: string, payload: string | Uint8Array, qos: 0 | 1): Promise<void> {
    return this.inner.publish(topic, payload, qos);
  }

  start(): void {
    this.inner.start();
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.inner.stop();
  }
}
