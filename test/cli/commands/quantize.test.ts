// `fleetlm quantize` end to end through bin/fleetlm.js: the report and the gate record are written,
// the quantized model generates, external data stays external, bad input exits 2 with nothing written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { buildModelFile } from '../../../models/onnx/build-model-file.ts';
import { loadLanguageModel } from '../../../models/runtime/index.ts';
import { QualityRecordSchema } from '../../../models/quality/quality-gate.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../../..');
const TOKENIZER = path.join(root, 'assets/demo-model/tokenizer.json');
let dir: string;
let modelPath: string;
let textPath: string;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', [path.join(root, 'bin/fleetlm.js'), 'quantize', ...args], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-quantize-cli-'));
  modelPath = path.join(dir, 'dense', 'model.onnx');
  // Vocabulary of the demo tokenizer, so --eval-text can be scored with it.
  const spec = parseArchSpec({ vocabSize: 4096, contextLength: 64, blocks: [{ width: 64, ffnRatio: 2, layers: 1, heads: 2, headDim: 32 }], tiedHead: true });
  await buildModelFile(spec, { outPath: modelPath, seed: 3, externalData: 'always' });
  textPath = path.join(dir, 'text.txt');
  writeFileSync(textPath, 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse. '.repeat(4));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetlm quantize', () => {
  it('writes the model (external data like its input), the report and the gate record; the model generates', async () => {
    const out = path.join(dir, 'q4', 'model.onnx');
    const reportPath = path.join(dir, 'q4-report.json');
    const res = await cli(['--model', modelPath, '--out', out, '--bits', '4', '--block', '32', '--report', reportPath, '--eval-text', textPath, '--eval-tokens', '64', '--tokenizer', TOKENIZER, '--max-increase', '0.5', '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const report = JSON.parse(readFileSync(reportPath, 'utf8'));
    expect(JSON.parse(res.stdout)).toEqual(report);
    // The head is tied: by default the embedding table it shares is quantized too, so no float copy stays.
    expect(report).toMatchObject({ bits: 4, blockSize: 32, symmetric: false, quantizedWeights: 7, floatCopiesKept: [] });
    expect(report.input.externalData).toBe(true);
    expect(report.output.externalDataPath).toBe(`${out}.data`);
    // The tied table is stored as int blocks twice (Gather rows and the head's 3-D B): about 2/7 of float.
    expect(report.weightQuantizedBytes).toBeLessThan(report.weightFloatBytes / 3);
    const gate = QualityRecordSchema.parse(JSON.parse(readFileSync(path.join(dir, 'q4', 'quality.json'), 'utf8')));
    expect(gate.steps).toHaveLength(1);
    expect(gate.steps[0]!.step).toBe('quantize int4 block 32 asym');
    expect(gate.maxPerplexityIncrease).toBe(0.5);
    expect(gate.passed).toBe(gate.totalChange <= 0.5);
    const lm = await loadLanguageModel(out, { intraOpNumThreads: 1, allowSpinning: false });
    try {
      const tokens: number[] = [];
      for await (const t of lm.generate([1, 2, 3], { maxTokens: 4 })) tokens.push(t.tokenId);
      expect(tokens).toHaveLength(4);
    } finally {
      await lm.dispose();
    }
  });

  it('--no-embedding keeps the float table of the tied model beside the head blocks; --embedding quantizes it', async () => {
    const kept = JSON.parse((await cli(['--model', modelPath, '--out', path.join(dir, 'q4n', 'model.onnx'), '--bits', '4', '--no-embedding', '--json'])).stdout);
    expect(kept.floatCopiesKept).toEqual(['embed_tokens.weight']);
    const out = path.join(dir, 'q4e', 'model.onnx');
    const res = await cli(['--model', modelPath, '--out', out, '--bits', '4', '--embedding', '--json']);
    expect(res.code).toBe(0);
    const report = JSON.parse(res.stdout);
    expect(report.floatCopiesKept).toEqual([]);
    // int4 blocks for the Gather and again for the head (MatMulNBits wants its own 3-D B): about 2 x 1/7 of the float table.
    expect(report.output.bytes).toBeLessThan(report.input.bytes / 3);
    expect(kept.output.bytes).toBeGreaterThan(report.output.bytes * 2);
  });

  it('copies the bundle files beside the output so the quantized model publishes as a bundle', async () => {
    const bundle = path.join(dir, 'bundle');
    mkdirSync(bundle, { recursive: true });
    copyFileSync(modelPath, path.join(bundle, 'model.onnx'));
    copyFileSync(`${modelPath}.data`, path.join(bundle, 'model.onnx.data'));
    writeFileSync(path.join(bundle, 'arch.json'), '{"spec":{}}');
    copyFileSync(TOKENIZER, path.join(bundle, 'tokenizer.json'));
    const res = await cli(['--model', path.join(bundle, 'model.onnx'), '--out', path.join(dir, 'bundle-q4', 'model.onnx'), '--bits', '4', '--json']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).carried).toEqual(['arch.json', 'tokenizer.json']);
    expect(readFileSync(path.join(dir, 'bundle-q4', 'tokenizer.json'))).toEqual(readFileSync(TOKENIZER));
  });

  it('prints a readable summary with the gate verdict', async () => {
    const out = path.join(dir, 'q8', 'model.onnx');
    const res = await cli(['--model', modelPath, '--out', out, '--bits', '8', '--symmetric', '--eval-text', textPath, '--eval-tokens', '64', '--tokenizer', TOKENIZER]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/int8 block 32 symmetric, accuracy level 4: 7 weight matrices/);
    expect(res.stdout).toMatch(/quantize int8 block 32 sym: [\d.]+ -> [\d.]+ \([+-][\d.]+%\)/);
    expect(res.stdout).toMatch(/verdict: (PASS|REJECT)/);
  });

  it.each([
    [['--bits', '3'], /quantization bits must be 4 or 8; got 3/],
    [['--bits', '4', '--block', '48'], /block size must be a power of two >= 16 \(MatMulNBits\), e.g. 32, 64 or 128; got 48/],
    [['--bits', '4', '--block', '8'], /power of two >= 16.*got 8/],
    [['--bits', '4', '--quality', 'q.json'], /--quality and --max-increase need --eval-text/],
  ])('exits 2 for %j and writes nothing', async (extra, message) => {
    const out = path.join(dir, 'refused', 'model.onnx');
    const res = await cli(['--model', modelPath, '--out', out, ...extra]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(message);
    expect(existsSync(out)).toBe(false);
  });

  it('exits 2 when --out is the input', async () => {
    const res = await cli(['--model', modelPath, '--out', modelPath, '--bits', '4']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/is the input model/);
  });
});
