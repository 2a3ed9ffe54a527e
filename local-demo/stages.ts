// Stage timing for the demo: each stage prints when it starts and how long it took, and the
// list of timings ends up in the result and the final report.
export interface StageTiming {
  name: string;
  ms: number;
  ok: boolean;
}

export type DemoLog = (line: string) => void;

/** Runs named stages in order and records their wall time. */
export class StageClock {
  readonly timings: StageTiming[] = [];
  private readonly t0 = performance.now();
  constructor(private readonly log: DemoLog) {}

  /** Runs `fn` as stage `name`, logging its start and duration (also when it throws). */
  async stage<T>(name: string, fn: () => Promise<T>, summary?: (value: T) => string): Promise<T> {
    const n = this.timings.length + 1;
    this.log(`[${n}] ${name} ...`);
    const start = performance.now();
    try {
      const value = await fn();
      const ms = performance.now() - start;
      this.timings.push({ name, ms, ok: true });
      this.log(`[${n}] ${name} done in ${(ms / 1000).toFixed(1)} s${summary ? `: ${summary(value)}` : ''}`);
      return value;
    } catch (err) {
      const ms = performance.now() - start;
      this.timings.push({ name, ms, ok: false });
      this.log(`[${n}] ${name} FAILED after ${(ms / 1000).toFixed(1)} s`);
      throw err;
    }
  }

  /** Milliseconds since the clock was created. */
  elapsedMs(): number {
    return performance.now() - this.t0;
  }
}

/** A table of stage timings. */
export function formatTimings(timings: readonly StageTiming[], totalMs: number): string {
  const w = Math.max(5, ...timings.map((t) => t.name.length));
  return [
    ...timings.map((t) => `  ${t.name.padEnd(w)}  ${(t.ms / 1000).toFixed(1).padStart(6)} s${t.ok ? '' : '  (failed)'}`),
    `  ${'total'.padEnd(w)}  ${(totalMs / 1000).toFixed(1).padStart(6)} s`,
  ].join('\n');
}
