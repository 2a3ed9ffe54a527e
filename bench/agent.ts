// Edge agent benchmark on loopback: idle RSS of the agent process (no model, then serving), and the time
// from CreateJob to SUCCEEDED for a ~50 MB model through the local hub (MQTT + S3 + IoT Jobs).
// Run: npx tsx bench/agent.ts  -> prints figures and writes bench/results/agent.json
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArchSpec } from '../models/arch/spec.ts';
import { AgentProcess, TestFleet, buildTestModel, eventually, sleep, tempDir } from '../test/edge-agent/agent-fixture.ts';

/** GPT-2 vocabulary at width 256: the tied embedding alone is 50257 x 256 x 4 B = 51.5 MB. */
const SPEC_50MB = parseArchSpec({
  name: 'agent-bench-50mb',
  vocabSize: 50257,
  contextLength: 128,
  blocks: [{ width: 256, ffnRatio: 4, layers: 2, heads: 4, headDim: 64 }],
  tiedHead: true,
});

async function rssOf(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb * 1024;
}

const mb = (b: number) => Math.round((b / 1e6) * 10) / 10;

const fleet = await TestFleet.start();
let agent: AgentProcess | undefined;
try {
  const t0 = performance.now();
  const model = await buildTestModel(7, SPEC_50MB);
  const modelBytes = (await Promise.all(model.files.map((f) => fs.stat(f.path)))).reduce((s, st) => s + st.size, 0);
  const buildMs = performance.now() - t0;
  const thing = 'bench-1';
  const arn = await fleet.createThing(thing);
  const dir = await tempDir('fleetlm-agent-bench-');
  agent = await AgentProcess.start(fleet, thing, dir);
  await sleep(3000);
  const idleRssNoModel = await rssOf(agent.proc.pid!);

  const doc = await fleet.publish('bench', '1', model);
  const created = performance.now();
  await fleet.createJob('bench-job-1', arn, doc);
  const exec = await eventually(
    async () => {
      const e = await fleet.execution('bench-job-1', thing);
      return e.status && !['QUEUED', 'IN_PROGRESS'].includes(e.status) ? e : undefined;
    },
    300_000,
    'bench job',
    25,
  );
  const jobMs = performance.now() - created;
  if (exec.status !== 'SUCCEEDED') throw new Error(`bench job ended ${exec.status}: ${JSON.stringify(exec.statusDetails)}`);
  await sleep(3000);
  const idleRssServing = await rssOf(agent.proc.pid!);
  const d = exec.statusDetails?.detailsMap ?? {};
  // Phase durations from the agent's own log timestamps.
  const at = (match: (l: { msg: string; [k: string]: unknown }) => boolean) => {
    const l = agent!.logs.find(match);
    return l ? Date.parse(String(l.t)) : NaN;
  };
  const phaseAt = (p: string) => at((l) => l.msg === 'install phase' && l.phase === p);
  const received = at((l) => l.msg === 'job received');
  const finished = at((l) => l.msg === 'job finished');
  const phasesMs = {
    download: phaseAt('verifying') - phaseAt('downloading'),
    verify: phaseAt('installing') - phaseAt('verifying'),
    install: phaseAt('health-checking') - phaseAt('installing'),
    healthCheck: phaseAt('committing') - phaseAt('health-checking'),
    commitAndReport: finished - phaseAt('committing'),
    receivedToFinished: finished - received,
  };
  const result = {
    bench: 'agent',
    date: new Date().toISOString(),
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    modelBytes,
    modelBuildMs: Math.round(buildMs),
    idleRssNoModelBytes: idleRssNoModel,
    idleRssServingBytes: idleRssServing,
    jobCreateToSucceededMs: Math.round(jobMs),
    phasesMs,
    healthCheck: { loadMs: Number(d.loadMs), firstTokenMs: Number(d.firstTokenMs), tokensPerSecond: Number(d.tokensPerSecond) },
  };
  console.log(`model: ${mb(modelBytes)} MB (built in ${result.modelBuildMs} ms)`);
  console.log(`idle RSS, no model:      ${mb(idleRssNoModel)} MB`);
  console.log(`idle RSS, serving model: ${mb(idleRssServing)} MB`);
  console.log(`CreateJob -> SUCCEEDED:  ${result.jobCreateToSucceededMs} ms`);
  console.log(`  phases (agent clock): ${Object.entries(phasesMs).map(([k, v]) => `${k} ${v} ms`).join(', ')}`);
  console.log(`  health check: load ${d.loadMs} ms, first token ${d.firstTokenMs} ms, ${d.tokensPerSecond} tokens/s`);
  const out = path.join(import.meta.dirname, 'results', 'agent.json');
  await fs.mkdir(path.dirname(out), { recursive: true });
  await fs.writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
} finally {
  await agent?.stop();
  await fleet.stop();
}
