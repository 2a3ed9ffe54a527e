// `fleetlm benchmark` flags for the layer family: --family gpt2|llama (gpt taken as gpt2, as `fleetlm search`
// spells it) and --kv-heads (llama only) are in the help, every spelling gives the same grid and grid version as
// before, and a bad value exits 2 naming the flag before any hub or cloud is contacted.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchmarkGridOf } from '../../../cli/commands/latency.ts';
import { gridVersion } from '../../../fleet/benchmark-rollout.ts';
import { planGrid } from '../../../models/benchmark/grid.ts';
import { runCliCaptured } from '../../helpers/run-cli.ts';

const noHub = ['--local', path.join('/nonexistent', 'fleetlm-no-hub')];
const base = ['benchmark', '--group', 'g', '--device', 'rpi4', ...noHub];
const lastLine = (text: string) => text.trimEnd().split('\n').at(-1) ?? '';

describe('fleetlm benchmark --family / --kv-heads', () => {
  it('lists both flags in its help', async () => {
    const r = await runCliCaptured(['benchmark', '--help']);
    expect(r.code).toBe(0);
    // Help lines wrap with the terminal width: compare with whitespace folded.
    expect(r.stdout.replace(/\s+/g, ' ')).toContain('--family <family> layer family of the grid: gpt2 (LayerNorm, learned positions, GELU, biases; gpt is taken as gpt2) or llama');
    expect(r.stdout).toMatch(/--kv-heads <list>\s+llama: K\/V head counts/);
  });

  it('refuses an unknown family, --kv-heads without --family llama, and a bad K/V head list (exit 2, the flag named)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--family', 'opt'], /--family must be gpt2 or llama \(gpt is taken as gpt2\); got 'opt'/],
      [['--family', 'gpt', '--kv-heads', '2'], /--kv-heads needs --family llama/],
      [['--kv-heads', '2'], /--kv-heads needs --family llama/],
      [['--family', 'gpt2', '--kv-heads', '2'], /--kv-heads needs --family llama/],
      [['--family', 'llama', '--kv-heads', '0,2'], /--kv-heads must be a comma-separated list of positive integers; got '0,2'/],
    ];
    for (const [args, message] of cases) {
      const r = await runCliCaptured([...base, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(lastLine(r.stderr), args.join(' ')).toMatch(message);
    }
  });

  it('every spelling of a family gives the grid, files and grid version of before (agents find the published grid again)', () => {
    // Grid versions pinned from the code before the flag took aliases (fleet/benchmark-rollout.ts gridVersion).
    const versionOf = (family: string | undefined, kvHeads?: string) => gridVersion({ ...benchmarkGridOf({ family, kvHeads }), maxKvLength: 256 });
    const gpt2 = benchmarkGridOf({});
    expect(gpt2).not.toHaveProperty('family');
    for (const spelling of ['gpt2', 'gpt', 'GPT2', 'gpt-2']) {
      expect(benchmarkGridOf({ family: spelling }), spelling).toEqual(gpt2);
      expect(versionOf(spelling), spelling).toBe('fp32-c1e15d774f89d940');
    }
    expect(versionOf(undefined)).toBe('fp32-c1e15d774f89d940');
    expect(JSON.stringify(planGrid({ ...benchmarkGridOf({ family: 'gpt' }), maxKvLength: 256 }))).toBe(JSON.stringify(planGrid({ ...gpt2, maxKvLength: 256 })));
    expect(versionOf('llama', '1,2')).toBe('fp32-f4208d50f8d219dc');
    expect(versionOf('Llama')).toBe('fp32-b1d2e8bd1ca32210');
  });
});
