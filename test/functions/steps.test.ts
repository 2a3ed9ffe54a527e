// The small steps (plan, merge, publish, rollout, public-key) against the local S3-protocol
// server, the local hub's IoT control plane and the local KMS-protocol server.
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTinyModel } from '../helpers/tiny-model.ts';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateThingGroupCommand, IoTClient } from '@aws-sdk/client-iot';
import type { CloudFormationCustomResourceCreateEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler as plan, planShards } from '../../functions/plan.ts';
import { chooseCandidates, handler as merge } from '../../functions/merge.ts';
import { handler as publish } from '../../functions/publish.ts';
import { handler as rollout, pipelineJobId } from '../../functions/rollout.ts';
import { handler as publicKey, PUBLIC_KEY_OBJECT } from '../../functions/public-key.ts';
import { ValidationError } from '../../common/errors.ts';
import type { EvaluateOutput, MergeOutput, PipelineRequestInput, PublishOutput, Shard } from '../../functions/shared/events.ts';
import { exportMapResults, type ChildRun } from './sfn-runner.ts';
import { startHandlerFixture, tinyShard, TINY_BUDGET, TINY_REQUEST, type HandlerFixture } from './fixture.ts';

let fx: HandlerFixture;
let s3: S3Client;
let iot: IoTClient;
beforeAll(async () => {
  fx = await startHandlerFixture();
  const common = { region: fx.hub.endpoints.region, credentials: fx.hub.endpoints.credentials };
  s3 = new S3Client({ ...common, endpoint: fx.hub.endpoints.s3.endpoint, forcePathStyle: true });
  iot = new IoTClient({ ...common, endpoint: fx.hub.endpoints.iotEndpoint });
});
afterAll(async () => {
  await fx?.stop();
});

function evaluated(shardId: string, ppl: number, params: number, deviceClass = 'rpi5'): EvaluateOutput {
  const base = tinyShard();
  const prefix = `runs/test-run-1/${shardId}/`;
  return {
    ...base,
    shardId,
    budget: { ...base.budget, deviceClass },
    version: `1.0.0-${deviceClass}`,
    search: { specKey: `${prefix}search-result.json`, parameters: params, forwardFlops: 1, decodeMemoryBytes: 1, entropy: 1, latencyMs: null },
    build: { modelPrefix: `${prefix}base/`, modelBytes: 1, files: ['model.onnx'] },
    compress: { modelPrefix: `${prefix}compressed/`, modelBytes: 1, files: ['model.onnx'], method: 'tt-row', embeddingCompressionRatio: 2, relativeError: 0.1 },
    evaluate: { tokens: 10, baselinePerplexity: 100, compressedPerplexity: ppl, qualityDrop: (ppl - 100) / 100 },
  };
}

async function readJson(key: string): Promise<unknown> {
  return JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: key }))).Body!.transformToString()) as unknown;
}

describe('plan', () => {
  it('given no budgets in the request, when planned, then the deployment default budgets times seedsPerBudget make the shards, written to S3 for the Map', async () => {
    const out = await plan({ ...TINY_REQUEST, seedsPerBudget: 3 });
    expect(out).toMatchObject({ shardCount: 3, shardsKey: 'runs/test-run-1/plan/shards.json', resultsPrefix: 'runs/test-run-1/shard-results' });
    expect(out).not.toHaveProperty('shards');
    const shards = (await readJson(out.shardsKey)) as Shard[];
    expect(shards.map((s) => [s.shardId, s.seed, s.version])).toEqual([
      ['rpi5-b0-s0', 1, '1.0.0-rpi5'],
      ['rpi5-b0-s1', 2, '1.0.0-rpi5'],
      ['rpi5-b0-s2', 3, '1.0.0-rpi5'],
    ]);
  });

  it('given a request with an unknown field, when planned, then a ValidationError names it', async () => {
    await expect(plan({ ...TINY_REQUEST, budget: 3 })).rejects.toThrow(/plan event: .*budget/);
  });

  it('given a request without a model, when planned, then it is refused, naming the three kinds of input', async () => {
    const { model: _none, ...noModel } = TINY_REQUEST;
    await expect(plan(noModel)).rejects.toThrow(/model: must name the model to ship: .*checkpoint.*huggingface.*random-weights/);
    await expect(plan({ ...TINY_REQUEST, model: { kind: 'random-weights' } })).rejects.toThrow(/benchmarkOnly/);
    await expect(plan({ ...TINY_REQUEST, model: { kind: 'checkpoint', prefix: 'runs/x/' } })).rejects.toThrow(/model.prefix: must be a folder under inputs\//);
  });

  it('given the kind of model, when planned, then a trained model asks for a rollout (after approval) and random weights only when the request says so', async () => {
    const trained = await plan({ ...TINY_REQUEST, model: { kind: 'checkpoint', prefix: 'inputs/m/' } });
    expect(trained.request.rollout.enabled).toBe(true);
    // Every shard carries the model (the items file the Map's ItemReader reads).
    expect(planShards(trained.request, fx.env).shards[0]!.model).toEqual({ kind: 'checkpoint', prefix: 'inputs/m/' });
    expect((await plan(TINY_REQUEST)).request.rollout.enabled).toBe(false);
    expect((await plan({ ...TINY_REQUEST, rollout: { enabled: true } })).request.rollout.enabled).toBe(true);
    expect((await plan({ ...TINY_REQUEST, model: { kind: 'huggingface', prefix: 'inputs/hf/' }, rollout: { enabled: false } })).request.rollout.enabled).toBe(false);
    await expect(plan({ ...TINY_REQUEST, model: { kind: 'checkpoint', prefix: 'inputs/m/' }, seedsPerBudget: 2 })).rejects.toThrow(/seedsPerBudget 2 applies to random-weights searches only/);
  });
});

/** Plans `request`, exports `children` as the Map's ResultWriter would, and returns merge's input. */
async function mapped(request: PipelineRequestInput, children: ChildRun[]): Promise<Record<string, unknown>> {
  const planned = await plan(request);
  const shardResults = await exportMapResults(s3, fx.env.ARTIFACTS_BUCKET, planned.resultsPrefix, children);
  return { ...planned, shardResults };
}

const succeeded = (output: EvaluateOutput): ChildRun => ({ input: output, status: 'SUCCEEDED', output });

describe('merge', () => {
  it('given shards of two classes exported by the Map, when merged, then each class keeps its lowest-perplexity shard and the worst drop is reported', async () => {
    const request = { ...TINY_REQUEST, seedsPerBudget: 2, budgets: [{ ...TINY_BUDGET, deviceClass: 'rpi5' }, { ...TINY_BUDGET, deviceClass: 'orin' }] };
    const shards = [evaluated('rpi5-b0-s0', 120, 10), evaluated('rpi5-b0-s1', 110, 20), evaluated('orin-b1-s0', 105, 30, 'orin')];
    const out = await merge(await mapped(request, shards.map(succeeded)));
    expect(out.candidates.map((c) => [c.deviceClass, c.shardId])).toEqual([
      ['orin', 'orin-b1-s0'],
      ['rpi5', 'rpi5-b0-s1'],
    ]);
    expect(out.maxQualityDrop).toBeCloseTo(0.1, 12);
    const summary = (await readJson(out.summaryKey)) as { shards: unknown[]; failed: unknown[] };
    expect(summary.shards).toHaveLength(3);
    expect(summary.failed).toEqual([]);
  });

  it('given equal perplexities, when choosing, then the smaller model wins', () => {
    expect(chooseCandidates([evaluated('a', 110, 50), evaluated('b', 110, 40)])[0]!.shardId).toBe('b');
  });

  it('given a tolerated failed shard, when merged, then the class is still served by its other shard and the failure is in the summary', async () => {
    const failed: ChildRun = { input: { ...tinyShard(), shardId: 'rpi5-b0-s0' }, status: 'FAILED', error: 'States.Timeout', cause: 'task timed out' };
    const out = await merge(await mapped({ ...TINY_REQUEST, seedsPerBudget: 2 }, [failed, succeeded(evaluated('rpi5-b0-s1', 110, 20))]));
    expect(out.candidates.map((c) => c.shardId)).toEqual(['rpi5-b0-s1']);
    const summary = (await readJson(out.summaryKey)) as { failed: unknown[] };
    expect(summary.failed).toEqual([{ status: 'FAILED', error: 'States.Timeout', cause: 'task timed out', input: expect.objectContaining({ shardId: 'rpi5-b0-s0' }) }]);
  });

  it('given a device class whose every shard failed, when merged, then it fails naming the class and the failures', async () => {
    const request = { ...TINY_REQUEST, budgets: [{ ...TINY_BUDGET, deviceClass: 'rpi5' }, { ...TINY_BUDGET, deviceClass: 'orin' }] };
    const failed: ChildRun = { input: { ...tinyShard(), shardId: 'orin-b1-s0' }, status: 'FAILED', error: 'ValidationError', cause: 'no architecture fits' };
    await expect(merge(await mapped(request, [succeeded(evaluated('rpi5-b0-s0', 110, 20)), failed]))).rejects.toThrow(
      /no shard of device class orin succeeded \(1 of 2 shards succeeded; failed: orin-b1-s0 FAILED \(ValidationError: no architecture fits\)\)/,
    );
  });

  it('given a shard from another run, or results outside the run or the bucket, when merged, then it is rejected', async () => {
    const foreign = { ...evaluated('rpi5-b0-s0', 120, 10), runId: 'other' };
    await expect(merge(await mapped(TINY_REQUEST, [succeeded(foreign)]))).rejects.toThrow(/shard rpi5-b0-s0 of run other is not a planned shard of run test-run-1/);
    const input = await mapped(TINY_REQUEST, [succeeded(evaluated('rpi5-b0-s0', 120, 10))]);
    const details = (input.shardResults as { ResultWriterDetails: { Bucket: string; Key: string } }).ResultWriterDetails;
    await expect(merge({ ...input, shardResults: { MapRunArn: 'x', ResultWriterDetails: { ...details, Bucket: 'someone-elses' } } })).rejects.toThrow(ValidationError);
    await expect(merge({ ...input, shardResults: { MapRunArn: 'x', ResultWriterDetails: { ...details, Key: 'runs/other-run/x/manifest.json' } } })).rejects.toThrow(/not under runs\/test-run-1\//);
  });
});

describe('publish and rollout', () => {
  let merged: MergeOutput;
  let published: PublishOutput;

  beforeAll(async () => {
    // A compressed bundle as the compress step leaves it: a real model, since publish checks that it runs.
    const modelDir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-steps-model-'));
    await writeTinyModel(modelDir);
    const onnx = readFileSync(path.join(modelDir, 'model.onnx'));
    rmSync(modelDir, { recursive: true, force: true });
    for (const [name, body] of [
      ['model.onnx', onnx],
      ['arch.json', '{"vocabSize":4}'],
      ['compression.json', '{"method":"tt-row"}'],
    ] as const) {
      await s3.send(new PutObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: `runs/test-run-1/rpi5-b0-s0/compressed/${name}`, Body: body }));
    }
    merged = { request: { ...(TINY_REQUEST as MergeOutput['request']), seedsPerBudget: 1, rollout: { enabled: true } }, candidates: chooseCandidates([evaluated('rpi5-b0-s0', 101, 10)]), maxQualityDrop: 0.01, summaryKey: 'runs/test-run-1/summary.json' };
  });

  it('given a candidate, when published, then the bundle is signed through KMS and uploaded; publishing again is a no-op', async () => {
    published = await publish(merged);
    expect(published.published).toEqual([
      { deviceClass: 'rpi5', modelId: 'tiny-lm', version: '1.0.0-rpi5', prefix: 'models/tiny-lm/1.0.0-rpi5/', manifestSha256: expect.stringMatching(/^[0-9a-f]{64}$/), totalBytes: expect.any(Number),
        // The figures the approval step shows (functions/approval.ts).
        quality: { tokens: 10, baselinePerplexity: 100, perplexity: 101, qualityDrop: expect.closeTo(0.01, 12), parameters: expect.any(Number), embeddingCompressionRatio: 2 } },
    ]);
    const manifest = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: 'models/tiny-lm/1.0.0-rpi5/manifest.json' }))).Body!.transformToString());
    expect(manifest.evaluation).toMatchObject({ compressedPerplexity: 101, deviceClass: 'rpi5', bundleCheck: { passed: true } });
    expect(manifest.compression).toEqual({ method: 'tt-row' });
    const signs = fx.kms.calls.filter((c) => c === 'TrentService.Sign').length;
    const again = await publish(merged);
    expect(again.published).toEqual(published.published);
    expect(fx.kms.calls.filter((c) => c === 'TrentService.Sign').length).toBe(signs);
  });

  it('given the gate limit in MAX_QUALITY_DROP, when a candidate over it reaches publish, then publish refuses it and records nothing', async () => {
    process.env.MAX_QUALITY_DROP = '0.05';
    try {
      const over = { ...merged, candidates: chooseCandidates([{ ...evaluated('rpi5-b0-s0', 108, 10), version: '1.0.1-rpi5' }]) };
      await expect(publish(over)).rejects.toMatchObject({ code: 'VALIDATION_QUALITY_GATE' });
      await expect(s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: 'models/tiny-lm/1.0.1-rpi5/manifest.json' }))).rejects.toThrow();
      const within = { ...merged, candidates: chooseCandidates([{ ...evaluated('rpi5-b0-s0', 103, 10), version: '1.0.2-rpi5' }]) };
      await publish(within);
      const manifest = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: 'models/tiny-lm/1.0.2-rpi5/manifest.json' }))).Body!.transformToString());
      expect(manifest.evaluation.quality).toMatchObject({ passed: true, maxPerplexityIncrease: 0.05, totalChange: expect.closeTo(0.03, 12) });
    } finally {
      delete process.env.MAX_QUALITY_DROP;
    }
  });

  it('given an empty thing group, when rolled out, then no job is created and the class is reported as skipped', async () => {
    await iot.send(new CreateThingGroupCommand({ thingGroupName: 'fleetlm-rpi5' }));
    const out = await rollout(published);
    expect(out).toEqual({ runId: 'test-run-1', jobs: [], skipped: 'rpi5: thing group fleetlm-rpi5 has no devices' });
  });

  it('given a class with no configured group, when rolled out, then it is skipped with the reason', async () => {
    const other = { ...published, published: [{ ...published.published[0]!, deviceClass: 'orin' }] };
    expect((await rollout(other)).skipped).toBe('orin: no thing group configured');
  });

  it('given run and class names, when making job ids, then they are valid IoT job ids', () => {
    expect(pipelineJobId('run.1', 'rpi5')).toBe('fleetlm-run_1-rpi5');
    // 57 at most, so the canary job <id>-canary still fits IoT's 64.
    expect(pipelineJobId('x'.repeat(80), 'rpi5')).toHaveLength(57);
  });
});

describe('public-key custom resource', () => {
  it('given the signing key, when the stack is created, then the PEM is returned and written to the bucket', async () => {
    const event = {
      RequestType: 'Create',
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:x',
      ResponseURL: 'https://example.invalid',
      StackId: 'stack',
      RequestId: 'req',
      LogicalResourceId: 'ManifestPublicKey',
      ResourceType: 'AWS::CloudFormation::CustomResource',
      ResourceProperties: { ServiceToken: 'x', KeyArn: fx.kms.keyId },
    } as CloudFormationCustomResourceCreateEvent;
    const out = await publicKey(event);
    if (!('Data' in out)) throw new Error('expected data');
    const expected = fx.kms.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(out.Data.PublicKeyPem).toBe(expected);
    expect(createPublicKey(out.Data.PublicKeyPem).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const stored = await (await s3.send(new GetObjectCommand({ Bucket: fx.env.ARTIFACTS_BUCKET, Key: PUBLIC_KEY_OBJECT }))).Body!.transformToString();
    expect(stored).toBe(expected);
    expect(await publicKey({ ...event, RequestType: 'Delete', PhysicalResourceId: 'manifest-public-key' } as never)).toEqual({ PhysicalResourceId: 'manifest-public-key' });
  });
});
