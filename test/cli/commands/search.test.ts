import { execFile } from 'node:child_process';
import { runCliCaptured } from '../../helpers/run-cli.ts';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { countParameters } from '../../../models/arch/accounting.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';

const run = promisify(execFile);
const bin = path.resolve('bin/fleetlm.js');

async function fleetlm(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, 'search', ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Runs the CLI in this process (fast), capturing what it writes. */
async function fleetlmInProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCliCaptured(['search', ...args]);
}

describe('fleetlm search', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-search-'));

  it('writes the result and a Hugging Face config', async () => {
    const out = path.join(dir, 'arch.json');
    const hf = path.join(dir, 'config.json');
    const r = await fleetlm(['--params', '64M', '--flops', '160G', '--device', 'jetson-nano', '--seed', '1', '--iterations', '3000', '--out', out, '--hf-config', hf]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/params +[\d.]+M \([\d,]+\) of 64M/);
    expect(r.stdout).toMatch(/latency +[\d.]+ ms\/token on jetson-nano \(gpu, roofline\)/);
    expect(r.stdout).toMatch(/embedding width \d+ \(floor 128\)/);
    const result = JSON.parse(readFileSync(out, 'utf8'));
    expect(result.format).toBe('fleetlm/search-result@1');
    expect(result.seed).toBe(1);
    expect(result.settings.iterations).toBe(3000);
    expect(result.params).toBe(countParameters(parseArchSpec(result.spec)));
    expect(result.params).toBeLessThanOrEqual(64e6);
    expect(result.flops).toBeLessThanOrEqual(160e9);
    const config = JSON.parse(readFileSync(hf, 'utf8'));
    expect(config.vocab_size).toBe(50257);
    expect(config.num_hidden_layers ?? config.n_layer).toBe(result.spec.blocks.reduce((n: number, b: { layers: number }) => n + b.layers, 0));
  });

  it('prints machine output with --json and layers config file < env < flags', async () => {
    const config = path.join(dir, 'search.json');
    writeFileSync(config, JSON.stringify({ params: '20M', seed: 5, iterations: 500, vocab: 8000 }));
    process.env.FLEETLM_SEARCH_SEED = '6';
    const r = await fleetlmInProcess(['--config', config, '--json', '--iterations', '700']).finally(() => delete process.env.FLEETLM_SEARCH_SEED);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.seed).toBe(6);
    expect(result.settings.iterations).toBe(700);
    expect(result.settings.vocabSize).toBe(8000);
    expect(result.budgets.params).toBe(20e6);
  });

  it('takes the floors from flags and says when the default embedding floor was lowered', async () => {
    const floors = await fleetlmInProcess(['--params', '64M', '--min-embedding-width', '256', '--min-attention-ratio', '0.5', '--iterations', '2000', '--json']);
    expect(floors.code).toBe(0);
    const result = JSON.parse(floors.stdout);
    expect(result.settings).toMatchObject({ minEmbeddingWidth: 256, minEmbeddingWidthSource: 'option', minAttentionRatio: 0.5 });
    for (const b of result.spec.blocks) expect(b.heads * b.headDim).toBeGreaterThanOrEqual(b.width / 2);
    const tight = await fleetlmInProcess(['--params', '6M', '--context', '128', '--iterations', '500']);
    expect(tight.code).toBe(0);
    expect(tight.stdout).toContain('embedding width 64 (floor 64, default lowered to fit the budgets)');
  });

  it('designs a Llama-family decoder with 4-bit weights and writes a Llama config', async () => {
    const hf = path.join(dir, 'llama-config.json');
    const r = await fleetlmInProcess(['--family', 'llama', '--weight-bits', '4', '--block-size', '64', '--blocks', '1', '--vocab', '32000', '--params', '40M', '--memory', '64MB', '--iterations', '2000', '--hf-config', hf, '--json']);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.settings).toMatchObject({ family: 'llama', weightStorage: { type: 'int4', blockSize: 64 }, bytesPerWeight: null, kvBytesPerValue: 4 });
    expect(result.spec.positions).toBe('rotary');
    expect(result.decodeMemoryBytes).toBeLessThanOrEqual(64e6);
    expect(result.weightBytes).toBeLessThan(result.params * 4);
    const config = JSON.parse(readFileSync(hf, 'utf8'));
    expect(config).toMatchObject({ model_type: 'llama', vocab_size: 32000, num_key_value_heads: result.spec.blocks[0].kvHeads, hidden_act: 'silu' });
    const human = await fleetlmInProcess(['--family', 'llama', '--weight-bits', '8', '--params', '20M', '--vocab', '8000', '--iterations', '500']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('Llama family: RMSNorm, rotary (theta 10000), SwiGLU, no biases');
    expect(human.stdout).toMatch(/K\/V heads?\)/);
    expect(human.stdout).toMatch(/weights +[\d.]+ MiB \(int8 \(block 32, asymmetric\); K\/V cache 4 bytes per value\)/);
  });

  it('maximises the objective --objective names, and says which', async () => {
    const common = ['--params', '300K', '--vocab', '512', '--context', '64', '--blocks', '1', '--max-layers', '6', '--head-dim', '32', '--min-embedding-width', '64', '--iterations', '3000', '--json'];
    const byParams = JSON.parse((await fleetlmInProcess([...common, '--objective', 'params'])).stdout);
    const byEntropy = JSON.parse((await fleetlmInProcess([...common, '--objective', 'entropy'])).stdout);
    expect(byParams.objective).toBe('params');
    expect(byParams.settings).toMatchObject({ objective: 'params', maxLayersPerBlock: 6, headDim: 32 });
    expect(byParams.score).toBe(byParams.params);
    expect(byParams.params).toBeGreaterThanOrEqual(byEntropy.params);
    expect(byEntropy.entropy).toBeGreaterThan(byParams.entropy);
    for (const b of byParams.spec.blocks) expect(b.layers).toBeLessThanOrEqual(6);
    const human = await fleetlmInProcess(['--objective', 'decoder-params', '--params', '20M', '--iterations', '500']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/maximising decoder parameters \(embeddings excluded\)/);
    expect(human.stdout).toMatch(/objective +[\d.]+M decoder parameters/);
  });

  it.each([
    [['--objective', 'accuracy'], /--objective must be one of entropy, entropy-embedding, params, decoder-params, flops; got 'accuracy'/],
    [['--max-layers', '0'], /--max-layers must be greater than zero/],
    [['--params', '64X'], /--params has unknown suffix 'X' in '64X'/],
    [['--flops', '-5G'], /--flops must not be negative/],
    [['--params', 'NaN'], /--params must be a number/],
    [['--params', '0'], /--params must be greater than zero/],
    [['--device', 'pi9'], /--device must be one of jetson-nano, jetson-orin-nano, rpi4, rpi5/],
    [['--params', '1M'], /params budget 1M is below the smallest feasible value 3\.36M/],
    [['--iterations', '1.5'], /--iterations must be a whole number/],
    [['--min-attention-ratio', '2'], /--min-attention-ratio must be between 0 and 1; got '2'/],
    [['--min-embedding-width', '0'], /--min-embedding-width must be greater than zero/],
    [['--params', '6M', '--min-embedding-width', '128'], /params budget 6M is below the smallest feasible value 6\.76M .*width 128 \(--min-embedding-width 128\)/],
    [['--weight-bits', '3'], /--weight-bits.*'3'/],
    [['--family', 'bert'], /--family must be gpt2 or llama \(gpt is taken as gpt2\); got 'bert'/],
    [['--weight-bits', '4', '--bytes-per-weight', '2'], /give --weight-bits \(4\) or --bytes-per-weight \(2\), not both/],
    [['--latency', '40ms'], /--latency needs a device to model latency on: pass --device \(jetson-nano, .*\), --device-file or --latency-table/],
    [['--blocks', '17'], /--blocks: Too big/],
  ])('fails with exit 2 and a clear message for %j', async (args, message) => {
    const r = await fleetlmInProcess([...args, '--iterations', String(args.includes('--iterations') ? args[args.indexOf('--iterations') + 1] : 10)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('warns when no budget bounds the design, and not when one does', async () => {
    const free = await fleetlmInProcess(['--iterations', '10']);
    expect(free.code).toBe(0);
    expect(free.stderr).toMatch(/^fleetlm search: warning: no budget given \(--params, --flops, --memory or --latency\), so nothing bounds the design: it has [\d.]+[KMG] parameters/);
    const bounded = await fleetlmInProcess(['--params', '20M', '--iterations', '10']);
    expect(bounded.code).toBe(0);
    expect(bounded.stderr).not.toMatch(/warning/);
  });

  it('spells --family gpt2|llama like `fleetlm benchmark`, takes gpt as gpt2 (flag, config file, environment) and records the same result', async () => {
    const run = async (args: string[]) => {
      const r = await fleetlmInProcess(['--params', '8M', '--vocab', '4096', '--iterations', '300', '--seed', '3', '--json', ...args]);
      expect(r.code, r.stderr).toBe(0);
      const { stats: _stats, ...result } = JSON.parse(r.stdout) as Record<string, unknown>;
      return result;
    };
    const byDefault = await run([]);
    // The result keeps the search's own name for the family ("gpt"), as results always have.
    expect(byDefault.settings).toMatchObject({ family: 'gpt' });
    for (const spelling of ['gpt2', 'gpt', 'GPT-2']) expect(await run(['--family', spelling]), spelling).toEqual(byDefault);
    const config = path.join(dir, 'family.json');
    writeFileSync(config, JSON.stringify({ family: 'gpt2' }));
    expect(await run(['--config', config])).toEqual(byDefault);
    process.env.FLEETLM_SEARCH_FAMILY = 'gpt';
    const fromEnv = await run([]).finally(() => delete process.env.FLEETLM_SEARCH_FAMILY);
    expect(fromEnv).toEqual(byDefault);
    const llama = await run(['--family', 'llama']);
    expect(llama.settings).toMatchObject({ family: 'llama' });
    expect(await run(['--family', 'Llama'])).toEqual(llama);
    // --verbose prints the effective settings in the flag's spelling.
    const verbose = await fleetlmInProcess(['--params', '8M', '--iterations', '10', '--family', 'gpt', '--verbose']);
    expect(verbose.stderr).toContain('"family": "gpt2"');
    const help = await runCliCaptured(['search', '--help']);
    expect(help.stdout.replace(/\s+/g, ' ')).toContain('--family <family> decoder family: gpt2 (LayerNorm, learned positions, GELU, biases; gpt is taken as gpt2) or llama');
  });
});
