// The quality gate: per-step and total perplexity change, the verdict against the limit, and
// publish (prepareBundle) refusing a bundle whose quality.json fails, judged from the figures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { prepareBundle } from '../../../fleet/publisher.ts';
import { writeTinyModel } from '../../helpers/tiny-model.ts';
import { appendQualityStep, formatQuality, judgeQuality, qualityStep, rejudge, QUALITY_FILE, type QualityRecord } from '../../../models/quality/quality-gate.ts';

const base = { text: 'held-out.txt', tokens: 1000 };

describe('judgeQuality', () => {
  it('reports each step and judges the shipped model against the dense baseline', () => {
    const r = judgeQuality({
      ...base,
      baselinePerplexity: 100,
      maxPerplexityIncrease: 0.05,
      steps: [qualityStep('embedding svd 2x', 100, 102), qualityStep('quantize int8 block 32 asym', 102, 102.5)],
    });
    expect(r.steps.map((s) => s.change)).toEqual([0.02, expect.closeTo(0.5 / 102, 12)]);
    expect(r.totalChange).toBeCloseTo(0.025, 12);
    expect(r.passed).toBe(true);
    expect(formatQuality(r)).toMatch(/quantize int8 block 32 asym: 102.000 -> 102.500 \(\+0.49%\)[\s\S]*verdict: PASS/);
  });

  it('rejects when the total change passes the limit even if each step is under it', () => {
    const r = judgeQuality({
      ...base,
      baselinePerplexity: 100,
      maxPerplexityIncrease: 0.05,
      steps: [qualityStep('embedding', 100, 103), qualityStep('quantize int4', 103, 106)],
    });
    expect(r.passed).toBe(false);
    expect(r.reason).toMatch(/100.000 -> 106.000 \(6.00%\) exceeds the limit of \+5.00%/);
  });

  it('a candidate that was tried but not shipped does not count', () => {
    const r = judgeQuality({
      ...base,
      baselinePerplexity: 100,
      maxPerplexityIncrease: 0.05,
      steps: [qualityStep('embedding', 100, 101), qualityStep('quantize int4', 101, 140, { shipped: false }), qualityStep('quantize int8', 101, 101.2)],
    });
    expect(r.passed).toBe(true);
    expect(r.totalChange).toBeCloseTo(0.012, 12);
    expect(formatQuality(r)).toMatch(/quantize int4.*\[not shipped\]/);
  });

  it('appendQualityStep starts a record at the first step and chains later ones', () => {
    const first = appendQualityStep(undefined, qualityStep('embedding', 50, 51), { ...base, maxPerplexityIncrease: 0.1 });
    expect(first.baselinePerplexity).toBe(50);
    const second = appendQualityStep(first, qualityStep('quantize int4', 51, 56), base);
    expect(second.maxPerplexityIncrease).toBe(0.1);
    expect(second.totalChange).toBeCloseTo(0.12, 12);
    expect(second.passed).toBe(false);
  });
});

describe('publish refuses a bundle that fails the gate', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-gate-'));
    await writeTinyModel(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const write = (r: QualityRecord): void => writeFileSync(path.join(dir, QUALITY_FILE), JSON.stringify(r));
  const record = (after: number, limit: number): QualityRecord =>
    judgeQuality({ ...base, baselinePerplexity: 100, maxPerplexityIncrease: limit, steps: [qualityStep('quantize int4 block 32 asym', 100, after)] });

  it('publishes a passing bundle and records the verdict in the manifest evaluation field', async () => {
    write(record(103, 0.05));
    const b = await prepareBundle({ modelDir: dir, modelId: 'm', version: '1.0.0' });
    expect(b.manifest.evaluation).toMatchObject({ quality: { passed: true, totalChange: expect.closeTo(0.03, 12), maxPerplexityIncrease: 0.05 } });
    expect(b.ignored).not.toContain(QUALITY_FILE);
  });

  it('refuses a failing bundle with the reason', async () => {
    write(record(108, 0.05));
    await expect(prepareBundle({ modelDir: dir, modelId: 'm', version: '1.0.0' })).rejects.toMatchObject({
      code: 'VALIDATION_QUALITY_GATE',
      message: expect.stringMatching(/quality gate refuses.*8.00%\) exceeds the limit of \+5.00%/),
    });
  });

  it('does not trust a hand-edited "passed": true; judges the figures', async () => {
    write({ ...record(108, 0.05), passed: true, reason: 'fine' });
    await expect(prepareBundle({ modelDir: dir, modelId: 'm', version: '1.0.0' })).rejects.toMatchObject({ code: 'VALIDATION_QUALITY_GATE' });
  });

  it('a stricter limit at publish time refuses what the record allowed', async () => {
    write(record(103, 0.05));
    await expect(prepareBundle({ modelDir: dir, modelId: 'm', version: '1.0.0', maxPerplexityIncrease: 0.01 })).rejects.toMatchObject({ code: 'VALIDATION_QUALITY_GATE' });
    expect(rejudge(record(103, 0.05), 0.01).passed).toBe(false);
  });

  it('refuses a malformed quality.json instead of ignoring it', async () => {
    writeFileSync(path.join(dir, QUALITY_FILE), JSON.stringify({ format: 'fleetlm/quality@1', steps: 'none' }));
    await expect(prepareBundle({ modelDir: dir, modelId: 'm', version: '1.0.0' })).rejects.toThrow(/quality.json/);
  });
});
