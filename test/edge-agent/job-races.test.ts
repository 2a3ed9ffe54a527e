// Jobs-API races seen when many agents roll out at once, reproduced on purpose with one agent: the agent
// runs in-process on its real MQTT link (mqtt.js) to the local hub, with chosen replies held back.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../edge-agent/agent.ts';
import { AgentConfigSchema } from '../../edge-agent/config.ts';
import { createLogger } from '../../edge-agent/log.ts';
import { MqttConnection } from '../../edge-agent/mqtt-connection.ts';
import { OnnxModelRuntime } from '../../edge-agent/onnx-model-runtime.ts';
import { parseWith } from '../../common/validate.ts';
import { TestFleet, buildTestModel, eventually, tempDir, type BuiltModel, type LogLine } from './agent-fixture.ts';
import { DelayingTransport, type DelayRule } from './delaying-transport.ts';

let fleet: TestFleet;
let model: BuiltModel;

beforeAll(async () => {
  fleet = await TestFleet.start();
  model = await buildTestModel(3);
}, 120_000);

afterAll(async () => {
  await fleet?.stop();
});

async function startInProcess(thingName: string, rule: DelayRule) {
  const dir = await tempDir(`fleetlm-agent-${thingName}-`);
  const logs: LogLine[] = [];
  const log = createLogger('debug', (line) => logs.push(JSON.parse(line) as LogLine));
  const config = parseWith(
    AgentConfigSchema,
    {
      thingName,
      mqtt: { host: fleet.hub.endpoints.mqtt.host, port: fleet.hub.endpoints.mqtt.port, passwordFile: await fleet.passwordFile(thingName, dir), reconnectMinMs: 200, reconnectMaxMs: 1000, requestTimeoutMs: 5000 },
      modelDir: path.join(dir, 'models'),
      stateDir: path.join(dir, 'state'),
      fleetPublicKeyPath: fleet.publicKeyPath,
      http: { port: 0 },
      runtime: { threads: 1 },
      telemetry: { intervalMs: 60_000 },
    },
    'test agent config',
  );
  const transport = new DelayingTransport(new MqttConnection({ clientId: thingName, log, ...config.mqtt }), rule);
  const agent = new Agent({ config, transport, runtime: new OnnxModelRuntime(1, false), log });
  await agent.start();
  await eventually(async () => transport.connected, 10_000, 'MQTT connection');
  return { agent, transport, logs };
}

describe('agent under jobs-API races', () => {
  it('does not take its own SUCCEEDED for a cancel when notify-next beats the update reply', async () => {
    const thing = 'race-own-terminal-1';
    const jobId = 'race-own-terminal-job-1';
    const arn = await fleet.createThing(thing);
    // The reply to the final update is held back; the hub's notify-next (no next job) arrives first, and the
    // agent's describe then finds the execution SUCCEEDED (or the job finished) while its own update is unanswered.
    const { agent, transport, logs } = await startInProcess(thing, (topic, body) => {
      const state = body.executionState as { status?: string } | undefined;
      return topic.endsWith(`/jobs/${jobId}/update/accepted`) && state?.status === 'SUCCEEDED' ? 800 : 0;
    });
    try {
      await fleet.createJob(jobId, arn, await fleet.publish('race', '1', model));
      expect((await fleet.waitTerminal(jobId, thing)).status).toBe('SUCCEEDED');
      await eventually(async () => logs.some((l) => l.msg === 'job finished' && l.jobId === jobId), 10_000, 'job finished');
      expect(transport.held.some((t) => t.endsWith(`/jobs/${jobId}/update/accepted`))).toBe(true);
      const finishedAt = logs.findIndex((l) => l.msg === 'job finished');
      expect(logs.slice(0, finishedAt).some((l) => l.msg === 'notify-next' && l.jobId === null)).toBe(true);
      expect(logs.filter((l) => l.msg === 'job canceled by the service; stopping its work')).toEqual([]);
      expect(logs.some((l) => l.msg === 'final status rejected by the jobs service')).toBe(false);
    } finally {
      await agent.stop();
    }
  }, 60_000);
});
