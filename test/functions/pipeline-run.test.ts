// The synthesized Step Functions definition, run state by state against the real handlers on a
// tiny request: two shards through the Distributed Map, merge, gate, publish (KMS-signed) and
// rollout to a thing group on the local hub; plus the gate's rejection and the failure path.
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
import { runStateMachine, type AslMachine, type RunOptions, type TaskResolver } from './sfn-runner.ts';
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

/** The Map's ItemReader and ResultWriter go to the local hub's S3 store, the artifacts bucket. */
function s3Options(): RunOptions {
  return { s3, resolveBucket: () => fx.env.ARTIFACTS_BUCKET };
}

describe('pipeline state machine', () => {
  it('given a two-shard request, when the definition runs end to end, then the best shard is published, signed and rolled out', async () => {
    const { machine, resolve } = pipelineDefinition(10);
    const r = await runStateMachine(machine, { ...TINY_REQUEST, seedsPerBudget: 2 }, resolve, s3Options());
    expect(r.error ?? '', r.cause).toBe('');
    expect(r.status).toBe('SUCCEEDED');
    expect(r.trace.filter((t) => t === 'Shards/Evaluate')).toHaveLength(2);
    expect(r.trace.slice(-6)).toEqual(['Merge', 'QualityGate', 'Publish', 'RolloutEnabled', 'Rollout', 'Done']);
    // The shards went through S3: the plan's items file, the Map's manifest and results, the summary.
    const scratch = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: 'runs/test-run-1/' }));
    const keys = (scratch.Contents ?? []).map((o) => o.Key!);
    expect(keys).toContain('runs/test-run-1/plan/shards.json');
    expect(keys.filter((k) => /^runs\/test-run-1\/shard-results\/[0-9a-f-]{36}\/(manifest|SUCCEEDED_0)\.json$/.test(k))).toHaveLength(2);
    expect(keys).toContain('runs/test-run-1/summary.json');

    const out = r.output as RolloutOutput;
    expect(out.jobs).toEqual([{ deviceClass: 'rpi5', jobId: 'fleetlm-test-run-1-rpi5', jobArn: expect.stringContaining('job/fleetlm-test-run-1-rpi5'), targets: [expect.stringContaining('thinggroup/fleetlm-rpi5')] }]);

    const prefix = 'models/tiny-lm/1.0.0-rpi5/';
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: fx.env.ARTIFACTS_BUCKET, Prefix: prefix }));
    expect((listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort()).toEqual(['.publish-claim.json', 'manifest.json', 'manifest.sig.json', 'model.onnx']);
    const bytes = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: key }))).Body!.transformToByteArray());
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
});
