// The synthesized Step Functions definition, run state by state against the real handlers on a
// tiny request: two shards through the Distributed Map, merge, gate, publish (KMS-signed), the approval
// step (its task token stored with the figures, answered as `fleetlm approve` would) and rollout to a thing
// group on the local hub; plus random weights that are not rolled out, a rejected approval, the gate's
// rejection and the failure path.
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import {
  CreateThingCommand,
  CreateThingGroupCommand,
  AddThingToThingGroupCommand,
  DescribeJobCommand,
  GetJobDocumentCommand,
  IoTClient,
  ListJobExecutionsForJobCommand,
  ListJobExecutionsForThingCommand,
} from '@aws-sdk/client-iot';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInfraConfig } from '../../infra/config.ts';
import { PipelineStack } from '../../infra/stacks/pipeline-stack.ts';
import { parseManifestSignature } from '../../contracts/manifest.ts';
import { generateSigningKeyPair, LocalKeySigner, verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import type { MergeOutput, PublishOutput, RolloutOutput } from '../../functions/shared/events.ts';
import { render } from '../infra/synth.ts';
import { runStateMachine, type AslMachine, type RunOptions, type TaskResolver } from './sfn-runner.ts';
import { approvalRequestKey, ApprovalRequestSchema, type ApprovalRequest } from '../../fleet/approval.ts';
import { startHandlerFixture, TINY_REQUEST, type HandlerFixture } from './fixture.ts';
import { handler as rolloutStep } from '../../functions/rollout.ts';
import { handler as canaryCheck } from '../../functions/canary-check.ts';
import { TestDevice } from '../local-hub/helpers.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { publishBundle } from '../../fleet/publisher.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';

/** The pipeline's definition for a gate threshold, and a resolver from Lambda ARNs to handler modules. */
function pipelineDefinition(maxQualityDrop: number): { machine: AslMachine; resolve: TaskResolver } {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], 'fleetlm:maxQualityDrop': maxQualityDrop } });
  const stack = new PipelineStack(app, 'P', { config: loadInfraConfig((k) => app.node.tryGetContext(k), {}) });
  const sm = Object.values(Template.fromStack(stack).findResources('AWS::StepFunctions::StateMachine'))[0] as { Properties: { DefinitionString: unknown } };
  const machine = JSON.parse(render(sm.Properties.DefinitionString)) as AslMachine;
  const byArn = new Map<string, string>();
  for (const [name, fn] of Object.entries(stack.functions)) byArn.set(`<${stack.getLogicalId(fn.node.defaultChild as never)}.Arn>`, name);
  const resolve: TaskResolver = (resource) => {
    const name = byArn.get(resource);
    if (!name) return undefined;
    return async (input) => ((await import(`../../functions/${name}.ts`)) as { handler: (e: unknown) => Promise<unknown> }).handler(input);
  };
  return { machine, resolve };
}

let fx: HandlerFixture;
let iot: IoTClient;
let s3: S3Client;
beforeAll(async () => {
  fx = await startHandlerFixture();
  const common = { region: fx.hub.endpoints.region, credentials: fx.hub.endpoints.credentials };
  iot = new IoTClient({ ...common, endpoint: fx.hub.endpoints.iotEndpoint });
  s3 = new S3Client({ ...common, endpoint: fx.hub.endpoints.s3.endpoint, forcePathStyle: true });
  await iot.send(new CreateThingGroupCommand({ thingGroupName: 'fleetlm-rpi5' }));
  await iot.send(new CreateThingCommand({ thingName: 'pi-001' }));
  await iot.send(new AddThingToThingGroupCommand({ thingGroupName: 'fleetlm-rpi5', thingName: 'pi-001' }));
});
afterAll(async () => {
  await fx?.stop();
});

/** The Map's ItemReader and ResultWriter go to the local hub's S3 store, the artifacts bucket. */
function s3Options(): RunOptions {
  return { s3, resolveBucket: () => fx.env.ARTIFACTS_BUCKET };
}
const bytes = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: key }))).Body!.transformToByteArray());

describe('pipeline state machine', () => {
  it('given a two-shard request asking for a rollout, when the definition runs end to end, then the best shard is published, signed, waits for approval with its figures, and rolls out once approved', async () => {
    const { machine, resolve } = pipelineDefinition(10);
    const executionArn = 'arn:aws:states:us-east-1:123456789012:execution:fleetlm-pipeline:run-approved';
    let stored: ApprovalRequest | undefined;
    const r = await runStateMachine(machine, { ...TINY_REQUEST, seedsPerBudget: 2, rollout: { enabled: true } }, resolve, {
      ...s3Options(),
      executionArn,
      // What `fleetlm approve` does: read the stored request, check the figures, answer its token.
      onTaskToken: async ({ state, token }) => {
        expect(state).toBe('AwaitApproval');
        stored = ApprovalRequestSchema.parse(JSON.parse((await bytes(approvalRequestKey('run-approved'))).toString('utf8')));
        expect(stored.taskToken).toBe(token);
        return { output: { approved: true } };
      },
    });
    expect(r.error ?? '', r.cause).toBe('');
    expect(r.status).toBe('SUCCEEDED');
    expect(r.trace.filter((t) => t === 'Shards/Evaluate')).toHaveLength(2);
    // ROLLOUT_POLICY is unset in the handlers' environment: no canary, so one job per class and straight to Done.
    expect(r.trace.slice(-9)).toEqual(['Merge', 'QualityGate', 'Publish', 'RolloutEnabled', 'NotifyApprovalNeeded', 'AwaitApproval', 'Rollout', 'CanaryStarted', 'Done']);
    // The shards went through S3: the plan's items file, the Map's manifest and results, the summary.
    const scratch = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: 'runs/test-run-1/' }));
    const keys = (scratch.Contents ?? []).map((o) => o.Key!);
    expect(keys).toContain('runs/test-run-1/plan/shards.json');
    expect(keys.filter((k) => /^runs\/test-run-1\/shard-results\/[0-9a-f-]{36}\/(manifest|SUCCEEDED_0)\.json$/.test(k))).toHaveLength(2);
    expect(keys).toContain('runs/test-run-1/summary.json');
    // The approval request carries what would roll out with its quality figures.
    expect(stored).toMatchObject({ executionArn, executionName: 'run-approved', runId: 'test-run-1', model: { kind: 'random-weights' } });
    expect(stored!.versions).toEqual([
      expect.objectContaining({ deviceClass: 'rpi5', version: '1.0.0-rpi5', quality: expect.objectContaining({ baselinePerplexity: expect.any(Number), perplexity: expect.any(Number), qualityDrop: expect.any(Number), embeddingCompressionRatio: expect.any(Number) }) }),
    ]);
    expect(r.notifications.map((n) => n.state)).toEqual(['NotifyApprovalNeeded']);

    const out = r.output as RolloutOutput;
    expect(out.jobs).toEqual([{ deviceClass: 'rpi5', jobId: 'fleetlm-test-run-1-rpi5', jobArn: expect.stringContaining('job/fleetlm-test-run-1-rpi5'), targets: [expect.stringContaining('thinggroup/fleetlm-rpi5')] }]);

    const prefix = 'models/tiny-lm/1.0.0-rpi5/';
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: prefix }));
    expect((listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort()).toEqual(['.publish-claim.json', 'manifest.json', 'manifest.sig.json', 'model.onnx']);
    const manifest = await bytes(`${prefix}manifest.json`);
    const sig = parseManifestSignature((await bytes(`${prefix}manifest.sig.json`)).toString('utf8'));
    expect(sig.keyId).toBe(fx.kms.keyId);
    const pem = fx.kms.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(verifyManifestBytes(manifest, sig, pem)).toBe(true);
    expect(fx.kms.calls).toContain('TrentService.Sign');

    const job = await iot.send(new DescribeJobCommand({ jobId: 'fleetlm-test-run-1-rpi5' }));
    expect(job.job?.status).toBe('IN_PROGRESS');
    const doc = JSON.parse((await iot.send(new GetJobDocumentCommand({ jobId: 'fleetlm-test-run-1-rpi5' }))).document!) as { modelId: string; version: string; manifest: { sha256: string } };
    expect(doc).toMatchObject({ modelId: 'tiny-lm', version: '1.0.0-rpi5', manifest: { sha256: sig.manifestSha256 } });
  });

  it('given merged results whose quality dropped beyond 0.15, when the machine continues from the gate, then it notifies and fails without publishing', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const merged: MergeOutput = {
      request: { ...(TINY_REQUEST as MergeOutput['request']), runId: 'gate-run', seedsPerBudget: 1, rollout: { enabled: true } },
      candidates: [
        {
          deviceClass: 'rpi5',
          modelId: 'tiny-lm',
          version: '9.9.9-rpi5',
          shardId: 'rpi5-b0-s0',
          specKey: 'runs/gate-run/rpi5-b0-s0/search-result.json',
          modelPrefix: 'runs/gate-run/rpi5-b0-s0/compressed/',
          parameters: 1,
          evaluate: { tokens: 10, baselinePerplexity: 10, compressedPerplexity: 15, qualityDrop: 0.5 },
          embeddingCompressionRatio: 2,
          seed: 1,
        },
      ],
      maxQualityDrop: 0.5,
      summaryKey: 'runs/gate-run/summary.json',
    };
    const r = await runStateMachine(machine, merged, resolve, { ...s3Options(), startAt: 'QualityGate' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('QualityGateRejected');
    expect(r.trace).toEqual(['QualityGate', 'NotifyRejected', 'QualityGateRejected']);
    expect(r.notifications).toEqual([{ state: 'NotifyRejected', message: { execution: '<context $$.Execution.Id>', maxQualityDrop: 0.5, threshold: 0.15, summaryKey: 'runs/gate-run/summary.json' } }]);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: 'models/tiny-lm/9.9.9-rpi5/' }));
    expect(listed.Contents ?? []).toEqual([]);
  });

  it('given a budget no architecture fits, when the machine runs, then the map fails, the failure is notified and the run fails', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const r = await runStateMachine(machine, { ...TINY_REQUEST, runId: 'bad-run', budgets: [{ deviceClass: 'rpi5', memoryBudgetBytes: 1000, flopsBudget: 1 }] }, resolve, s3Options());
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('PipelineFailed');
    expect(r.trace).toEqual(['Plan', 'Shards', 'Shards/Search', 'NotifyFailure', 'PipelineFailed']);
    const msg = r.notifications[0]!.message as { error: string; cause: string };
    expect(msg.error).toBe('States.ExceedToleratedFailureThreshold');
    expect(msg.cause).toMatch(/^ValidationError: /);
  });

  it('given published versions, when the approver rejects, then the run ends in RolloutRejected and no job is created', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const published: PublishOutput = {
      request: { ...(TINY_REQUEST as PublishOutput['request']), runId: 'reject-run', seedsPerBudget: 1, rollout: { enabled: true } },
      published: [{ deviceClass: 'rpi5', modelId: 'tiny-lm', version: '7.0.0-rpi5', prefix: 'models/tiny-lm/7.0.0-rpi5/', manifestSha256: 'a'.repeat(64), totalBytes: 1000 }],
    };
    const r = await runStateMachine(machine, published, resolve, {
      startAt: 'RolloutEnabled',
      executionArn: 'arn:aws:states:us-east-1:123456789012:execution:fleetlm-pipeline:run-rejected',
      onTaskToken: async () => ({ error: 'RolloutRejected', cause: 'perplexity too high for the kiosk fleet' }),
    });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('RolloutRejected');
    expect(r.cause).toBe('perplexity too high for the kiosk fleet');
    expect(r.trace).toEqual(['RolloutEnabled', 'NotifyApprovalNeeded', 'AwaitApproval', 'RolloutRejected']);
    await expect(iot.send(new DescribeJobCommand({ jobId: 'fleetlm-reject-run-rpi5' }))).rejects.toThrow();
  });

  it('given a random-weights request that does not ask for a rollout, when publish is done, then the run ends without approval or rollout', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const published: PublishOutput = {
      // What the plan step resolves for random weights without rollout.enabled.
      request: { ...(TINY_REQUEST as PublishOutput['request']), runId: 'bench-run', seedsPerBudget: 1, rollout: { enabled: false } },
      published: [{ deviceClass: 'rpi5', modelId: 'tiny-lm', version: '8.0.0-rpi5', prefix: 'models/tiny-lm/8.0.0-rpi5/', manifestSha256: 'b'.repeat(64), totalBytes: 1000 }],
    };
    const r = await runStateMachine(machine, published, resolve, { startAt: 'RolloutEnabled' });
    expect(r.status).toBe('SUCCEEDED');
    expect(r.trace).toEqual(['RolloutEnabled', 'Done']);
  });
});

/** What the approval step passes on to Rollout: run `runId`'s version `version` for rpi5, published for real (a tiny model). */
async function approvedFor(runId: string, version: string): Promise<PublishOutput> {
  const dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-approved-'));
  await writeTinyModel(dir);
  const p = await publishBundle({ s3, bucket: fx.env.ARTIFACTS_BUCKET, signer: new LocalKeySigner(generateSigningKeyPair().privateKeyPem), modelDir: dir, modelId: 'tiny-lm', version });
  await rm(dir, { recursive: true, force: true });
  return {
    request: { ...(TINY_REQUEST as PublishOutput['request']), runId, seedsPerBudget: 1, rollout: { enabled: true } },
    published: [{ deviceClass: 'rpi5', modelId: 'tiny-lm', version, prefix: p.prefix, manifestSha256: p.manifestSha256, totalBytes: p.totalBytes }],
  };
}

/**
 * Plays a device through the Jobs MQTT API: takes every pending execution; `jobId`'s ends `status`, any other
 * (earlier tests' jobs) SUCCEEDED. Returns the job ids it was offered.
 */
async function settle(device: TestDevice, jobId: string, status: 'SUCCEEDED' | 'FAILED'): Promise<string[]> {
  const offered: string[] = [];
  for (let i = 0; i < 10; i++) {
    const next = await device.request('start-next', {});
    const exec = next.payload.execution as { jobId: string } | undefined;
    if (!exec) return offered;
    offered.push(exec.jobId);
    const final = exec.jobId === jobId ? status : 'SUCCEEDED';
    const details = final === 'FAILED' ? { step: 'health-checking', reason: 'model failed to load: not a valid ONNX model' } : { step: 'done' };
    const r = await device.request(`${exec.jobId}/update`, { status: final, statusDetails: details });
    expect(r.outcome).toBe('accepted');
  }
  return offered;
}

async function executionsOf(thingName: string): Promise<string[]> {
  const out = await iot.send(new ListJobExecutionsForThingCommand({ thingName }));
  return (out.executionSummaries ?? []).map((e) => e.jobId!);
}

describe('pipeline canary', () => {
  const devices: TestDevice[] = [];
  const policy = JSON.stringify({ canaryPercent: 30, canaryTimeoutMinutes: 240 });

  beforeAll(async () => {
    // Three devices: a 30% canary is pi-001 (the first by name); pi-002 and pi-003 are the rest.
    for (const name of ['pi-002', 'pi-003']) {
      await iot.send(new CreateThingCommand({ thingName: name }));
      await iot.send(new AddThingToThingGroupCommand({ thingGroupName: 'fleetlm-rpi5', thingName: name }));
    }
    for (const name of ['pi-001', 'pi-002', 'pi-003']) devices.push(await TestDevice.connect(fx.hub, name));
    process.env.ROLLOUT_POLICY = policy;
  });
  afterAll(async () => {
    delete process.env.ROLLOUT_POLICY;
    for (const d of devices) await d.close();
  });

  it('given a canary that succeeds, when the machine runs from rollout, then the group gets its job only after the check saw SUCCEEDED', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const waits: string[] = [];
    // From Rollout: publish and approval are covered above.
    const r = await runStateMachine(machine, await approvedFor('canary-ok', '2.0.0-rpi5'), resolve, {
      startAt: 'Rollout',
      onWait: async () => {
        // The group's job does not exist while the canary is being watched.
        await expect(iot.send(new DescribeJobCommand({ jobId: 'fleetlm-canary-ok-rpi5' }))).rejects.toThrow();
        waits.push((await settle(devices[0]!, 'fleetlm-canary-ok-rpi5-canary', 'SUCCEEDED')).join(','));
      },
    });
    expect(r.error ?? '', r.cause).toBe('');
    expect(r.status).toBe('SUCCEEDED');
    expect(r.trace.slice(r.trace.indexOf('Rollout'))).toEqual(['Rollout', 'CanaryStarted', 'CanaryWait', 'CanaryCheck', 'CanaryOutcome', 'CanaryRelease', 'Done']);
    expect(waits[0]).toContain('fleetlm-canary-ok-rpi5-canary');
    const canaryExecs = await iot.send(new ListJobExecutionsForJobCommand({ jobId: 'fleetlm-canary-ok-rpi5-canary' }));
    expect((canaryExecs.executionSummaries ?? []).map((e) => e.thingArn!.split('/').pop())).toEqual(['pi-001']);
    const out = r.output as RolloutOutput;
    expect(out.canary).toMatchObject({ state: 'RELEASED', jobs: [{ deviceClass: 'rpi5', jobId: 'fleetlm-canary-ok-rpi5', canaryJobId: 'fleetlm-canary-ok-rpi5-canary', canaryThings: ['pi-001'] }] });
    expect(out.jobs.map((j) => j.jobId)).toEqual(['fleetlm-canary-ok-rpi5']);
    const main = await iot.send(new DescribeJobCommand({ jobId: 'fleetlm-canary-ok-rpi5' }));
    expect(main.job?.targets).toEqual([expect.stringContaining('thinggroup/fleetlm-rpi5')]);
    expect(await executionsOf('pi-002')).toContain('fleetlm-canary-ok-rpi5');
  });

  it('given a canary whose device fails, when the machine runs, then it notifies, fails, and the rest of the group never gets a job', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const r = await runStateMachine(machine, await approvedFor('canary-bad', '3.0.0-rpi5'), resolve, {
      startAt: 'Rollout',
      onWait: async () => {
        await settle(devices[0]!, 'fleetlm-canary-bad-rpi5-canary', 'FAILED');
      },
    });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('CanaryFailed');
    expect(r.trace.slice(r.trace.indexOf('Rollout'))).toEqual(['Rollout', 'CanaryStarted', 'CanaryWait', 'CanaryCheck', 'CanaryOutcome', 'NotifyCanaryFailed', 'CanaryFailed']);
    expect(r.cause).toMatch(/canary fleetlm-canary-bad-rpi5-canary: pi-001 FAILED \(model failed to load/);
    expect(r.notifications).toEqual([{ state: 'NotifyCanaryFailed', message: { execution: '<context $$.Execution.Id>', runId: 'canary-bad', reason: r.cause } }]);
    await expect(iot.send(new DescribeJobCommand({ jobId: 'fleetlm-canary-bad-rpi5' }))).rejects.toThrow();
    for (const rest of ['pi-002', 'pi-003']) expect((await executionsOf(rest)).filter((j) => j.startsWith('fleetlm-canary-bad'))).toEqual([]);
  });

  it('given a canary that is not done in time, when checked, then it fails and the canary job is canceled', async () => {
    const started = await rolloutStep(await approvedFor('canary-late', '4.0.0-rpi5'));
    expect(started.jobs).toEqual([]);
    expect(started.canary).toMatchObject({ state: 'PENDING', jobs: [{ canaryJobId: 'fleetlm-canary-late-rpi5-canary', canaryThings: ['pi-001'] }] });
    // Still running and in time: PENDING.
    expect((await canaryCheck(started)).canary!.state).toBe('PENDING');
    // Started 241 minutes ago with a 240-minute canary timeout.
    const late = { ...started, canary: { ...started.canary!, startedAt: new Date(Date.now() - 241 * 60_000).toISOString() } };
    const checked = await canaryCheck(late);
    expect(checked.canary).toMatchObject({ state: 'FAILED', reason: expect.stringMatching(/^canary not done after 240 min: fleetlm-canary-late-rpi5-canary IN_PROGRESS/) });
    expect((await iot.send(new DescribeJobCommand({ jobId: 'fleetlm-canary-late-rpi5-canary' }))).job?.status).toBe('CANCELED');
  });
});
