// Worker for bench/rollout.ts: runs many edge agents (edge-agent/agent.ts, the same class the
// fleetlm-agent process runs) in one process, each with its own MQTT connection, directory and
// local API. Reads its job as JSON from argv[2]; prints `ready` once every agent started.
import path from 'node:path';
import { Agent } from '../edge-agent/agent.ts';
import { AgentConfigSchema } from '../edge-agent/config.ts';
import { createLogger } from '../edge-agent/log.ts';
import { MqttConnection } from '../edge-agent/mqtt-connection.ts';
import { OnnxModelRuntime } from '../edge-agent/onnx-model-runtime.ts';
import { parseWith } from '../common/validate.ts';

interface WorkerJob {
  things: string[];
  baseDir: string;
  mqtt: { host: string; port: number };
  fleetPublicKeyPath: string;
}

const job = JSON.parse(process.argv[2] ?? '{}') as WorkerJob;
const log = createLogger('error');
const agents: Agent[] = [];
for (const thingName of job.things) {
  const dir = path.join(job.baseDir, thingName);
  const config = parseWith(
    AgentConfigSchema,
    {
      thingName,
      // bench/rollout.ts wrote each device's secret here (local-hub/device-credentials.ts).
      mqtt: { host: job.mqtt.host, port: job.mqtt.port, passwordFile: path.join(dir, 'mqtt-password'), reconnectMinMs: 200, reconnectMaxMs: 5000, requestTimeoutMs: 60_000 },
      modelDir: path.join(dir, 'models'),
      stateDir: path.join(dir, 'state'),
      fleetPublicKeyPath: job.fleetPublicKeyPath,
      http: { host: '127.0.0.1', port: 0, maxConcurrent: 2 },
      runtime: { threads: 1, allowSpinning: false },
      healthCheck: { timeoutMs: 600_000 },
      telemetry: { intervalMs: 600_000, bufferMaxMessages: 100, cpuWatts: 2.5, sysfsRoot: '/sys' },
      logLevel: 'error',
    },
    'bench agent config',
  );
  const agent = new Agent({
    config,
    transport: new MqttConnection({ clientId: thingName, log, ...config.mqtt }),
    runtime: new OnnxModelRuntime(1, false),
    log,
  });
  await agent.start();
  agents.push(agent);
}
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  await Promise.all(agents.map((a) => a.stop().catch(() => {})));
  process.exit(0);
});
