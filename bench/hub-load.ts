// Load benchmark: N mqtt.js things (default 500) take one job through start-next and SUCCEEDED against
// a hub in a child process; prints wall time, msg/s, hub CPU and RSS, writes bench/results/hub-load.json.
// Run: npx tsx bench/hub-load.ts [--things 500] [--group-size 50]
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import {
  AddThingToThingGroupCommand,
  CreateJobCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  DescribeJobCommand,
  IoTClient,
} from '@aws-sdk/client-iot';
import type { HubEndpoints } from '../local-hub/hub.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RESULTS = path.join(HERE, 'results', 'hub-load.json');

interface HubStats {
  cpuUserMs: number;
  cpuSystemMs: number;
  rssBytes: number;
  maxRssBytes: number;
}

type ChildMessage = { type: 'ready'; endpoints: HubEndpoints } | ({ type: 'stats' } & HubStats);

// ---- child: the hub ------------------------------------------------------------------------------
async function runHubChild(dir: string): Promise<void> {
  const { startHub } = await import('../local-hub/hub.ts');
  const hub = await startHub({ dir });
  const send = (m: ChildMessage) => process.send?.(m);
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stats') {
      const cpu = process.cpuUsage();
      send({
        type: 'stats',
        cpuUserMs: cpu.user / 1000,
        cpuSystemMs: cpu.system / 1000,
        rssBytes: process.memoryUsage().rss,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
      });
    } else if (msg.type === 'stop') {
      void hub.stop().then(() => process.exit(0));
    }
  });
  send({ type: 'ready', endpoints: hub.endpoints });
}

// ---- parent: the things --------------------------------------------------------------------------
function request<T extends ChildMessage['type']>(child: ChildProcess, type: T, send?: { type: string }): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve) => {
    const on = (m: ChildMessage) => {
      if (m.type === type) {
        child.off('message', on);
        resolve(m as Extract<ChildMessage, { type: T }>);
      }
    };
    child.on('message', on);
    if (send) child.send(send);
  });
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { things: { type: 'string', default: '500' }, 'hub-child': { type: 'string' } } });
  if (values['hub-child']) return runHubChild(values['hub-child']);
  const n = Number(values.things);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--things must be a positive integer, got ${values.things}`);

  const dir = await mkdtemp(path.join(os.tmpdir(), 'fleetlm-hub-load-'));
  const child = fork(fileURLToPath(import.meta.url), ['--hub-child', dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { endpoints } = await request(child, 'ready');
  const iot = new IoTClient({ region: endpoints.region, endpoint: endpoints.iotEndpoint, credentials: endpoints.credentials, maxAttempts: 1 });
  const names = Array.from({ length: n }, (_, i) => `load-${String(i).padStart(4, '0')}`);

  let t = Date.now();
  await iot.send(new CreateThingGroupCommand({ thingGroupName: 'load' }));
  await pool(names, 16, async (name) => {
    await iot.send(new CreateThingCommand({ thingName: name }));
    await iot.send(new AddThingToThingGroupCommand({ thingGroupName: 'load', thingName: name }));
  });
  const registerMs = Date.now() - t;

  t = Date.now();
  const clients: MqttClient[] = [];
  let received = 0;
  let sent = 0;
  let succeeded = 0;
  let resolveAll!: () => void;
  const allDone = new Promise<void>((r) => (resolveAll = r));
  await pool(names, 32, async (name) => {
    const c = await mqtt.connectAsync(endpoints.mqtt.url, { clientId: name, reconnectPeriod: 0, protocolVersion: 4 });
    const base = `$aws/things/${name}/jobs`;
    let started = false;
    c.on('message', (topic, payload) => {
      received += 1;
      const body = JSON.parse(payload.toString()) as { execution?: { jobId: string; versionNumber: number } };
      if (topic === `${base}/notify-next` && body.execution && !started) {
        started = true;
        sent += 1;
        c.publish(`${base}/start-next`, JSON.stringify({ clientToken: name }), { qos: 1 });
      } else if (topic === `${base}/start-next/accepted` && body.execution) {
        sent += 1;
        c.publish(
          `${base}/${body.execution.jobId}/update`,
          JSON.stringify({ status: 'SUCCEEDED', expectedVersion: body.execution.versionNumber, clientToken: name }),
          { qos: 1 },
        );
      } else if (topic.endsWith('/update/accepted')) {
        succeeded += 1;
        if (succeeded === n) resolveAll();
      } else if (topic.endsWith('/rejected')) {
        process.stderr.write(`${name}: ${payload.toString()}\n`);
      }
    });
    await c.subscribeAsync(`${base}/#`, { qos: 1 });
    clients.push(c);
  });
  const connectMs = Date.now() - t;

  const before = await request(child, 'stats', { type: 'stats' });
  const clientCpuBefore = process.cpuUsage();
  t = Date.now();
  await iot.send(
    new CreateJobCommand({ jobId: 'load-job', targets: [`arn:aws:iot:${endpoints.region}:123456789012:thinggroup/load`], document: '{"op":"noop"}' }),
  );
  await allDone;
  const wallMs = Date.now() - t;
  const after = await request(child, 'stats', { type: 'stats' });
  const clientCpu = process.cpuUsage(clientCpuBefore);
  // Let the final notify-next messages arrive so the message count is complete.
  await new Promise((r) => setTimeout(r, 300));
  const job = (await iot.send(new DescribeJobCommand({ jobId: 'load-job' }))).job;

  const hubCpuMs = after.cpuUserMs + after.cpuSystemMs - (before.cpuUserMs + before.cpuSystemMs);
  const messages = received + sent;
  const result = {
    things: n,
    registerMs,
    connectMs,
    jobWallMs: wallMs,
    messages,
    messagesReceivedByThings: received,
    messagesSentByThings: sent,
    messagesPerSecond: Math.round((messages / wallMs) * 1000),
    hubCpuMs: Math.round(hubCpuMs),
    hubCpuPercentOfOneCore: Math.round((hubCpuMs / wallMs) * 100),
    thingsProcessCpuPercentOfOneCore: Math.round(((clientCpu.user + clientCpu.system) / 1000 / wallMs) * 100),
    loadAverage1m: +os.loadavg()[0]!.toFixed(2),
    hubRssMiB: +(after.rssBytes / 2 ** 20).toFixed(1),
    hubMaxRssMiB: +(after.maxRssBytes / 2 ** 20).toFixed(1),
    jobStatus: job?.status,
    succeeded: job?.jobProcessDetails?.numberOfSucceededThings,
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    date: new Date().toISOString(),
  };
  process.stdout.write(
    [
      `hub load: ${n} things, one job through start-next -> SUCCEEDED`,
      `  register things + group      ${registerMs} ms`,
      `  connect + subscribe          ${connectMs} ms`,
      `  job wall time                ${wallMs} ms (job ${result.jobStatus}, ${result.succeeded} succeeded)`,
      `  messages                     ${messages} (${result.messagesPerSecond} msg/s)`,
      `  hub CPU                      ${result.hubCpuMs} ms (${result.hubCpuPercentOfOneCore}% of one core)`,
      `  hub RSS                      ${result.hubRssMiB} MiB (max ${result.hubMaxRssMiB} MiB)`,
      `  things' process CPU          ${result.thingsProcessCpuPercentOfOneCore}% of one core; load average ${result.loadAverage1m} on ${result.cpus} CPUs`,
    ].join('\n') + '\n',
  );
  mkdirSync(path.dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);

  await Promise.all(clients.map((c) => c.endAsync(true)));
  iot.destroy();
  child.send({ type: 'stop' });
  await new Promise((r) => child.once('exit', r));
  await rm(dir, { recursive: true, force: true });
}

await main();
