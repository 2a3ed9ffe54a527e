// The agent's Prometheus metrics on prom-client: one registry that GET /metrics renders, fed by the
// inference server (requests, errors, latency summaries) and read from the agent at scrape time.
// https://prometheus.io/docs/instrumenting/exposition_formats/
import { Counter, Gauge, Registry, Summary } from 'prom-client';
import type { ModelRef } from './model-store.ts';

/** What the agent shows beside the inference figures, read on each scrape. */
export interface AgentGauges {
  /** The model version serving now, or null. */
  modelRef(): ModelRef | null;
  mqttConnected(): boolean;
  /** Telemetry messages dropped from the full offline buffer since start. */
  telemetryDropped(): number;
}

/** Summary window: quantiles cover the last ten minutes of requests (five rotating buckets). */
const SUMMARY_WINDOW = { percentiles: [0.5, 0.95], maxAgeSeconds: 600, ageBuckets: 5 };

/** Every metric the agent exposes, registered in its own registry (tests run several agents per process). */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'fleetlm_requests_total', help: 'Generation requests received (all routes).', registers: [this.registry] });
  readonly serverErrors = new Counter({ name: 'fleetlm_request_errors_total', help: 'Requests that failed on the device side (HTTP 5xx).', registers: [this.registry] });
  readonly clientErrors = new Counter({
    name: 'fleetlm_request_client_errors_total',
    help: 'Requests refused as the caller’s error (HTTP 4xx other than 429): bad body, body too large, prompt longer than the context, unknown route.',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly rejected = new Counter({ name: 'fleetlm_requests_rejected_total', help: 'Requests refused for capacity (too many in flight, or no model yet).', registers: [this.registry] });
  readonly generatedTokens = new Counter({ name: 'fleetlm_generated_tokens_total', help: 'Tokens generated.', registers: [this.registry] });
  readonly promptTokens = new Counter({ name: 'fleetlm_prompt_tokens_total', help: 'Prompt tokens processed.', registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'fleetlm_requests_in_flight', help: 'Generations running now.', registers: [this.registry] });
  readonly firstTokenMs = new Summary({ name: 'fleetlm_first_token_ms', help: 'First-token latency in milliseconds.', registers: [this.registry], ...SUMMARY_WINDOW });
  readonly tokensPerSecond = new Summary({ name: 'fleetlm_tokens_per_second', help: 'Decode speed after the first token.', registers: [this.registry], ...SUMMARY_WINDOW });

  /** Adds the agent's own gauges (model version, memory, MQTT link, telemetry drops), read at scrape time. */
  watchAgent(g: AgentGauges): void {
    new Gauge({
      name: 'fleetlm_model_info',
      help: 'The model version serving requests.',
      labelNames: ['model_id', 'version'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const ref = g.modelRef();
        if (ref) this.set({ model_id: ref.modelId, version: ref.version }, 1);
      },
    });
    new Gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident set size.',
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    new Gauge({
      name: 'fleetlm_mqtt_connected',
      help: '1 while the MQTT link is up.',
      registers: [this.registry],
      collect() {
        this.set(g.mqttConnected() ? 1 : 0);
      },
    });
    new Counter({
      name: 'fleetlm_telemetry_dropped_total',
      help: 'Telemetry messages dropped from the full offline buffer.',
      registers: [this.registry],
      // The outbox owns the count; mirror it (it only grows) rather than keep a second tally.
      collect() {
        this.reset();
        this.inc(g.telemetryDropped());
      },
    });
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
