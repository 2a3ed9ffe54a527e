// Real processes for self-update tests: agent packages built as tarballs (the agent entry loads this
// checkout's sources through tsx, or crashes, or hangs), the launcher bundled with esbuild as a device
// gets it, an agent home installed the way the .deb does, and a supervisor that restarts the launcher
// whenever it exits (systemd's Restart=always).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { sha256File } from '../../../common/hash.ts';
import { AgentHome } from '../../../edge-agent/self-update/agent-home.ts';
import { unpackAgentPackage } from '../../../edge-agent/self-update/package-unpacker.ts';
import { readUpdateRecord, type UpdateRecord } from '../../../edge-agent/self-update/update-record.ts';
import { REPO, eventually, type LogLine, type TestFleet } from '../agent-fixture.ts';

export type PackageKind = 'good' | 'crash' | 'hang';

const ARCH = process.arch === 'arm64' ? 'arm64' : 'x64';

/** Builds fleetlm-agent-<version>-linux-<arch>.tar.gz in `outDir` with GNU tar; returns its path. */
export async function buildAgentPackage(outDir: string, version: string, kind: PackageKind): Promise<string> {
  const src = path.join(outDir, `src-${version}`);
  const top = path.join(src, `fleetlm-agent-${version}`);
  await fs.mkdir(path.join(top, 'bin'), { recursive: true });
  await fs.writeFile(path.join(top, 'package.json'), JSON.stringify({ name: 'fleetlm-agent', version, type: 'module' }));
  const tsx = pathToFileURL(path.join(REPO, 'node_modules/tsx/dist/esm/api/index.mjs')).href;
  const main = pathToFileURL(path.join(REPO, 'edge-agent/main.ts')).href;
  const entry = {
    good: `import { register } from '${tsx}';\nregister();\nawait import('${main}');\n`,
    crash: `throw new Error('agent ${version} is broken at start');\n`,
    hang: `process.stderr.write(JSON.stringify({ msg: 'hanging agent ${version} started' }) + '\\n');\nsetInterval(() => {}, 1000);\n`,
  }[kind];
  await fs.writeFile(path.join(top, 'bin/fleetlm-agent'), `#!/usr/bin/env node\n// test agent package (${kind})\n${entry}`, { mode: 0o755 });
  const file = path.join(outDir, `fleetlm-agent-${version}-linux-${ARCH}.tar.gz`);
  execFileSync('tar', ['-czf', file, '-C', src, `fleetlm-agent-${version}`]);
  await fs.rm(src, { recursive: true });
  return file;
}

/**
 * Installs a package as the .deb would: versions/<version>, `current`, and the launcher beside them: the
 * package's own (launcher/fleetlm-agent-launcher.mjs) when `launcher` is 'package', else bundled here.
 */
export async function installAgentHome(root: string, packageFile: string, version: string, launcher: 'package' | 'bundle' = 'bundle'): Promise<AgentHome> {
  const home = new AgentHome(root);
  await unpackAgentPackage(home, version, packageFile, await sha256File(packageFile));
  await home.switchCurrent(version);
  if (launcher === 'package') {
    await fs.copyFile(path.join(home.versionDir(version), 'launcher/fleetlm-agent-launcher.mjs'), path.join(root, 'launcher.mjs'));
    return home;
  }
  await build({
    entryPoints: [path.join(REPO, 'edge-agent/self-update/launcher.ts')],
    outfile: path.join(root, 'launcher.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
  });
  return home;
}

interface Run {
  proc: ChildProcess;
  logs: LogLine[];
  lines: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Restarts the launcher whenever it exits, until stopped; keeps every run's log lines. */
/** What the files said right after a run ended by SIGKILL (launcher or agent), before the next launch. */
export interface KillSnapshot {
  record: UpdateRecord | null;
  current: string | null;
  versions: string[];
}

export class Supervisor {
  readonly runs: Run[] = [];
  readonly killSnapshots: KillSnapshot[] = [];
  private stopped = false;
  /** Fault hooks for the launches to come; dropped once a run ends by SIGKILL (the hook fired). */
  private hookEnv: Record<string, string> = {};

  constructor(
    private readonly home: AgentHome,
    private readonly configPath: string,
  ) {}

  /** Writes an agent.json for `thingName` beside the agent home. */
  static async configure(fleet: TestFleet, thingName: string, dir: string): Promise<string> {
    return fleet.writeAgentConfig(thingName, dir);
  }

  start(hookEnv: Record<string, string> = {}): void {
    this.stopped = false;
    this.hookEnv = hookEnv;
    this.launch();
  }

  private launch(): void {
    const env = { ...process.env, ...this.hookEnv };
    const proc = spawn(process.execPath, [path.join(this.home.root, 'launcher.mjs'), '--config', this.configPath], {
      cwd: path.dirname(this.configPath),
      env,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const run: Run = { proc, logs: [], lines: [], exit: new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal }))) };
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      run.lines.push(line);
      if (process.env.FLEETLM_TEST_AGENT_LOG) process.stderr.write(`[launcher ${proc.pid}] ${line}\n`);
      try {
        run.logs.push(JSON.parse(line) as LogLine);
      } catch {
        // stack traces of a crashing agent
      }
    });
    this.runs.push(run);
    void run.exit.then(async ({ code, signal }) => {
      // The launcher died by SIGKILL (a group kill), or reports its agent did (exit 137).
      if (signal === 'SIGKILL' || code === 137) {
        this.hookEnv = {};
        this.killSnapshots.push({ record: await readUpdateRecord(this.home.root), current: await this.home.currentVersion(), versions: await this.home.versions() });
      }
      if (!this.stopped) setTimeout(() => !this.stopped && this.launch(), 100);
    });
  }

  get current(): Run {
    return this.runs[this.runs.length - 1]!;
  }

  /** Waits for an agent of `version` to log 'agent started' in the newest run. */
  async waitAgent(version: string, timeoutMs = 60_000): Promise<void> {
    await eventually(async () => this.current.logs.some((l) => l.msg === 'agent started' && l.agentVersion === version), timeoutMs, `agent ${version} to start`, 100);
  }

  /** Every log line of every run, in order. */
  logs(): LogLine[] {
    return this.runs.flatMap((r) => r.logs);
  }

  /** Stops restarting; SIGTERM to the launcher (which passes it on), SIGKILL to the group if it lingers. */
  async stop(): Promise<void> {
    this.stopped = true;
    const run = this.current;
    if (!run || run.proc.exitCode !== null || run.proc.signalCode !== null) return;
    run.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      try {
        process.kill(-run.proc.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 15_000);
    await run.exit;
    clearTimeout(timer);
  }

  /** Stops, then starts with fault hooks in the environment until one kills a run. */
  async restart(hookEnv: Record<string, string> = {}): Promise<void> {
    await this.stop();
    this.start(hookEnv);
  }
}
