// One rule for every command in the catalog, checked on the built CLI (`node bin/fleetlm.js`, spawned): usage
// errors (unknown flag, missing required option or argument, bad choice) exit 1 and print the command's whole
// help; invalid values exit 2; the error is the last line of stderr with a hint to `--help`; with --json the
// error is one JSON object on stderr. docs/operator.md prints the exit-code table of cli/exit-codes.ts.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { COMMANDS } from '../../cli/commands/index.ts';
import { EXIT_CODES } from '../../cli/exit-codes.ts';
import { JsonErrorSchema } from '../../cli/json-output.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const REPO = path.resolve(import.meta.dirname, '../..');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function fleetlm(args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO, 'bin/fleetlm.js'), ...args], { cwd, env: { ...process.env, FLEETLM_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs all invocations, a few at a time (each is a Node start-up). */
async function runAll(invocations: ReadonlyArray<readonly string[]>, cwd: string): Promise<Run[]> {
  const results: Run[] = new Array(invocations.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      while (next < invocations.length) {
        const i = next++;
        results[i] = await fleetlm(invocations[i]!, cwd);
      }
    }),
  );
  return results;
}

interface Leaf {
  path: string;
  command: Command;
}

/** Every runnable command of the catalog (`device register`, not `device`), registered as main.ts does. */
async function leaves(): Promise<Leaf[]> {
  const out: Leaf[] = [];
  for (const entry of COMMANDS) {
    const program = new Command('fleetlm');
    (await entry.load()).register(program);
    const walk = (cmd: Command, prefix: string[]): void => {
      const names = [...prefix, cmd.name()];
      const subs = cmd.commands.filter((c) => c.name() !== 'help');
      if (subs.length === 0) out.push({ path: names.join(' '), command: cmd });
      for (const sub of subs) walk(sub, names);
    };
    for (const top of program.commands) walk(top, []);
  }
  return out;
}

const hasJson = (c: Command) => c.options.some((o) => o.long === '--json');

/** The command line of `leaf` with every required option and argument given (placeholder values). */
function withRequired(leaf: Leaf): string[] {
  const args = [...leaf.path.split(' ')];
  for (const a of leaf.command.registeredArguments) if (a.required) args.push('x');
  for (const o of leaf.command.options) if (o.mandatory) args.push(o.long!, 'x');
  return args;
}

/** In-process runs (same code as the binary, without a Node start-up each): for the long tables. */
async function runAllInProcess(invocations: ReadonlyArray<readonly string[]>): Promise<Run[]> {
  const out: Run[] = [];
  for (const args of invocations) out.push(await runCliCaptured(args));
  return out;
}
const lastLine = (text: string) => text.trimEnd().split('\n').at(-1) ?? '';

/** One invalid value per command: exit 2 (every command in the catalog needs an entry; a new command adds one). */
function invalidInvocations(t: string): Record<string, string[]> {
  const noHub = ['--local', path.join(t, 'no-hub')];
  return {
    search: ['--params', '-5'],
    build: ['--arch', 'tiny', '--out', path.join(t, 'x.onnx'), '--seed', '-1'],
    import: ['--hf', path.join(t, 'missing'), '--out', path.join(t, 'imported')],
    generate: ['--model', path.join(t, 'm.onnx'), '--prompt', 'hi', '--max-tokens', '0'],
    perplexity: ['--model', path.join(t, 'm.onnx'), '--text', path.join(t, 't.txt'), '--max-tokens', '1'],
    compress: ['--model', path.join(t, 'm.onnx'), '--out', path.join(t, 'c.onnx'), '--ratio', '-1'],
    quantize: ['--model', path.join(t, 'm.onnx'), '--out', path.join(t, 'q.onnx'), '--bits', '3'],
    train: ['--arch', 'tiny', '--text', 'moby-dick', '--tokens', '0', '--out', path.join(t, 'ck.safetensors')],
    'local up': ['--mqtt-port', '99999', '--dir', path.join(t, 'hub')],
    'local endpoints': ['--dir', path.join(t, 'no-hub')],
    publish: ['--model-dir', t, '--model-id', 'm', '--version', '1', '--max-perplexity-increase', '-1'],
    rollout: [...noHub, '--model', 'm', '--version', '1', '--group', 'g'],
    status: ['job-1', ...noHub],
    cancel: ['job-1', ...noHub],
    rollback: ['--group', 'g', ...noHub],
    approve: ['--reject', '--list', ...noHub],
    benchmark: ['--group', 'g', '--device', 'rpi4', '--storage', 'fp64', ...noHub],
    latency: ['--group', 'g', '--outlier-factor', 'x', ...noHub],
    'authorize-rollback': ['--model', 'm', '--version', '1', '--out', path.join(t, 'auth.json'), ...noHub],
    telemetry: ['--since', '0', ...noHub],
    keygen: ['--out-dir', path.join(t, 'keys')],
    'kms-public-key': ['--out', path.join(t, 'kms.pem'), ...noHub],
    devices: noHub,
    jobs: ['--limit', 'x'],
    versions: noHub,
    deprecate: ['--model', 'm', '--version', '1', ...noHub],
    console: ['--port', '99999'],
    'device register': ['--thing', 'pi-1', '--out', path.join(t, 'dev', 'agent.json'), ...noHub],
    'agent bundle': ['--out', path.join(t, 'bundle'), '--agent-version', 'x_y'],
    'agent package': ['--arch', 'mips', '--out', path.join(t, 'pkg')],
    demo: ['--devices', '0'],
  };
}

describe('the CLI rule for failures, on every command of the catalog', () => {
  let dir = '';
  let all: Leaf[] = [];
  beforeAll(async () => {
    dir = await tempDir('fleetlm-conventions-');
    mkdirSync(path.join(dir, 'keys'));
    writeFileSync(path.join(dir, 'keys', 'fleet-signing-key.pem'), 'an existing key');
    all = await leaves();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('an unknown flag exits 1 with the whole help of the command, and the error (with a --help hint) as the last line', async () => {
    // After the required options: commander reports a missing required option before an unknown one.
    const runs = await runAll(all.map((l) => [...withRequired(l), '--no-such-flag']), dir);
    all.forEach((leaf, i) => {
      const r = runs[i]!;
      expect(r.code, leaf.path).toBe(1);
      expect(r.stdout, leaf.path).toBe('');
      expect(r.stderr, leaf.path).toContain(`Usage: fleetlm ${leaf.path} [options]`);
      // Every option's flag is in the help, so it is the whole help.
      for (const o of leaf.command.options) expect(r.stderr, leaf.path).toContain(o.long ?? o.flags);
      expect(lastLine(r.stderr), leaf.path).toBe(`fleetlm: error: unknown option '--no-such-flag' (run 'fleetlm ${leaf.path} --help')`);
    });
  }, 240_000);

  it('a missing required option or argument, and a bad choice, exit 1 with the help; with --json the error is one JSON object', async () => {
    const cases: Array<{ leaf: Leaf; args: string[]; code: string }> = [];
    for (const leaf of all) {
      const required = leaf.command.options.some((o) => o.mandatory) || leaf.command.registeredArguments.some((a) => a.required);
      if (required) {
        const missing = leaf.command.registeredArguments.some((a) => a.required) ? 'USAGE_MISSING_ARGUMENT' : 'USAGE_MISSING_OPTION';
        cases.push({ leaf, args: [...leaf.path.split(' ')], code: missing });
        if (hasJson(leaf.command)) cases.push({ leaf, args: [...leaf.path.split(' '), '--json'], code: missing });
      }
      for (const o of leaf.command.options.filter((x) => x.argChoices)) cases.push({ leaf, args: [...leaf.path.split(' '), o.long!, 'no-such-choice'], code: 'USAGE_INVALID_ARGUMENT' });
    }
    expect(cases.length).toBeGreaterThan(15);
    expect(cases.some((c) => c.code === 'USAGE_INVALID_ARGUMENT')).toBe(true);
    const runs = await runAllInProcess(cases.map((c) => c.args));
    cases.forEach(({ leaf, args, code }, i) => {
      const r = runs[i]!;
      const what = args.join(' ');
      expect(r.code, what).toBe(1);
      if (args.includes('--json')) {
        expect(r.stderr.trimEnd().split('\n'), what).toHaveLength(1);
        const body = JsonErrorSchema.parse(JSON.parse(r.stderr));
        expect(body.error, what).toMatchObject({ code, exitCode: 1, hint: `run 'fleetlm ${leaf.path} --help'` });
      } else {
        expect(r.stderr, what).toContain(`Usage: fleetlm ${leaf.path}`);
        expect(lastLine(r.stderr), what).toMatch(new RegExp(`^fleetlm: error: .+ \\(run 'fleetlm ${leaf.path} --help'\\)$`));
      }
    });
  }, 240_000);

  it('an invalid value exits 2 without the help, naming the flag; with --json as one JSON object', async () => {
    const table = invalidInvocations(dir);
    expect(Object.keys(table).sort()).toEqual(all.map((l) => l.path).sort());
    const runs = await runAllInProcess(all.map((l) => [...l.path.split(' '), ...table[l.path]!, ...(hasJson(l.command) ? ['--json'] : [])]));
    all.forEach((leaf, i) => {
      const r = runs[i]!;
      expect(r.code, `${leaf.path}: ${r.stderr}`).toBe(2);
      expect(r.stderr, leaf.path).not.toContain('Usage: fleetlm');
      if (hasJson(leaf.command)) {
        const body = JsonErrorSchema.parse(JSON.parse(lastLine(r.stderr)));
        expect(body.error.code, leaf.path).toMatch(/^VALIDATION/);
        expect(body.error).toMatchObject({ exitCode: 2, hint: `run 'fleetlm ${leaf.path} --help'` });
        // No internal field names where the user typed flags.
        expect(body.error.message, leaf.path).not.toMatch(/\b(maxTokens|mqttPort|maxPerplexityIncrease|seed|ratio|tokens|params):/);
      } else {
        expect(lastLine(r.stderr), leaf.path).toMatch(new RegExp(`^fleetlm: error: .+ \\(run 'fleetlm ${leaf.path} --help'\\)$`));
      }
    });
  }, 240_000);

  it('the built binary: --help and --version exit 0 on stdout, no command is a usage error, --json errors are one JSON object', async () => {
    const [help, version, none, group, missingJson, invalidJson, typo] = await runAll(
      [['rollout', '--help'], ['--version'], [], ['device'], ['build', '--json'], ['jobs', '--limit', 'x', '--json'], ['jobs', '--limt', '5']],
      dir,
    );
    // Commander's suggestion stays on the error's one line.
    expect(typo!.code).toBe(1);
    expect(lastLine(typo!.stderr)).toBe("fleetlm: error: unknown option '--limt' (Did you mean --limit?) (run 'fleetlm jobs --help')");
    expect(help!.code).toBe(0);
    expect(help!.stdout).toContain('Usage: fleetlm rollout');
    expect(version!.code).toBe(0);
    expect(version!.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(none!.code).toBe(1);
    expect(none!.stderr).toContain('Usage: fleetlm [options] [command]');
    expect(lastLine(none!.stderr)).toBe("fleetlm: error: missing command (run 'fleetlm --help')");
    expect(group!.code).toBe(1);
    expect(lastLine(group!.stderr)).toBe("fleetlm: error: missing command (one of register) (run 'fleetlm device --help')");
    expect(missingJson!.code).toBe(1);
    expect(JsonErrorSchema.parse(JSON.parse(missingJson!.stderr)).error).toMatchObject({ code: 'USAGE_MISSING_OPTION', exitCode: 1 });
    expect(invalidJson!.code).toBe(2);
    expect(JsonErrorSchema.parse(JSON.parse(invalidJson!.stderr)).error).toMatchObject({ code: 'VALIDATION', exitCode: 2, hint: "run 'fleetlm jobs --help'" });
  }, 120_000);

  it('docs/operator.md prints the exit-code table of cli/exit-codes.ts', () => {
    const doc = readFileSync(path.join(REPO, 'docs/operator.md'), 'utf8');
    for (const { code, meaning } of EXIT_CODES) expect(doc).toContain(`| ${code} | ${meaning} |`);
  });
});
