// `fleetlm benchmark` flags for the layer family: --family gpt2|llama and --kv-heads (llama only) are in
// the help, and a bad value exits 2 naming the flag before any hub or cloud is contacted.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCliCaptured } from '../../helpers/run-cli.ts';

const noHub = ['--local', path.join('/nonexistent', 'fleetlm-no-hub')];
const base = ['benchmark', '--group', 'g', '--device', 'rpi4', ...noHub];
const lastLine = (text: string) => text.trimEnd().split('\n').at(-1) ?? '';

describe('fleetlm benchmark --family / --kv-heads', () => {
  it('lists both flags in its help', async () => {
    const r = await runCliCaptured(['benchmark', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--family <family>\s+layer family of the grid: gpt2, or llama/);
    expect(r.stdout).toMatch(/--kv-heads <list>\s+llama: K\/V head counts/);
  });

  it('refuses an unknown family, --kv-heads without --family llama, and a bad K/V head list (exit 2, the flag named)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--family', 'opt'], /--family must be gpt2 or llama; got 'opt'/],
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
});
