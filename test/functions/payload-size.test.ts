// Step Functions state sizes of a pipeline run whose shards travel through S3. A 1,000-shard plan runs through
// the synthesized definition: plan and merge are the real handlers against moto's S3 (an independent emulation,
// test/cloud/moto-server.ts), the shard steps are stand-ins with worst-case outputs (worst-case.ts), publish
// and rollout are stand-ins too; every state's input and output is measured against the 256 KiB limit.
// The request schema's bound (functions/shared/payload.ts) is checked at its edges.
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInfraConfig } from '../../infra/config.ts';
import { PipelineStack } from '../../infra/stacks/pipeline-stack.ts';
import { ValidationError } from '../../common/errors.ts';
import { planShards } from '../../functions/plan.ts';
import { CandidateSchema, MergeOutputSchema, PipelineRequestSchema, type Budget, type PublishOutput, type RolloutOutput } from '../../functions/shared/events.ts';
import { MAX_PIPELINE_SHARDS, STATE_BUDGET_BYTES, STATE_PAYLOAD_LIMIT_BYTES, worstCaseCandidate, worstCaseStateBytes } from '../../functions/shared/payload.ts';
import { startMoto, type MotoServer } from '../cloud/moto-server.ts';
import { render } from '../infra/synth.ts';
import { TINY_REQUEST } from './fixture.ts';
import { runStateMachine, type AslMachine, type TaskResolver } from './sfn-runner.ts';
import { worstBuild, worstCompress, worstEvaluate, worstSearch } from './worst-case.ts';

const BUCKET = 'fleetlm-payload-test';
const bytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

/** `n` budgets over `classes` device classes with 31-character names (the longest allowed). */
function budgets(n: number, classes = n): Budget[] {
  return Array.from({ length: n }, (_, i) => ({ deviceClass: `class-${String(i % classes).padStart(25, '0')}`, memoryBudgetBytes: 2 ** 40 + i, flopsBudget: 1e15 + i, latencyMs: 1234.5 }));
}

let moto: MotoServer;
let s3: S3Client;
const savedEnv = { ...process.env };

beforeAll(async () => {
  moto = await startMoto();
  Object.assign(process.env, {
    ARTIFACTS_BUCKET: BUCKET,
    AWS_REGION: 'us-east-1',
    FLEETLM_S3_ENDPOINT: moto.endpoint,
    FLEETLM_LOCAL_ACCESS_KEY_ID: 'testing',
    FLEETLM_LOCAL_SECRET_ACCESS_KEY: 'testing',
    FLEETLM_QUIET_HANDLERS: '1',
  });
  s3 = new S3Client({ region: 'us-east-1', endpoint: moto.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  s3?.destroy();
  await moto?.stop();
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
});

/** The synthesized definition with plan and merge as the real handlers and stand-ins for the rest. */
function definition(options: { tolerancePercent?: number; searchFails?: (shardId: string) => boolean } = {}): { machine: AslMachine; resolve: TaskResolver } {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], ...(options.tolerancePercent !== undefined ? { 'fleetlm:shardFailureTolerancePercent': options.tolerancePercent } : {}) } });
  const stack = new PipelineStack(app, 'P', { config: loadInfraConfig((k) => app.node.tryGetContext(k), {}) });
  const sm = Object.values(Template.fromStack(stack).findResources('AWS::StepFunctions::StateMachine'))[0] as { Properties: { DefinitionString: unknown } };
  const machine = JSON.parse(render(sm.Properties.DefinitionString)) as AslMachine;
  const byArn = new Map<string, string>();
  for (const [name, fn] of Object.entries(stack.functions)) byArn.set(`<${stack.getLogicalId(fn.node.defaultChild as never)}.Arn>`, name);
  const standIns: Record<string, (input: unknown) => Promise<unknown>> = {
    search: async (i) => {
      if (options.searchFails?.((i as { shardId: string }).shardId)) throw new ValidationError('no architecture fits the budget');
      return worstSearch(i);
    },
    build: async (i) => worstBuild(i),
    compress: async (i) => worstCompress(i),
    evaluate: async (i) => worstEvaluate(i),
    publish: async (i): Promise<PublishOutput> => {
      const m = MergeOutputSchema.parse(i);
      return { request: m.request, published: m.candidates.map((c) => ({ deviceClass: c.deviceClass, modelId: c.modelId, version: c.version, prefix: `models/${c.modelId}/${c.version}/`, manifestSha256: 'f'.repeat(64), totalBytes: Number.MAX_SAFE_INTEGER })) };
    },
    // The approval request's payload is what the approval Lambda stores; the state passes on its input.
    approval: async () => ({}),
    rollout: async (i): Promise<RolloutOutput> => {
      const p = i as PublishOutput;
      return { runId: p.request.runId, jobs: p.published.map((x) => ({ deviceClass: x.deviceClass, jobId: `fleetlm-${p.request.runId}-${x.deviceClass}`.slice(0, 64), jobArn: `arn:aws:iot:us-east-1:123456789012:job/fleetlm-${p.request.runId}-${x.deviceClass}`, targets: [`arn:aws:iot:us-east-1:123456789012:thinggroup/fleetlm-${x.deviceClass}`] })) };
    },
  };
  const resolve: TaskResolver = (resource) => {
    const name = byArn.get(resource);
    if (!name) return undefined;
    if (name === 'plan' || name === 'merge') return async (input) => ((await import(`../../functions/${name}.ts`)) as { handler: (e: unknown) => Promise<unknown> }).handler(input);
    return standIns[name];
  };
  return { machine, resolve };
}

describe('pipeline payload sizes with the shards in S3', () => {
  it('a 1,000-shard plan (100 budgets x 10 seeds, 20 device classes) runs to Done with every state well under 256 KiB', async () => {
    const { machine, resolve } = definition();
    const largest = new Map<string, number>();
    let mergeOutput: unknown;
    // Asking for the rollout, so the approval and rollout states are measured too.
    const request = { ...TINY_REQUEST, runId: 'payload-1000', budgets: budgets(100, 20), seedsPerBudget: 10, rollout: { enabled: true } };
    const r = await runStateMachine(machine, request, resolve, {
      s3,
      resolveBucket: () => BUCKET,
      onState: (state, input, output) => {
        largest.set(state, Math.max(largest.get(state) ?? 0, bytes(input), bytes(output)));
        if (state === 'Merge') mergeOutput = output;
      },
      onTaskToken: async () => ({ output: { approved: true } }),
    });
    expect(r.error ?? '', r.cause).toBe('');
    expect(r.trace.filter((t) => t === 'Shards/Evaluate')).toHaveLength(1000);
    expect(r.trace.slice(-9)).toEqual(['Merge', 'QualityGate', 'Publish', 'RolloutEnabled', 'NotifyApprovalNeeded', 'AwaitApproval', 'Rollout', 'CanaryStarted', 'Done']);

    const sizes = Object.fromEntries([...largest].sort(([a], [b]) => a.localeCompare(b)));
    process.stdout.write(`largest input or output per state, bytes (1,000 shards): ${JSON.stringify(sizes)}\n`);
    expect(Object.keys(sizes)).toEqual(expect.arrayContaining(['Plan', 'Shards', 'Merge', 'Publish', 'Rollout', 'Shards/Search', 'Shards/Evaluate']));
    // "Well under": a quarter of the limit, whatever the shard count (it grows with device classes only).
    for (const [state, n] of Object.entries(sizes)) expect(n, state).toBeLessThan(STATE_PAYLOAD_LIMIT_BYTES / 4);

    // What no longer travels inline: the shards' results as the Map exported them are far over the limit.
    const merged = MergeOutputSchema.parse(mergeOutput);
    expect(merged.candidates).toHaveLength(20);
    const summary = await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'runs/payload-1000/summary.json' }))).Body!.transformToString();
    expect((JSON.parse(summary) as { shards: unknown[] }).shards).toHaveLength(1000);
    expect(Buffer.byteLength(summary)).toBeGreaterThan(STATE_PAYLOAD_LIMIT_BYTES);
    // The schema's worst-case candidate bounds the real ones.
    const worst = bytes(worstCaseCandidate(merged.request, merged.candidates[0]!.deviceClass));
    for (const c of merged.candidates) expect(bytes(c)).toBeLessThanOrEqual(worst);
    expect(bytes(merged)).toBeLessThanOrEqual(worstCaseStateBytes(merged.request, merged.candidates.map((c) => c.deviceClass)));
  }, 300_000);

  it('the schema takes the largest request it can (3,200 shards over 20 classes) and the worst-case candidate is a valid candidate', () => {
    const request = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(200, 20), seedsPerBudget: 16 });
    const plan = planShards(request, {});
    expect(plan.shards).toHaveLength(MAX_PIPELINE_SHARDS);
    expect(worstCaseStateBytes(request, request.budgets!.map((b) => b.deviceClass))).toBeLessThanOrEqual(STATE_BUDGET_BYTES);
    expect(() => CandidateSchema.parse(worstCaseCandidate(request, 'rpi5'))).not.toThrow();
  });

  it('refuses, naming the bytes, a request whose merge result could not fit (one candidate per device class, 200 classes)', () => {
    expect(() => PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: budgets(200), seedsPerBudget: 1 })).toThrow(
      /the request makes a state of up to \d+ bytes \(the request plus one merge candidate for each of its 200 device classes\); a pipeline state may use at most 196608 of Step Functions' 262144 bytes/,
    );
  });

  it('the plan step applies the same bounds to the deployment\'s default budgets', () => {
    const request = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: undefined, seedsPerBudget: 16 });
    expect(() => planShards(request, { DEFAULT_BUDGETS: JSON.stringify(budgets(201, 20)) })).toThrow(/expands to 3216 shards \(201 budgets x 16 seeds\); a run carries at most 3200 shards/);
    const one = PipelineRequestSchema.parse({ ...TINY_REQUEST, budgets: undefined, seedsPerBudget: 1 });
    expect(() => planShards(one, { DEFAULT_BUDGETS: JSON.stringify(budgets(250)) })).toThrow(/one merge candidate for each of its 250 device classes/);
  });
});

describe('tolerated shard failures', () => {
  const request = (runId: string) => ({ ...TINY_REQUEST, runId, budgets: budgets(2), seedsPerBudget: 10 });

  it('given a 10% tolerance, when one shard of 20 fails, then the Map succeeds and merge records the failure', async () => {
    const { machine, resolve } = definition({ tolerancePercent: 10, searchFails: (id) => id.endsWith('-b0-s3') });
    expect((machine.States.Shards as { ToleratedFailurePercentage?: number }).ToleratedFailurePercentage).toBe(10);
    const r = await runStateMachine(machine, request('tolerate-1'), resolve, { s3, resolveBucket: () => BUCKET });
    expect(r.error ?? '', r.cause).toBe('');
    expect(r.status).toBe('SUCCEEDED');
    const summary = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'runs/tolerate-1/summary.json' }))).Body!.transformToString()) as { shards: unknown[]; failed: Array<{ error: string; input: { shardId: string } }> };
    expect(summary.shards).toHaveLength(19);
    expect(summary.failed.map((f) => [f.error, f.input.shardId])).toEqual([['ValidationError', `${budgets(1)[0]!.deviceClass}-b0-s3`]]);
  }, 120_000);

  it('given a 10% tolerance, when every shard of one class fails, then the Map fails past the threshold and the failure is notified', async () => {
    const { machine, resolve } = definition({ tolerancePercent: 10, searchFails: (id) => id.includes('-b0-') });
    const r = await runStateMachine(machine, request('tolerate-2'), resolve, { s3, resolveBucket: () => BUCKET });
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('PipelineFailed');
    expect(r.notifications[0]!.message).toMatchObject({ error: 'States.ExceedToleratedFailureThreshold' });
    expect(r.trace).not.toContain('Merge');
  }, 120_000);
});
