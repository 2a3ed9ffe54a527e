// `fleetlm build` end to end through the CLI entry: presets, spec files, search results, errors.
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { countParameters } from '../../../models/arch/accounting.ts';
import { TINY } from '../../../models/arch/presets.ts';
import { loadOnnxModel } from '../../../models/onnx/proto.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-build-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = runCliCaptured;

describe('fleetlm build', () => {
  it('builds a preset with --json and reports the parameter count', async () => {
    const out = path.join(dir, 'tiny.onnx');
    const r = await run(['build', '--arch', 'tiny', '--out', out, '--seed', '3', '--json']);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.parameters).toBe(countParameters(TINY));
    expect(summary.fused).toBe(false);
    expect((await stat(out)).size).toBe(summary.modelBytes);
    expect(loadOnnxModel(out).graph!.input![0]!.name).toBe('input_ids');
  });

  it('accepts a search result holding `spec` and builds the fused variant', async () => {
    const file = path.join(dir, 'search.json');
    await writeFile(file, JSON.stringify({ spec: { vocabSize: 32, contextLength: 8, blocks: [{ width: 8, ffnRatio: 2, layers: 2, heads: 2, headDim: 4, shareWeights: true }] }, score: 1 }));
    const out = path.join(dir, 'search.onnx');
    const r = await run(['build', '--arch', file, '--out', out, '--fused']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/fused/);
    const model = loadOnnxModel(out);
    expect(model.graph!.node!.some((n) => n.opType === 'MultiHeadAttention' && n.domain === 'com.microsoft')).toBe(true);
  });

  it('exits 2 with the offending field for an invalid spec', async () => {
    const file = path.join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ vocabSize: 32, contextLength: 8, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2 }, { width: 8, ffnRatio: 2, layers: 1, heads: 2 }] }));
    const r = await run(['build', '--arch', file, '--out', path.join(dir, 'bad.onnx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/blocks\.1\.width.*must not decrease/);
  });

  it('exits 2 for an unknown layout and 1 for a malformed checkpoint', async () => {
    const bad = await run(['build', '--arch', 'tiny', '--out', path.join(dir, 'x.onnx'), '--layout', 'bloom']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/layout/);
    const ckpt = path.join(dir, 'broken.safetensors');
    await writeFile(ckpt, new Uint8Array([1, 2, 3]));
    const r = await run(['build', '--arch', 'tiny', '--out', path.join(dir, 'y.onnx'), '--weights', ckpt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/broken\.safetensors.*at least 8/);
  });
});
