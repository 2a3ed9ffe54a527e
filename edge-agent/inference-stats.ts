// Request counters and latency percentiles shared by the local API (/metrics) and telemetry.
// Percentiles come from a fixed window of recent samples kept in typed arrays.

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
  errors = 0;
  rejected = 0;
  tokens = 0;
  inFlight = 0;
  private readonly firstToken: Window;
  private readonly tps: Window;

  constructor(window = 512) {
    this.firstToken = new Window(window);
    this.tps = new Window(window);
  }

  /** Records one finished generation. */
  record(firstTokenMs: number, tokensPerSecond: number, tokens: number): void {
    this.firstToken.push(firstTokenMs);
    this.tps.push(tokensPerSecond);
    this.tokens += tokens;
  }

  firstTokenMs(): { p50: number; p95: number } | null {
    return this.firstToken.summary();
  }

  tokensPerSecond(): { p50: number; p95: number } | null {
    return this.tps.summary();
  }
}
