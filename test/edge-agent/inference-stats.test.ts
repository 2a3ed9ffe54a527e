// What the agent's inference window reports in telemetry: decode speed and the KV length decoding ran
// at (per request the mean over its decode steps), which `fleetlm latency --check` predicts at.
import { describe, expect, it } from 'vitest';
import { InferenceStats } from '../../edge-agent/inference-stats.ts';

describe('InferenceStats', () => {
  it('reports the mean decode KV length of each request, and nothing before a request decoded', () => {
    const s = new InferenceStats(4);
    expect(s.decodeKvLength()).toBeNull();
    // One token: no decode step ran, so no KV length (the speed window still counts it, as before).
    s.record(5, 0, 1, 30);
    expect(s.decodeKvLength()).toBeNull();
    // 8-token prompt, 24 tokens: decode steps at KV 9 .. 31, mean 20.
    s.record(5, 500, 24, 8);
    s.record(5, 400, 64, 100);
    s.record(5, 450, 10, 0);
    expect(s.decodeKvLength()).toEqual({ p50: 20, p95: 132 });
    // The window keeps the last four requests: the 24-token one drops out after four more.
    for (let i = 0; i < 4; i++) s.record(5, 300, 2, 3);
    expect(s.decodeKvLength()).toEqual({ p50: 4, p95: 4 });
    expect(s.tokensPerSecond()).toEqual({ p50: 300, p95: 300 });
  });
});
