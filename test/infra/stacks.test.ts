// The four stacks, synthesized once: key resources, the IoT policy's exact statements, bucket
// settings and the state machine definition, asserted on the CloudFormation they produce.
import { beforeAll, describe, expect, it } from 'vitest';
import { Match } from 'aws-cdk-lib/assertions';
import { onlyResource, render, renderDeep, synthApp, type Synthesized } from './synth.ts';

interface TopicRulePayload {
  Sql: string;
  Actions: Array<Record<string, unknown>>;
  ErrorAction: Record<string, unknown>;
}

let s: Synthesized;
beforeAll(() => {
  s = synthApp();
});

describe('artifacts stack', () => {
  it('given the defaults, when synthesized, then the bundle bucket is versioned, SSE-encrypted, private, logged and expires old versions', () => {
    const t = s.templates.artifacts;
    t.resourceCountIs('AWS::S3::Bucket', 2);
    t.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      LoggingConfiguration: { DestinationBucketName: { Ref: Match.stringLikeRegexp('^AccessLogs') }, LogFilePrefix: 'artifacts/' },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([Match.objectLike({ Id: 'expire-noncurrent-versions', Status: 'Enabled', NoncurrentVersionExpiration: { NoncurrentDays: 30 } })]),
      },
    });
  });

  it('given enforceSSL, when synthesized, then both bucket policies deny requests without TLS', () => {
    const policies = s.templates.artifacts.findResources('AWS::S3::BucketPolicy');
    const denies = Object.values(policies).map((p) =>
      (p as { Properties: { PolicyDocument: { Statement: Array<Record<string, unknown>> } } }).Properties.PolicyDocument.Statement.find(
        (st) => st.Effect === 'Deny',
      ),
    );
    expect(denies).toHaveLength(2);
    for (const d of denies) expect(d).toMatchObject({ Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } });
  });

  it('given manifest signing, when synthesized, then the KMS key is ECC_NIST_P256 SIGN_VERIFY and its public key is exported by a custom resource', () => {
    const t = s.templates.artifacts;
    t.hasResourceProperties('AWS::KMS::Key', { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    const key = onlyResource(t, 'AWS::KMS::Key');
    t.hasResourceProperties('AWS::CloudFormation::CustomResource', { KeyArn: { 'Fn::GetAtt': [key.logicalId, 'Arn'] } });
    t.hasOutput('ManifestPublicKeyObject', {});
    t.hasOutput('ArtifactsBucketArn', { Export: { Name: 'fleetlm-artifacts-bucket-arn' } });
  });
});

describe('fleet stack', () => {
  it('given the device policy, when synthesized, then it has exactly the four least-privilege statements', () => {
    const { props } = onlyResource(s.templates.fleet, 'AWS::IoT::Policy');
    const doc = renderDeep(props.PolicyDocument);
    const arn = (r: string) => `arn:<AWS::Partition>:iot:us-east-1:<AWS::AccountId>:${r}`;
    const attached = { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } };
    expect(doc).toEqual({
      Version: '2012-10-17',
      Statement: [
        { Sid: 'ConnectAsOwnThing', Effect: 'Allow', Action: 'iot:Connect', Resource: arn('client/${iot:Connection.Thing.ThingName}'), Condition: attached },
        {
          Sid: 'PublishOwnJobsAndTelemetry',
          Effect: 'Allow',
          Action: 'iot:Publish',
          Resource: [arn('topic/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*'), arn('topic/fleetlm/${iot:Connection.Thing.ThingName}/telemetry')],
          Condition: attached,
        },
        { Sid: 'ReceiveOwnJobs', Effect: 'Allow', Action: 'iot:Receive', Resource: arn('topic/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*'), Condition: attached },
        { Sid: 'SubscribeOwnJobs', Effect: 'Allow', Action: 'iot:Subscribe', Resource: arn('topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/jobs/*'), Condition: attached },
      ],
    });
    expect(props.PolicyName).toBe('fleetlm-device');
  });

  it('given two default device classes, when synthesized, then each has a thing group', () => {
    const groups = Object.values(s.templates.fleet.findResources('AWS::IoT::ThingGroup')).map((g) => (g as { Properties: { ThingGroupName: string } }).Properties.ThingGroupName);
    expect(groups.sort()).toEqual(['fleetlm-jetson-orin-nano', 'fleetlm-rpi5']);
  });

  it('given the one rollout policy, when synthesized, then there is no job template (every job carries its own configuration)', () => {
    s.templates.fleet.resourceCountIs('AWS::IoT::JobTemplate', 0);
    expect(Object.keys(s.templates.fleet.findOutputs('*'))).not.toContain('JobTemplateArn');
  });

  it('given the presign role, when synthesized, then IoT may assume it and it reads only models/*', () => {
    const t = s.templates.fleet;
    t.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'iot.amazonaws.com' }, Action: 'sts:AssumeRole' })] },
      Description: Match.stringLikeRegexp('presign'),
    });
    const policies = Object.values(t.findResources('AWS::IAM::Policy')).map((p) => renderDeep((p as { Properties: unknown }).Properties)) as Array<{ PolicyName: string; PolicyDocument: { Statement: unknown[] } }>;
    const presign = policies.find((p) => p.PolicyName.startsWith('JobsPresignRole'))!;
    expect(presign.PolicyDocument.Statement).toEqual([{ Action: 's3:GetObject', Effect: 'Allow', Resource: '<import:fleetlm-artifacts-bucket-arn>/models/*' }]);
  });

  it('given the telemetry rule, when synthesized, then it routes fleetlm/+/telemetry to DynamoDB, logs and metrics, with an error action', () => {
    const rules = Object.values(s.templates.fleet.findResources('AWS::IoT::TopicRule')).map((r) => (r as { Properties: { TopicRulePayload: TopicRulePayload } }).Properties.TopicRulePayload);
    const payload = rules.find((p) => p.Sql.startsWith('SELECT *') && p.Sql.includes('telemetry'))!;
    expect(payload.Sql).toBe("SELECT *, topic(2) AS thingName, timestamp() AS receivedAt FROM 'fleetlm/+/telemetry' WHERE schema = 'fleetlm/telemetry@1'");
    expect(payload.Actions.map((a) => Object.keys(a)[0])).toEqual(['DynamoDBv2', 'CloudwatchLogs', 'CloudwatchMetric', 'CloudwatchMetric']);
    expect(payload.Actions[2]).toMatchObject({ CloudwatchMetric: { MetricNamespace: 'FleetLM/Devices', MetricName: 'FirstTokenMsP50', MetricValue: '${inference.firstTokenMs.p50}' } });
    expect(Object.keys(payload.ErrorAction)).toEqual(['CloudwatchLogs']);
    // Telemetry of another version (agents newer than the stack) is counted and its sender logged, never read as @1.
    const other = rules.find((p) => p.Sql.includes("schema <> 'fleetlm/telemetry@1'"))!;
    expect(other.Sql).toBe("SELECT topic(2) AS thingName, schema, timestamp() AS receivedAt FROM 'fleetlm/+/telemetry' WHERE startswith(schema, 'fleetlm/telemetry@') AND schema <> 'fleetlm/telemetry@1'");
    expect(other.Actions.map((a) => Object.keys(a)[0])).toEqual(['CloudwatchMetric', 'CloudwatchLogs']);
    expect(other.Actions[0]).toMatchObject({ CloudwatchMetric: { MetricNamespace: 'FleetLM/Devices', MetricName: 'TelemetryOtherSchema', MetricValue: '1', MetricUnit: 'Count' } });
    s.templates.fleet.hasResourceProperties('AWS::DynamoDB::Table', { KeySchema: [{ AttributeName: 'thingName', KeyType: 'HASH' }], BillingMode: 'PAY_PER_REQUEST' });
    s.templates.fleet.hasResourceProperties('AWS::Logs::MetricFilter', {
      MetricTransformations: [Match.objectLike({ MetricName: 'TokensPerSecondP50ByVersion', Dimensions: Match.arrayWith([{ Key: 'ModelVersion', Value: '$.model.version' }]) })],
    });
  });
});

interface SfnState {
  Type: string;
  Next?: string;
  End?: boolean;
  Resource?: string;
  Retry?: Array<{ ErrorEquals: string[]; MaxAttempts: number }>;
  Catch?: Array<{ ErrorEquals: string[]; Next: string; ResultPath: string }>;
  Choices?: Array<Record<string, unknown>>;
  Default?: string;
  ItemsPath?: string;
  MaxConcurrency?: number;
  ItemProcessor?: { ProcessorConfig: { Mode: string }; StartAt: string; States: Record<string, SfnState> };
  Error?: string;
}

describe('fleet event alarms', () => {
  it('given IoT job and lifecycle events, when synthesized, then topic rules count them as fleet metrics and job events are switched on', () => {
    const rules = Object.values(s.templates.fleet.findResources('AWS::IoT::TopicRule')).map((r) => (r as { Properties: { TopicRulePayload: TopicRulePayload } }).Properties.TopicRulePayload);
    const counted = Object.fromEntries(
      rules
        .filter((p) => p.Sql.includes('$aws/events/'))
        .map((p) => [/FROM '([^']+)'/.exec(p.Sql)![1], (p.Actions[0] as { CloudwatchMetric: { MetricName: string; MetricValue: string } }).CloudwatchMetric]),
    );
    expect(Object.keys(counted).sort()).toEqual([
      '$aws/events/jobExecution/+/failed',
      '$aws/events/jobExecution/+/rejected',
      '$aws/events/jobExecution/+/timed_out',
      '$aws/events/presence/connected/+',
      '$aws/events/presence/disconnected/+',
    ]);
    expect(counted['$aws/events/jobExecution/+/rejected']).toMatchObject({ MetricName: 'JobExecutionsFailed', MetricValue: '1' });
    expect(counted['$aws/events/presence/disconnected/+']).toMatchObject({ MetricName: 'DeviceDisconnects', MetricValue: '1' });
    expect(JSON.stringify(renderDeep(s.templates.fleet.toJSON()))).toContain('UpdateEventConfigurations');
  });

  it('given the fleet event metrics, when synthesized, then failed job executions and devices going offline raise SNS alarms', () => {
    const alarms = Object.values(s.templates.observability.findResources('AWS::CloudWatch::Alarm')).map((a) => (a as { Properties: Record<string, unknown> }).Properties);
    const byMetricNames = (names: string[]) =>
      alarms.find((a) => {
        const metrics = ((a.Metrics as Array<{ MetricStat?: { Metric: { MetricName: string } } }>) ?? []).flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric.MetricName] : []));
        return names.every((n) => metrics.includes(n));
      });
    const failed = byMetricNames(['JobExecutionsFailed', 'JobExecutionsTimedOut']);
    const offline = byMetricNames(['DeviceDisconnects', 'DeviceConnects']);
    for (const alarm of [failed, offline]) {
      expect(alarm).toBeDefined();
      expect(alarm).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
      expect((alarm!.AlarmActions as unknown[]).length).toBe(1);
    }
    expect(render(offline!.Metrics)).toContain('FILL(disconnects, 0) - FILL(connects, 0)');
  });
});

describe('pipeline stack', () => {
  let def: { StartAt: string; States: Record<string, SfnState> };
  beforeAll(() => {
    const { props } = onlyResource(s.templates.pipeline, 'AWS::StepFunctions::StateMachine');
    def = JSON.parse(render(props.DefinitionString)) as typeof def;
  });

  it('given eleven functions (ten steps and the approval request), when synthesized, then each is an arm64 Node 24 function', () => {
    const fns = Object.values(s.templates.pipeline.findResources('AWS::Lambda::Function')).map((f) => (f as { Properties: Record<string, unknown> }).Properties);
    expect(fns).toHaveLength(11);
    for (const f of fns) expect(f).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], Handler: 'index.handler', TracingConfig: { Mode: 'Active' } });
  });

  it('given the definition, when read top-down, then plan -> distributed map -> merge -> gate -> publish -> rollout', () => {
    const next = (name: string) => def.States[name]!.Next;
    expect(def.StartAt).toBe('Plan');
    expect(next('Plan')).toBe('Shards');
    expect(next('Shards')).toBe('Merge');
    expect(next('Merge')).toBe('QualityGate');
    const shards = def.States.Shards!;
    expect(shards).toMatchObject({ Type: 'Map', MaxConcurrency: 10, ItemProcessor: { ProcessorConfig: { Mode: 'DISTRIBUTED' }, StartAt: 'Search' } });
    const inner = shards.ItemProcessor!.States;
    expect([inner.Search!.Next, inner.Build!.Next, inner.Compress!.Next, inner.Evaluate!.End]).toEqual(['Build', 'Compress', 'Evaluate', true]);
    expect(def.States.Publish!.Next).toBe('RolloutEnabled');
    expect(def.States.Rollout!.Next).toBe('CanaryStarted');
  });

  it('given the canary, when synthesized, then rollout -> wait/check loop -> release only on SUCCEEDED, notify and fail on FAILED', () => {
    const st = def.States;
    // No canary in the rollout step's output: straight to Done.
    expect(st.CanaryStarted).toMatchObject({ Type: 'Choice', Choices: [{ Variable: '$.canary', IsPresent: true, Next: 'CanaryWait' }], Default: 'Done' });
    // The loop: wait, check, decide; PENDING (the default) waits again.
    expect(st.CanaryWait).toMatchObject({ Type: 'Wait', Seconds: 60, Next: 'CanaryCheck' });
    expect(st.CanaryCheck!.Next).toBe('CanaryOutcome');
    expect(st.CanaryOutcome).toMatchObject({
      Type: 'Choice',
      Choices: [
        { Variable: '$.canary.state', StringEquals: 'SUCCEEDED', Next: 'CanaryRelease' },
        { Variable: '$.canary.state', StringEquals: 'FAILED', Next: 'NotifyCanaryFailed' },
      ],
      Default: 'CanaryWait',
    });
    // Only the release step creates the groups' jobs, and only from SUCCEEDED; a failure notifies, then fails the run.
    const into = (target: string) => Object.entries(st).filter(([, x]) => x.Next === target || (x.Choices ?? []).some((c) => c.Next === target)).map(([n]) => n);
    expect(into('CanaryRelease')).toEqual(['CanaryOutcome']);
    expect(st.CanaryRelease!.Next).toBe('Done');
    expect(st.NotifyCanaryFailed!.Next).toBe('CanaryFailed');
    expect(st.CanaryFailed).toMatchObject({ Type: 'Fail', Error: 'CanaryFailed', CausePath: '$.canary.reason' });
  });

  it('given the deployment context, when synthesized, then the rollout Lambdas get the one policy with the pipeline defaults (10% canary)', () => {
    const fns = Object.entries(s.templates.pipeline.findResources('AWS::Lambda::Function')).filter(([id]) => /^(Rollout|CanaryCheck|CanaryRelease)Fn/.test(id));
    expect(fns).toHaveLength(3);
    for (const [, f] of fns) {
      const env = (f as { Properties: { Environment: { Variables: Record<string, string> } } }).Properties.Environment.Variables;
      expect(JSON.parse(env.ROLLOUT_POLICY!)).toEqual({
        maxPerMinute: 100,
        exponentialRate: { baseRatePerMinute: 10, incrementFactor: 2, increaseAfterNotified: 20 },
        canaryPercent: 10,
        canaryTimeoutMinutes: 240,
        abortThresholdPercent: 10,
        timeoutMinutes: 60,
        retries: 2,
        presignExpiresInSec: 3600,
        targetSelection: 'SNAPSHOT',
      });
    }
  });

  it('given the shards Map, when synthesized, then it reads the plan from S3, exports results to S3 and states its failure tolerance', () => {
    const shards = renderDeep(def.States.Shards) as Record<string, unknown>;
    expect(shards.ItemsPath).toBeUndefined();
    expect(shards.ItemReader).toEqual({
      Resource: 'arn:<AWS::Partition>:states:::s3:getObject',
      ReaderConfig: { InputType: 'JSON' },
      Parameters: { Bucket: '<import:fleetlm-artifacts-bucket-name>', 'Key.$': '$.shardsKey' },
    });
    expect(shards.ResultWriter).toEqual({
      Resource: 'arn:<AWS::Partition>:states:::s3:putObject',
      Parameters: { Bucket: '<import:fleetlm-artifacts-bucket-name>', 'Prefix.$': '$.resultsPrefix' },
    });
    expect(shards.ToleratedFailurePercentage).toBe(0);
    expect(shards.ResultPath).toBe('$.shardResults');
    const tolerant = synthApp({ 'fleetlm:shardFailureTolerancePercent': 5 });
    const tolerantDef = JSON.parse(render(onlyResource(tolerant.templates.pipeline, 'AWS::StepFunctions::StateMachine').props.DefinitionString)) as { States: Record<string, Record<string, unknown>> };
    expect(tolerantDef.States.Shards!.ToleratedFailurePercentage).toBe(5);
  });

  it('given the Distributed Map, when synthesized, then the state machine may start its own child executions and use S3 under runs/ only', () => {
    const policies = Object.values(s.templates.pipeline.findResources('AWS::IAM::Policy')).map((p) => renderDeep((p as { Properties: unknown }).Properties)) as Array<{ PolicyName: string; Roles: string[]; PolicyDocument: { Statement: Array<Record<string, unknown>> } }>;
    const { logicalId: machineId, props: machine } = onlyResource(s.templates.pipeline, 'AWS::StepFunctions::StateMachine');
    const roleId = render(machine.RoleArn).replace(/^<|\.Arn>$/g, '');
    const statements = policies.filter((p) => p.Roles.includes(`<${roleId}>`)).flatMap((p) => p.PolicyDocument.Statement);
    expect(statements).toContainEqual({ Action: 'states:StartExecution', Effect: 'Allow', Resource: `<${machineId}>` });
    expect(statements).toContainEqual(expect.objectContaining({ Action: ['states:DescribeExecution', 'states:StopExecution'], Effect: 'Allow' }));
    const objects = 'arn:<AWS::Partition>:s3:::<import:fleetlm-artifacts-bucket-name>/runs/*';
    // ItemReader's GetObject and ResultWriter's actions (CDK merges statements on the same resource).
    const s3Actions = statements.filter((st) => st.Resource === objects).flatMap((st) => [st.Action].flat());
    expect(s3Actions.sort()).toEqual(['s3:AbortMultipartUpload', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:PutObject']);
    // Nothing on the state machine's role reaches S3 outside runs/.
    const s3Resources = statements.filter((st) => [st.Action].flat().some((a) => String(a).startsWith('s3:'))).flatMap((st) => [st.Resource].flat());
    expect(s3Resources.every((r) => String(r).endsWith('/runs/*'))).toBe(true);
    // The plan writes the items and merge reads the results, both under runs/.
    const fnStatements = (prefix: string) => policies.find((p) => p.PolicyName.startsWith(prefix))!.PolicyDocument.Statement;
    expect(fnStatements('PlanFn')).toContainEqual({ Action: 's3:PutObject', Effect: 'Allow', Resource: '<import:fleetlm-artifacts-bucket-arn>/runs/*' });
    expect(fnStatements('MergeFn')).toContainEqual({ Action: ['s3:GetObject', 's3:PutObject'], Effect: 'Allow', Resource: '<import:fleetlm-artifacts-bucket-arn>/runs/*' });
  });

  it('given the definition, when synthesized, then the only way to Rollout is through the approval task token, which carries the quality figures', () => {
    const enabled = def.States.RolloutEnabled!;
    expect(enabled.Choices).toEqual([{ Variable: '$.request.rollout.enabled', BooleanEquals: true, Next: 'NotifyApprovalNeeded' }]);
    expect(enabled.Default).toBe('Done');
    expect(def.States.NotifyApprovalNeeded!.Next).toBe('AwaitApproval');
    const approval = def.States.AwaitApproval! as SfnState & { Parameters: { FunctionName: string; Payload: Record<string, string> }; TimeoutSeconds?: number };
    expect(approval.Resource).toBe('arn:<AWS::Partition>:states:::lambda:invoke.waitForTaskToken');
    expect(approval.Parameters.FunctionName).toMatch(/ApprovalFn/);
    // The request carries the token, the execution and what would roll out (published[] with its quality figures).
    expect(approval.Parameters.Payload).toEqual({ 'taskToken.$': '$$.Task.Token', 'executionArn.$': '$$.Execution.Id', 'request.$': '$.request', 'published.$': '$.published' });
    expect(approval.TimeoutSeconds).toBe(72 * 3600);
    expect(approval.Next).toBe('Rollout');
    // A rejection ends in its own Fail state; anything else takes the failure path.
    expect(approval.Catch).toEqual([
      { ErrorEquals: ['RolloutRejected'], ResultPath: '$.error', Next: 'RolloutRejected' },
      { ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'NotifyFailure' },
    ]);
    expect(def.States.RolloutRejected).toMatchObject({ Type: 'Fail', Error: 'RolloutRejected' });
    const into = Object.entries(def.States).filter(([, st]) => st.Next === 'Rollout' || st.Default === 'Rollout' || st.Choices?.some((c) => c.Next === 'Rollout'));
    expect(into.map(([n]) => n)).toEqual(['AwaitApproval']);
  });

  it('given the publish function, when synthesized, then it has the memory of the model steps for the bundle check (infra/lambda.ts ships onnxruntime beside it)', () => {
    const publish = Object.values(s.templates.pipeline.findResources('AWS::Lambda::Function'))
      .map((f) => (f as { Properties: { Description?: string; MemorySize?: number } }).Properties)
      .find((p) => p.Description?.includes('publishes bundles'));
    expect(publish?.Description).toBe('Checks, signs and publishes bundles');
    expect(publish?.MemorySize).toBe(3008);
  });

  it('given the quality gate, when synthesized, then publishing needs maxQualityDrop <= the configured 0.15, else notify and fail', () => {
    const gate = def.States.QualityGate!;
    expect(gate.Type).toBe('Choice');
    expect(gate.Choices).toEqual([{ Variable: '$.maxQualityDrop', NumericLessThanEquals: 0.15, Next: 'Publish' }]);
    expect(gate.Default).toBe('NotifyRejected');
    expect(def.States.NotifyRejected!.Next).toBe('QualityGateRejected');
    expect(def.States.QualityGateRejected).toMatchObject({ Type: 'Fail', Error: 'QualityGateRejected' });
  });

  it('given every task, when synthesized, then transport errors are retried and any error goes to the failure path', () => {
    const tasks = { ...def.States, ...def.States.Shards!.ItemProcessor!.States };
    const lambdaTasks = Object.entries(tasks).filter(([, st]) => st.Type === 'Task' && st.Resource?.includes('Fn'));
    expect(lambdaTasks.map(([n]) => n).sort()).toEqual(['Build', 'CanaryCheck', 'CanaryRelease', 'Compress', 'Evaluate', 'Merge', 'Plan', 'Publish', 'Rollout', 'Search']);
    expect(def.States.AwaitApproval!.Retry?.[0]?.ErrorEquals).toContain('TransportError');
    for (const [, st] of lambdaTasks) expect(st.Retry?.[0]?.ErrorEquals).toContain('TransportError');
    for (const name of ['Plan', 'Shards', 'Merge', 'Publish', 'Rollout', 'CanaryCheck', 'CanaryRelease']) {
      expect(def.States[name]!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'NotifyFailure' }]);
    }
    expect(def.States.NotifyFailure!.Next).toBe('PipelineFailed');
    expect(def.States.PipelineFailed!.Type).toBe('Fail');
  });

  it('given the rollout function, when synthesized, then it may create jobs only for this deployment and pass only the presign role', () => {
    const policies = Object.values(s.templates.pipeline.findResources('AWS::IAM::Policy')).map((p) => renderDeep((p as { Properties: unknown }).Properties)) as Array<{ PolicyName: string; PolicyDocument: { Statement: Array<Record<string, unknown>> } }>;
    const rollout = policies.find((p) => p.PolicyName.startsWith('RolloutFn'))!.PolicyDocument.Statement;
    expect(rollout).toContainEqual({
      Action: 'iot:CreateJob',
      Effect: 'Allow',
      Resource: ['arn:<AWS::Partition>:iot:us-east-1:<AWS::AccountId>:job/*', 'arn:<AWS::Partition>:iot:us-east-1:<AWS::AccountId>:thing/*', 'arn:<AWS::Partition>:iot:us-east-1:<AWS::AccountId>:thinggroup/fleetlm-*'],
    });
    // The group's own job (after the canary) targets only this deployment's groups.
    const release = policies.find((p) => p.PolicyName.startsWith('CanaryReleaseFn'))!.PolicyDocument.Statement;
    expect(release).toContainEqual({
      Action: 'iot:CreateJob',
      Effect: 'Allow',
      Resource: ['arn:<AWS::Partition>:iot:us-east-1:<AWS::AccountId>:job/*', 'arn:<AWS::Partition>:iot:us-east-1:<AWS::AccountId>:thinggroup/fleetlm-*'],
    });
    const check = policies.find((p) => p.PolicyName.startsWith('CanaryCheckFn'))!.PolicyDocument.Statement;
    expect(JSON.stringify(check)).not.toContain('iot:CreateJob');
    expect(rollout).toContainEqual({ Action: 'iam:PassRole', Effect: 'Allow', Resource: '<import:fleetlm-jobs-presign-role-arn>' });
    const publish = policies.find((p) => p.PolicyName.startsWith('PublishFn'))!.PolicyDocument.Statement;
    // Unconditioned ListBucket: HeadObject on a missing version must answer 404, not 403.
    expect(publish).toContainEqual({ Action: 's3:ListBucket', Effect: 'Allow', Resource: '<import:fleetlm-artifacts-bucket-arn>' });
    expect(publish).toContainEqual({ Action: ['kms:GetPublicKey', 'kms:Sign'], Effect: 'Allow', Resource: '<import:fleetlm-manifest-signing-key-arn>' });
  });
});

describe('observability stack', () => {
  it('given the state machine and device metrics, when synthesized, then there are alarms on failed runs and latency regressions', () => {
    const t = s.templates.observability;
    t.resourceCountIs('AWS::CloudWatch::Alarm', 5);
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ExecutionsFailed', Namespace: 'AWS/States', Threshold: 1 });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'FirstTokenMsP50', Namespace: 'FleetLM/Devices', Threshold: 2000 });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { ComparisonOperator: 'GreaterThanUpperThreshold', ThresholdMetricId: Match.anyValue() });
  });

  it('given the dashboard, when synthesized, then it graphs rollout progress, failures and per-version latency and tokens/s', () => {
    const { props } = onlyResource(s.templates.observability, 'AWS::CloudWatch::Dashboard');
    const body = render(props.DashboardBody);
    for (const title of ['Rollout progress', 'Failures', 'first-token latency p50 (ms) by model version', 'tokens/s p50 by model version']) expect(body).toContain(title);
    expect(body).toContain('FirstTokenMsP50ByVersion');
    expect(body).toContain('SuccededJobExecutionCount');
  });
});
