// Request counters and latency percentiles shared by the local API and telemetry. Every event goes to
// the Prometheus metrics (metrics.ts) too, so /metrics and telemetry count the same things.
// Percentiles for telemetry come from a fixed window of recent samples kept in typed arrays.
import { AgentMetrics } from './metrics.ts';

/** Nearest-rank percentile of the first `n` values of `sorted` (ascending). */
export function percentile(sorted: Float64Array, n: number, p: number): number {
  if (n === 0) return 0;
  const rank = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
  return sorted[rank]!;
}

class Window {
  private readonly data: Float64Array;
  private count = 0;
  private next = 0;
  constructor(size: number) {
    this.data = new Float64Array(size);
  }
  push(v: number): void {
    this.data[this.next] = v;
    this.next = (this.next + 1) % this.data.length;
    if (this.count < this.data.length) this.count++;
  }
  summary(): { p50: number; p95: number } | null {
    if (this.count === 0) return null;
    const sorted = this.data.slice(0, this.count).sort();
    return { p50: percentile(sorted, this.count, 50), p95: percentile(sorted, this.count, 95) };
  }
}

/** Counters since start plus p50/p95 over the last `window` completed generations. */
export class InferenceStats {
  requests = 0;
  /** Failures on the device's side (5xx). */
  serverErrors = 0;
  /** Requests refused as the caller's fault (4xx other than 429). */
  clientErrors = 0;
  rejected = 0;
  tokens = 0;
  inFlight = 0;
  /** When a generation last started or ended (epoch ms; 0: never), for "idle since" checks. */
  lastActivityAt = 0;
  private readonly firstToken: Window;
  private readonly tps: Window;
  private readonly kvLength: Window;

  constructor(
    window = 512,
    readonly metrics: AgentMetrics = new AgentMetrics(),
  ) {
    this.firstToken = new Window(window);
    this.tps = new Window(window);
    this.kvLength = new Window(window);
  }

  /** A generation request arrived. */
  received(): void {
    this.requests++;
    this.metrics.requests.inc();
  }

  /** The caller's request was refused with `status` (400, 404, 405, 413, ...). */
  clientError(status: number): void {
    this.clientErrors++;
    this.metrics.clientErrors.inc({ status: String(status) });
  }

  /** The device failed to serve a valid request. */
  serverError(): void {
    this.serverErrors++;
    this.metrics.serverErrors.inc();
  }

  /** Refused for capacity (429, or 503 with no model). */
  reject(): void {
    this.rejected++;
    this.metrics.rejected.inc();
  }

  /** A generation started (+1) or ended (-1). */
  running(delta: 1 | -1): void {
    this.inFlight += delta;
    this.lastActivityAt = Date.now();
    this.metrics.inFlight.inc(delta);
  }

  /** Records one finished generation. */
  record(firstTokenMs: number, tokensPerSecond: number, tokens: number, promptTokens = 0): void {
    this.firstToken.push(firstTokenMs);
    this.tps.push(tokensPerSecond);
    // Decode steps run at KV lengths prompt + 1 .. prompt + tokens - 1: their mean.
    if (tokens > 1) this.kvLength.push(promptTokens + tokens / 2);
    this.tokens += tokens;
    this.metrics.firstTokenMs.observe(firstTokenMs);
    this.metrics.tokensPerSecond.observe(tokensPerSecond);
    this.metrics.generatedTokens.inc(tokens);
    this.metrics.promptTokens.inc(promptTokens);
  }

  firstTokenMs(): { p50: number; p95: number } | null {
    return this.firstToken.summary();
  }

  tokensPerSecond(): { p50: number; p95: number } | null {
    return this.tps.summary();
  }

  /** Mean KV length of each generation's decode steps, over the window. */
  decodeKvLength(): { p50: number; p95: number } | null {
    return this.kvLength.summary();
  }
}
