// `fleetlm compress` end to end through bin/fleetlm.js: worker threads load TypeScript from the real
// entry point, the report is written, the compressed model generates text, bad input exits 2.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { loadOnnxModel, saveOnnxModel } from '../../../models/onnx/proto.ts';
import { loadLanguageModel } from '../../../models/runtime/index.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../../..');
let dir: string;
let modelPath: string;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', [path.join(root, 'bin/fleetlm.js'), 'compress', ...args], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-compress-cli-'));
  modelPath = path.join(dir, 'dense.onnx');
  const spec = parseArchSpec({
    vocabSize: 512,
    contextLength: 32,
    blocks: [{ width: 64, ffnRatio: 2, layers: 1, heads: 2, headDim: 32 }],
    tiedHead: true,
  });
  await buildModelFile(spec, { outPath: modelPath, seed: 3 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetlm compress', () => {
  it('compresses with worker threads, writes the report, and the model generates', async () => {
    const out = path.join(dir, 'tt.onnx');
    const reportPath = path.join(dir, 'report.json');
    const res = await cli(['--model', modelPath, '--out', out, '--ratio', '2', '--workers', '2', '--report', reportPath, '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const report = JSON.parse(readFileSync(reportPath, 'utf8'));
    expect(JSON.parse(res.stdout)).toEqual(report);
    expect(report.embedding.method).toBe('tt-row');
    expect(report.embedding.ratio).toBeGreaterThanOrEqual(2);
    expect(report.output.bytes).toBe(statSync(out).size);
    expect(report.tiedHead.mode).toBe('reconstruct');
    expect(report.tiedHead.fileBytes.dense).toBeGreaterThan(report.tiedHead.fileBytes.reconstruct);
    expect(report.output.bytes).toBeLessThan(report.input.bytes);
    const lm = await loadLanguageModel(out, { intraOpNumThreads: 1, allowSpinning: false });
    try {
      const tokens: number[] = [];
      for await (const t of lm.generate([1, 2, 3], { maxTokens: 5 })) tokens.push(t.tokenId);
      expect(tokens.length).toBe(5);
      expect(tokens.every((t) => t >= 0 && t < 512)).toBe(true);
    } finally {
      await lm.dispose();
    }
  });

  it('exits 2 with a clear message for an impossible ratio', async () => {
    const res = await cli(['--model', modelPath, '--out', path.join(dir, 'x.onnx'), '--ratio', '500', '--method', 'tt-row']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/compression ratio 500 is impossible for per-row TT of width 64/);
  });

  it('exits 2 for a shape that does not multiply to the width', async () => {
    const res = await cli(['--model', modelPath, '--out', path.join(dir, 'x.onnx'), '--max-rank', '2', '--shape', '4x4x5']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/4x4x5 multiplies to 80, but the vector has 64 elements/);
  });

  it('exits 2 for a model whose embedding is not a Gather on an initializer', async () => {
    const m = loadOnnxModel(modelPath);
    const g = m.graph!;
    // Feed the table through an Identity: the Gather's data is then no initializer.
    const node = (g.node ?? []).find((n) => n.opType === 'Gather' && n.input![0] === 'embed_tokens.weight')!;
    node.input![0] = 'table_copy';
    g.node = [{ opType: 'Identity', input: ['embed_tokens.weight'], output: ['table_copy'], name: 'copy' }, ...(g.node ?? [])];
    const bad = path.join(dir, 'bad.onnx');
    await saveOnnxModel(m, bad);
    const res = await cli(['--model', bad, '--out', path.join(dir, 'x.onnx'), '--ratio', '2']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/no token embedding found: expected a Gather \(axis 0\) whose data is a 2-D float initializer/);
  });

  it('exits 2 without a target size', async () => {
    const res = await cli(['--model', modelPath, '--out', path.join(dir, 'x.onnx')]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/give a target size/);
  });
});
