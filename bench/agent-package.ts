// Agent packaging benchmark: the old path (TypeScript through tsx) beside the new one (esbuild bundles and
// the unpacked device package): package size, agent start to MQTT connected, idle RSS, `fleetlm --help` wall.
// Run: npm run build && npx tsx bench/agent-package.ts [--runs 5] [--paths old,new]
//      -> prints figures and writes bench/results/agent-package.json
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { startHub } from '../local-hub/hub.ts';
import { generateSigningKeyPair } from '../contracts/manifest-signing.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { runs: { type: 'string', default: '5' }, paths: { type: 'string', default: 'old,new' } },
});
// Absolute, so the agent can run from its own directory.
const TSX = import.meta.resolve('tsx');
const RUNS = Number(values.runs);
const PATHS = values.paths!.split(',') as Array<'old' | 'new'>;

interface Launch {
  cmd: string;
  args: string[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** Wall time of `fleetlm --help`, median of RUNS. */
function helpWallMs(launch: Launch): number[] {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = spawnSync(launch.cmd, [...launch.args, '--help'], { cwd: REPO, encoding: 'utf8' });
    times.push(performance.now() - t0);
    if (r.status !== 0 || !r.stdout.includes('Usage')) throw new Error(`fleetlm --help failed (${r.status}): ${r.stderr}`);
  }
  return times;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) * 1024;
}

/** Starts the agent, returns ms from spawn to the 'mqtt connected' log line and the RSS after `idleMs`. */
async function agentRun(launch: Launch, configPath: string, cwd: string, idleMs: number): Promise<{ connectMs: number; idleRss: number }> {
  const t0 = performance.now();
  const proc = spawn(launch.cmd, [...launch.args, '--config', configPath], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let connectMs = NaN;
  const lines: string[] = [];
  const connected = new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      lines.push(line);
      if (Number.isNaN(connectMs) && line.includes('"mqtt connected"')) {
        connectMs = performance.now() - t0;
        resolve();
      }
    });
    proc.on('exit', (code) => reject(new Error(`agent exited ${code}: ${lines.slice(-5).join('\n')}`)));
    setTimeout(() => reject(new Error(`agent did not connect in 30 s: ${lines.slice(-5).join('\n')}`)), 30_000).unref();
  });
  try {
    await connected;
    await new Promise((r) => setTimeout(r, idleMs));
    return { connectMs, idleRss: await rssBytes(proc.pid!) };
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
  }
}

async function duBytes(dir: string): Promise<number> {
  const r = spawnSync('du', ['-sbL', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]);
}

/** Builds the package with the CLI bundle and unpacks it; returns the launch of its bin and its sizes. */
async function newAgentPackage(work: string): Promise<{ launch: Launch; tarBytes: number; debBytes: number; unpackedBytes: number }> {
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const out = path.join(work, 'pkg');
  const r = spawnSync(process.execPath, [path.join(REPO, 'bin/fleetlm.js'), 'agent', 'package', '--arch', arch, '--out', out, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fleetlm agent package failed: ${r.stderr}`);
  const res = JSON.parse(r.stdout) as { tarball: string; deb?: string; topFolder: string };
  const unpack = path.join(work, 'unpacked');
  await fs.mkdir(unpack);
  const x = spawnSync('tar', ['-xzf', res.tarball, '-C', unpack]);
  if (x.status !== 0) throw new Error(`tar failed: ${x.stderr}`);
  const top = path.join(unpack, res.topFolder);
  return {
    launch: { cmd: process.execPath, args: [path.join(top, 'bin/fleetlm-agent')] },
    tarBytes: (await fs.stat(res.tarball)).size,
    debBytes: res.deb ? (await fs.stat(res.deb)).size : NaN,
    unpackedBytes: await duBytes(top),
  };
}

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-bench-pkg-'));
const hub = await startHub({ dir: path.join(work, 'hub'), allowUnregisteredThings: true });
const keys = generateSigningKeyPair();
await fs.writeFile(path.join(work, 'fleet.pem'), keys.publicKeyPem);
const loadBefore = os.loadavg();
const results: Record<string, unknown> = {};
try {
  for (const which of PATHS) {
    let agent: Launch;
    let cli: Launch;
    const sizes: Record<string, number> = {};
    if (which === 'old') {
      // What bin/*.js did before the bundles: register tsx, import the TypeScript entry.
      agent = { cmd: process.execPath, args: ['--import', TSX, path.join(REPO, 'edge-agent/main.ts')] };
      cli = { cmd: process.execPath, args: ['--import', TSX, path.join(REPO, 'cli/main.ts')] };
      // A device had the whole repository and its node_modules: no package existed.
      sizes.installedBytes = (await duBytes(path.join(REPO, 'node_modules'))) + (await duBytes(path.join(REPO, 'edge-agent')));
    } else {
      const pkg = await newAgentPackage(work);
      agent = pkg.launch;
      cli = { cmd: process.execPath, args: [path.join(REPO, 'bin/fleetlm.js')] };
      Object.assign(sizes, { tarGzBytes: pkg.tarBytes, debBytes: pkg.debBytes, installedBytes: pkg.unpackedBytes });
    }
    const help = helpWallMs(cli);
    const connects: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const dir = path.join(work, `${which}-agent-${i}`);
      await fs.mkdir(dir);
      const thing = `bench-${which}-${i}`;
      const configPath = path.join(dir, 'agent.json');
      await fs.writeFile(
        configPath,
        JSON.stringify({
          thingName: thing,
          mqtt: { host: hub.endpoints.mqtt.host, port: hub.endpoints.mqtt.port },
          modelDir: 'models',
          stateDir: 'state',
          fleetPublicKeyPath: path.join(work, 'fleet.pem'),
          http: { port: 0 },
        }),
      );
      const r = await agentRun(agent, configPath, dir, i === 0 ? 5000 : 3000);
      connects.push(r.connectMs);
      rss.push(r.idleRss);
    }
    results[which] = {
      ...sizes,
      helpWallMs: { median: round(median(help)), runs: help.map((x) => round(x)) },
      agentStartToMqttConnectedMs: { median: round(median(connects)), runs: connects.map((x) => round(x)) },
      idleRssBytes: { median: median(rss), runs: rss },
    };
    const mb = (b: number) => `${round(b / 1e6)} MB`;
    console.log(`[${which}] fleetlm --help: ${round(median(help))} ms median of ${RUNS}`);
    console.log(`[${which}] agent start -> MQTT connected: ${round(median(connects))} ms median of ${RUNS}`);
    console.log(`[${which}] agent idle RSS (no model): ${mb(median(rss))} median`);
    for (const [k, v] of Object.entries(sizes)) console.log(`[${which}] ${k}: ${mb(v)}`);
  }
} finally {
  await hub.stop();
  await fs.rm(work, { recursive: true, force: true });
}
const loadAfter = os.loadavg();
const result = {
  bench: 'agent-package',
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  // The machine may be shared: the 1-minute load average before and after says how much.
  loadAverage1m: { before: round(loadBefore[0]!, 2), after: round(loadAfter[0]!, 2) },
  runs: RUNS,
  ...results,
};
console.log(`load average (1 min): ${result.loadAverage1m.before} before, ${result.loadAverage1m.after} after, on ${result.cpus} CPUs`);
const out = path.join(REPO, 'bench', 'results', 'agent-package.json');
await fs.mkdir(path.dirname(out), { recursive: true });
await fs.writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${path.relative(process.cwd(), out)}`);
