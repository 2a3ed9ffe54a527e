// Whole-app checks on the synthesized templates: cdk-nag's AwsSolutions pack leaves no
// unacknowledged findings, cfn-lint passes, context overrides take effect, and the real esbuild
// bundling (offline, no Docker) produces runnable ESM handlers with onnxruntime-node beside them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { AwsSolutionsChecks } from '../../infra/nag.ts';
import { fleetFunction } from '../../infra/lambda.ts';
import { TransportError, ValidationError } from '../../common/errors.ts';
import { RETRYABLE_ERRORS } from '../../infra/stacks/pipeline-stack.ts';
import { synthApp, type Synthesized } from './synth.ts';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startS3Store } from '../../local-hub/s3-store.ts';

interface Report {
  pluginReports: Array<{ pluginName: string; conclusion: string; violations: Array<{ ruleName: string; severity: string; violatingConstructs: Array<{ constructPath: string }> }> }>;
}

function readReport(outdir: string): Report {
  return JSON.parse(readFileSync(path.join(outdir, 'validation-report.json'), 'utf8')) as Report;
}

let s: Synthesized;
beforeAll(() => {
  s = synthApp();
});

describe('cdk-nag AwsSolutions', () => {
  it('given the whole app, when synthesized, then the pack ran and every finding is acknowledged', () => {
    const report = readReport(s.outdir);
    const nag = report.pluginReports.find((r) => r.pluginName === 'AwsSolutions');
    expect(nag, 'the AwsSolutions plugin must have run').toBeDefined();
    const open = nag!.violations.flatMap((v) => v.violatingConstructs.map((c) => `${v.ruleName} at ${c.constructPath}`));
    expect(open).toEqual([]);
    expect(nag!.conclusion).toBe('success');
  });

  it('given a bucket without TLS enforcement or logging, when checked by the same pack, then it is reported', () => {
    const outdir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-nag-'));
    const app = new App({ outdir });
    const stack = new Stack(app, 'Bad');
    new s3.Bucket(stack, 'Open');
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    try {
      app.synth();
    } catch {
      // Synthesis may refuse outright; the report is still written.
    }
    const rules = readReport(outdir).pluginReports.flatMap((r) => r.violations.map((v) => v.ruleName));
    expect(rules).toEqual(expect.arrayContaining(['AwsSolutions-S1', 'AwsSolutions-S10']));
  });
});

describe('cfn-lint', () => {
  it('given the synthesized templates, when linted, then there are no errors or warnings', (ctx) => {
    let version: string;
    try {
      version = execFileSync('cfn-lint', ['--version'], { encoding: 'utf8' });
    } catch {
      if (process.env.FLEETLM_SKIP_CFN_LINT === '1') return ctx.skip();
      throw new Error('cfn-lint was not found on PATH: install it (pip install cfn-lint) or set FLEETLM_SKIP_CFN_LINT=1 to skip this check');
    }
    expect(version).toMatch(/cfn-lint \d+/);
    const templates = readdirSync(s.outdir).filter((f) => f.endsWith('.template.json')).map((f) => path.join(s.outdir, f));
    expect(templates).toHaveLength(5);
    // W3005 flags the DependsOn CDK itself adds beside a GetAtt on Lambda roles; nothing we can change.
    let out = '';
    try {
      out = execFileSync('cfn-lint', ['--format', 'parseable', '--ignore-checks', 'W3005', '--', ...templates], { encoding: 'utf8' });
    } catch (err) {
      out = (err as { stdout?: string }).stdout ?? String(err);
    }
    expect(out.trim()).toBe('');
  });
});

describe('context', () => {
  it('given a prefix, device classes and gate threshold in context, when synthesized, then names, groups and the gate follow', () => {
    const custom = synthApp({
      'fleetlm:prefix': 'acme',
      'fleetlm:deviceClasses': JSON.stringify([{ name: 'orin', memoryBudgetBytes: 1e9, flopsBudget: 1e11 }]),
      'fleetlm:maxQualityDrop': '0.05',
      'fleetlm:region': 'eu-west-1',
    });
    expect(custom.fleetApp.pipeline.stackName).toBe('acme-Pipeline');
    expect(custom.fleetApp.pipeline.region).toBe('eu-west-1');
    const groups = Object.values(custom.templates.fleet.findResources('AWS::IoT::ThingGroup')).map((g) => (g as { Properties: { ThingGroupName: string } }).Properties.ThingGroupName);
    expect(groups).toEqual(['acme-orin']);
    const sm = JSON.stringify(custom.templates.pipeline.findResources('AWS::StepFunctions::StateMachine'));
    expect(sm).toContain('\\"NumericLessThanEquals\\":0.05');
  });

  it('given an invalid device class name, when the app is built, then a ValidationError names the field and rule', () => {
    const app = new App({ context: { 'fleetlm:deviceClasses': JSON.stringify([{ name: 'Bad Name', memoryBudgetBytes: 1, flopsBudget: 1 }]), 'aws:cdk:bundling-stacks': [] } });
    expect(() => synthAppInto(app)).toThrow(ValidationError);
    expect(() => synthAppInto(new App({ context: { 'fleetlm:deviceClasses': '[{"name":"Bad Name","memoryBudgetBytes":1,"flopsBudget":1}]' } }))).toThrow(/deviceClasses\.0\.name/);
  });
});

async function importBuildApp() {
  return (await import('../../infra/app.ts')).buildApp;
}
let buildAppFn: Awaited<ReturnType<typeof importBuildApp>>;
beforeAll(async () => {
  buildAppFn = await importBuildApp();
});
function synthAppInto(app: App) {
  return buildAppFn(app, {});
}

describe('bundling', () => {
  it('given a model function, when bundled for real, then the asset is ESM plus linux-arm64 onnxruntime only, and a plain handler runs', async () => {
    const outdir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-bundle-'));
    const app = new App({ outdir, context: { 'aws:cdk:enable-asset-metadata': true } });
    const stack = new Stack(app, 'Bundle');
    fleetFunction(stack, 'Evaluate', { entry: 'evaluate.ts', onnxRuntime: true });
    fleetFunction(stack, 'Plan', { entry: 'plan.ts' });
    app.synth();
    const fns = Template.fromStack(stack).findResources('AWS::Lambda::Function');
    const assetOf = (prefix: string) => {
      const [, fn] = Object.entries(fns).find(([id]) => id.startsWith(prefix))!;
      return path.join(outdir, (fn as { Metadata: Record<string, string> }).Metadata['aws:asset:path']!);
    };
    const evaluate = assetOf('Evaluate');
    expect(existsSync(path.join(evaluate, 'index.mjs'))).toBe(true);
    const ort = path.join(evaluate, 'node_modules/onnxruntime-node');
    expect(existsSync(path.join(ort, 'bin/napi-v6/linux/arm64/onnxruntime_binding.node'))).toBe(true);
    expect(readdirSync(path.join(ort, 'bin/napi-v6'))).toEqual(['linux']);
    expect(readdirSync(path.join(ort, 'bin/napi-v6/linux'))).toEqual(['arm64']);
    expect(existsSync(path.join(evaluate, 'node_modules/onnxruntime-common/package.json'))).toBe(true);
    // onnxruntime stays external: the bundle imports it rather than inlining it.
    expect(readFileSync(path.join(evaluate, 'index.mjs'), 'utf8')).toMatch(/from\s*"onnxruntime-node"|import\("onnxruntime-node"\)|require\("onnxruntime-node"\)/);

    const plan = (await import(path.join(assetOf('Plan'), 'index.mjs'))) as { handler: (e: unknown) => Promise<{ shardCount: number; shardsKey: string }> };
    // The plan writes its shards to S3: the local hub's S3-protocol store stands in for the bucket.
    const credentials = { accessKeyId: 'bundle-test', secretAccessKey: 'bundle-test-secret' };
    const store = await startS3Store({ directory: path.join(outdir, 's3'), bucket: 'fleetlm-test', region: 'us-east-1', credentials });
    const saved = { ...process.env };
    process.env.ARTIFACTS_BUCKET = 'fleetlm-test';
    process.env.FLEETLM_S3_ENDPOINT = store.endpoint;
    process.env.FLEETLM_LOCAL_ACCESS_KEY_ID = credentials.accessKeyId;
    process.env.FLEETLM_LOCAL_SECRET_ACCESS_KEY = credentials.secretAccessKey;
    process.env.DEFAULT_BUDGETS = JSON.stringify([{ deviceClass: 'rpi5', memoryBudgetBytes: 1e8, flopsBudget: 1e10 }]);
    process.env.FLEETLM_QUIET_HANDLERS = '1';
    const client = new S3Client({ region: 'us-east-1', endpoint: store.endpoint, forcePathStyle: true, credentials });
    try {
      const out = await plan.handler({ runId: 'r1', modelId: 'tiny', version: '1.0.0', model: { kind: 'random-weights', benchmarkOnly: true }, seedsPerBudget: 2 });
      expect(out.shardCount).toBe(2);
      const stored = JSON.parse(await (await client.send(new GetObjectCommand({ Bucket: 'fleetlm-test', Key: out.shardsKey }))).Body!.transformToString()) as Array<{ shardId: string }>;
      expect(stored.map((x) => x.shardId)).toEqual(['rpi5-b0-s0', 'rpi5-b0-s1']);
      // The minified bundle still throws errors named after their class: Lambda reports that name as the
      // errorType, and the pipeline's Retry/Catch ErrorEquals match on it.
      delete process.env.DEFAULT_BUDGETS;
      const thrown = await plan.handler({ runId: 'r2', modelId: 'tiny', version: '1.0.0', model: { kind: 'random-weights', benchmarkOnly: true }, seedsPerBudget: 2 }).then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(thrown?.name).toBe('ValidationError');
      expect(RETRYABLE_ERRORS).toContain(new TransportError('x').name);
    } finally {
      process.env = saved;
      client.destroy();
      await store.close();
    }
  });
});
