// Job kinds plug into the install state machine: a kind registered by document schema runs through its own
// phase handlers under the same table, state record and reporting (what the self-update job will use), and a
// schema no kind handles is REJECTED naming the kinds the agent runs. In-process agent, real hub.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../edge-agent/agent.ts';
import { AgentConfigSchema } from '../../edge-agent/config.ts';
import type { Phase, PhaseHandlers, PhaseResult } from '../../edge-agent/install-state-machine.ts';
import { createLogger } from '../../edge-agent/log.ts';
import { MqttConnection } from '../../edge-agent/mqtt-connection.ts';
import { OnnxModelRuntime } from '../../edge-agent/onnx-model-runtime.ts';
import { parseWith } from '../../common/validate.ts';
import { TestFleet, tempDir } from './agent-fixture.ts';

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await TestFleet.start();
}, 120_000);

afterAll(async () => {
  await fleet?.stop();
});

describe('job kinds', () => {
  it('runs a registered kind through its own handlers and rejects an unknown schema', async () => {
    const thing = 'kinds-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-kinds-');
    const config = parseWith(
      AgentConfigSchema,
      {
        thingName: thing,
        mqtt: { host: fleet.hub.endpoints.mqtt.host, port: fleet.hub.endpoints.mqtt.port, passwordFile: await fleet.passwordFile(thing, dir), reconnectMinMs: 200, reconnectMaxMs: 1000, requestTimeoutMs: 5000 },
        modelDir: path.join(dir, 'models'),
        stateDir: path.join(dir, 'state'),
        fleetPublicKeyPath: fleet.publicKeyPath,
        http: { port: 0 },
      },
      'test agent config',
    );
    const log = createLogger('warn', () => {});
    const agent = new Agent({ config, transport: new MqttConnection({ clientId: thing, log, ...config.mqtt }), runtime: new OnnxModelRuntime(1), log });
    const ran: Phase[] = [];
    const step = (phase: Phase, result: PhaseResult) => async () => {
      ran.push(phase);
      return result;
    };
    const handlers: PhaseHandlers = {
      received: step('received', { event: 'ok' }),
      downloading: step('downloading', { event: 'ok' }),
      verifying: step('verifying', { event: 'ok' }),
      installing: step('installing', { event: 'ok' }),
      'health-checking': step('health-checking', { event: 'ok', outcome: { status: 'SUCCEEDED', statusDetails: { step: 'done', kind: 'test' } } }),
      committing: step('committing', { event: 'ok' }),
      'rolling-back': step('rolling-back', { event: 'ok' }),
      reporting: (job) => agent.deployHandlers.reporting(job),
    };
    agent.registerJobKind('fleetlm/test-kind@1', { handlers });
    expect(() => agent.registerJobKind('fleetlm/test-kind@1', { handlers })).toThrow(/already registered/);
    await agent.start();
    try {
      await fleet.createJob('kind-job-1', arn, { schema: 'fleetlm/test-kind@1' });
      const exec = await fleet.waitTerminal('kind-job-1', thing);
      expect(exec.status).toBe('SUCCEEDED');
      expect(exec.statusDetails?.detailsMap).toEqual({ step: 'done', kind: 'test' });
      expect(ran).toEqual(['received', 'downloading', 'verifying', 'installing', 'health-checking', 'committing']);

      await fleet.createJob('kind-job-2', arn, { schema: 'fleetlm/nope@1' });
      const rejected = await fleet.waitTerminal('kind-job-2', thing);
      expect(rejected.status).toBe('REJECTED');
      // The agent's own kinds (benchmark@1, deploy-model@1, update-agent@1) and the one this test registered.
      expect(String(rejected.statusDetails?.detailsMap?.kinds).split(', ').sort()).toEqual(['fleetlm/benchmark@1', 'fleetlm/deploy-model@1', 'fleetlm/test-kind@1', 'fleetlm/update-agent@1']);
      expect(ran).toHaveLength(6); // the unknown schema went through deploy-model's received, not the test kind
    } finally {
      await agent.stop();
    }
  }, 60_000);
});
