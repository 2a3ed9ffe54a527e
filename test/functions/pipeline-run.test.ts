// The synthesized Step Functions definition, run state by state against the real handlers on a
// tiny request: two shards through the Distributed Map, merge, gate, publish (KMS-signed), the approval
// step (its task token stored with the figures, answered as `fleetlm approve` would) and rollout to a thing
// group on the local hub; plus random weights that are not rolled out, a rejected approval, the gate's
// rejection and the failure path.
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CreateThingCommand, CreateThingGroupCommand, AddThingToThingGroupCommand, DescribeJobCommand, GetJobDocumentCommand, IoTClient } from '@aws-sdk/client-iot';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInfraConfig } from '../../infra/config.ts';
import { PipelineStack } from '../../infra/stacks/pipeline-stack.ts';
import { parseManifestSignature } from '../../contracts/manifest.ts';
import { verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import type { MergeOutput, RolloutOutput } from '../../functions/shared/events.ts';
import { render } from '../infra/synth.ts';
import { runStateMachine, type AslMachine, type TaskResolver } from './sfn-runner.ts';
import { approvalRequestKey, ApprovalRequestSchema, type ApprovalRequest } from '../../fleet/approval.ts';
import type { PublishOutput } from '../../functions/shared/events.ts';
import { startHandlerFixture, TINY_REQUEST, type HandlerFixture } from './fixture.ts';

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

const bytes = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: key }))).Body!.transformToByteArray());

describe('pipeline state machine', () => {
  it('given a two-shard request asking for a rollout, when the definition runs end to end, then the best shard is published, signed, waits for approval with its figures, and rolls out once approved', async () => {
    const { machine, resolve } = pipelineDefinition(10);
    const executionArn = 'arn:aws:states:us-east-1:123456789012:execution:fleetlm-pipeline:run-approved';
    let stored: ApprovalRequest | undefined;
    const r = await runStateMachine(machine, { ...TINY_REQUEST, seedsPerBudget: 2, rollout: { enabled: true } }, resolve, {
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
    expect(r.trace.slice(-8)).toEqual(['Merge', 'QualityGate', 'Publish', 'RolloutEnabled', 'NotifyApprovalNeeded', 'AwaitApproval', 'Rollout', 'Done']);
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
    const r = await runStateMachine(machine, merged, resolve, { startAt: 'QualityGate' });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('QualityGateRejected');
    expect(r.trace).toEqual(['QualityGate', 'NotifyRejected', 'QualityGateRejected']);
    expect(r.notifications).toEqual([{ state: 'NotifyRejected', message: { execution: '<context $$.Execution.Id>', maxQualityDrop: 0.5, threshold: 0.15, summaryKey: 'runs/gate-run/summary.json' } }]);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: 'models/tiny-lm/9.9.9-rpi5/' }));
    expect(listed.Contents ?? []).toEqual([]);
  });

  it('given a budget no architecture fits, when the machine runs, then the map fails, the failure is notified and the run fails', async () => {
    const { machine, resolve } = pipelineDefinition(0.15);
    const r = await runStateMachine(machine, { ...TINY_REQUEST, runId: 'bad-run', budgets: [{ deviceClass: 'rpi5', memoryBudgetBytes: 1000, flopsBudget: 1 }] }, resolve);
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
