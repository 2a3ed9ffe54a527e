// Benchmark: roll one signed model out to N agents (default 100) on this machine through the local
// hub, and print the time until every execution is SUCCEEDED and the hub's MQTT message rate.
// Agents are the real edge-agent class, several per process (bench/rollout-agents.ts), each with
// its own MQTT connection, download, signature check, install and health check.
// Usage: npx tsx bench/rollout.ts [--agents 100] [--workers 4]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { startHub } from '../local-hub/hub.ts';
import { writeDeviceSecretFile } from '../local-hub/device-credentials.ts';
import { writeFileAtomic, writeJsonAtomic } from '../common/atomic-file.ts';
import { parseArchSpec } from '../models/arch/spec.ts';
import { buildModelFile } from '../models/onnx/build-model-file.ts';
import { generateSigningKeyPair, LocalKeySigner } from '../contracts/manifest-signing.ts';
import { createIotClient, createS3Client, localProfile } from '../fleet/profile.ts';
import { publishBundle } from '../fleet/publisher.ts';
import { createRollout } from '../fleet/rollout.ts';
import { watchJob } from '../fleet/fleet-status.ts';
import { provisionThings } from '../local-demo/provision.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const here = path.dirname(fileURLToPath(import.meta.url));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const N = arg('agents', 100);
const WORKERS = Math.max(1, Math.min(N, arg('workers', 4)));
const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-bench-rollout-'));
const children: ChildProcess[] = [];
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const hub = await startHub({ dir: path.join(dir, 'hub') });
try {
  const profile = localProfile(hub.endpoints);
  const iot = createIotClient(profile);
  const s3 = createS3Client(profile);

  // A small GPT-2-vocabulary model: the bench measures the fleet machinery, not inference.
  const spec = parseArchSpec({ name: 'bench', vocabSize: 50257, contextLength: 64, blocks: [{ width: 32, ffnRatio: 2, layers: 1, heads: 1, headDim: 32 }] });
  const bundle = path.join(dir, 'bundle');
  const built = await buildModelFile(spec, { outPath: path.join(bundle, 'model.onnx'), seed: 1, externalData: 'never' });
  const keys = generateSigningKeyPair();
  const pubKey = path.join(dir, 'fleet-public-key.pem');
  await writeFileAtomic(pubKey, keys.publicKeyPem);
  await publishBundle({ s3, bucket: profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: bundle, modelId: 'bench', version: '1' });

  const things = Array.from({ length: N }, (_, i) => `bench-${String(i + 1).padStart(3, '0')}`);
  await provisionThings(iot, 'bench', things);
  for (const t of things) await writeDeviceSecretFile(path.join(dir, 'devices', t, 'mqtt-password'), await hub.issueDeviceSecret(t));

  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: WORKERS }, (_, w) => {
      const mine = things.filter((_, i) => i % WORKERS === w);
      const job = { things: mine, baseDir: path.join(dir, 'devices'), mqtt: { host: profile.mqtt!.host, port: profile.mqtt!.port }, fleetPublicKeyPath: pubKey };
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'rollout-agents.ts'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      return new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        child.once('exit', (code) => reject(new Error(`agent worker ${w} exited with ${code}`)));
      });
    }),
  );
  const startupMs = performance.now() - t0;

  // An operator connection sees every jobs-API and telemetry message through the broker.
  const op = await mqtt.connectAsync(hub.endpoints.mqtt.url, {
    clientId: 'bench-operator',
    username: hub.endpoints.credentials.accessKeyId,
    password: hub.endpoints.credentials.secretAccessKey,
    protocolVersion: 4,
  });
  let messages = 0;
  op.on('message', () => messages++);
  await op.subscribeAsync(['$aws/things/+/jobs/#', 'fleetlm/+/telemetry']);

  // Other work on the machine skews every figure; record how busy it was when the rollout began.
  const loadAverage1m = os.loadavg()[0]!;
  const cpu0 = process.cpuUsage();
  const r0 = performance.now();
  const rollout = await createRollout(iot, s3, profile, {
    modelId: 'bench',
    version: '1',
    group: 'bench',
    settings: { maxPerMinute: 1000, healthCheck: { prompt: 'Hello', maxTokens: 4, maxFirstTokenMs: 60_000 } },
  });
  let firstSucceededMs: number | null = null;
  const final = await watchJob(iot, rollout.jobId, {
    intervalMs: 250,
    details: false,
    timeoutMs: 600_000,
    onUpdate: (p) => {
      if (firstSucceededMs === null && (p.counts.SUCCEEDED ?? 0) > 0) firstSucceededMs = performance.now() - r0;
    },
  });
  const rolloutMs = performance.now() - r0;
  const cpu = process.cpuUsage(cpu0);
  await op.endAsync();

  const result = {
    agents: N,
    workers: WORKERS,
    modelBytes: built.modelBytes,
    parameters: built.parameters,
    agentStartupMs: Math.round(startupMs),
    jobStatus: final.status,
    counts: final.counts,
    firstSucceededMs: firstSucceededMs === null ? null : Math.round(firstSucceededMs),
    allSucceededMs: Math.round(rolloutMs),
    mqttMessages: messages,
    mqttMessagesPerSecond: Math.round((messages / rolloutMs) * 1000),
    bytesDownloaded: N * built.modelBytes,
    hubProcess: { cpuSeconds: (cpu.user + cpu.system) / 1e6, rssMb: Math.round(process.memoryUsage().rss / 2 ** 20) },
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '?', loadAverage1mAtStart: loadAverage1m },
    date: new Date().toISOString(),
  };
  console.log(`rollout of one ${(built.modelBytes / 2 ** 20).toFixed(1)} MB model to ${N} agents (${WORKERS} processes)`);
  console.log(`  agents started in          ${(startupMs / 1000).toFixed(1)} s`);
  console.log(`  job ${final.status}: ${JSON.stringify(final.counts)}`);
  console.log(`  first SUCCEEDED after      ${firstSucceededMs === null ? '-' : ((firstSucceededMs as number) / 1000).toFixed(1)} s`);
  console.log(`  all SUCCEEDED after        ${(rolloutMs / 1000).toFixed(1)} s`);
  console.log(`  hub MQTT messages          ${messages} (${result.mqttMessagesPerSecond}/s over the rollout)`);
  console.log(`  hub process CPU            ${result.hubProcess.cpuSeconds.toFixed(1)} s, RSS ${result.hubProcess.rssMb} MB`);
  console.log(`  machine load (1 min avg)   ${loadAverage1m.toFixed(1)} on ${os.cpus().length} cores at the start`);
  await writeJsonAtomic(path.join(here, 'results', 'rollout.json'), result);
  console.log(`wrote bench/results/rollout.json`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  await hub.stop();
  rmSync(dir, { recursive: true, force: true });
}
