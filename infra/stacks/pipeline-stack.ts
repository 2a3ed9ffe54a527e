// The model pipeline: one Lambda per step and the Step Functions state machine that runs
// plan -> Distributed Map over shards (search -> build -> compress -> evaluate) -> merge ->
// quality gate -> publish -> approval (a task token `fleetlm approve` answers) -> rollout (canary jobs, a
// wait/check loop, then each group's job), with retries, and failure paths that notify and fail. The input
// is a trained model (checkpoint or Hugging Face folder under inputs/); random weights only for benchmarks.
import { CfnElement, CfnOutput, Duration, RemovalPolicy, Stack, Token, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { suppress } from '../nag.ts';
import type { Construct } from 'constructs';
import { thingGroupName, type InfraConfig } from '../config.ts';
import { fleetFunction } from '../lambda.ts';
import { shardMap } from '../shard-map.ts';
import { exportNames, importValue } from '../exports.ts';
import { publishFunctionRoleName } from '../constructs/role-names.ts';

export interface PipelineStackProps extends StackProps {
  config: InfraConfig;
}

/** Errors worth retrying: the network, S3/IoT throttling (TransportError) and Lambda's own hiccups. */
export const RETRYABLE_ERRORS = ['TransportError', 'Lambda.TooManyRequestsException', 'Lambda.ServiceException', 'Lambda.SdkClientException'];

/** Step names as they appear in the state machine (tests and the local runner use them). */
export const STEP = {
  plan: 'Plan',
  shards: 'Shards',
  search: 'Search',
  build: 'Build',
  compress: 'Compress',
  evaluate: 'Evaluate',
  merge: 'Merge',
  gate: 'QualityGate',
  publish: 'Publish',
  rolloutEnabled: 'RolloutEnabled',
  notifyApproval: 'NotifyApprovalNeeded',
  approval: 'AwaitApproval',
  approvalRejected: 'RolloutRejected',
  rollout: 'Rollout',
  canaryStarted: 'CanaryStarted',
  canaryWait: 'CanaryWait',
  canaryCheck: 'CanaryCheck',
  canaryOutcome: 'CanaryOutcome',
  canaryRelease: 'CanaryRelease',
  notifyCanaryFailed: 'NotifyCanaryFailed',
  canaryFailed: 'CanaryFailed',
  done: 'Done',
  notifyFailure: 'NotifyFailure',
  failed: 'PipelineFailed',
  notifyRejected: 'NotifyRejected',
  rejected: 'QualityGateRejected',
} as const;

export class PipelineStack extends Stack {
  readonly stateMachine: sfn.StateMachine;
  readonly functions: Record<string, NodejsFunction> = {};
  readonly notifications: sns.Topic;

  constructor(scope: Construct, id: string, props: PipelineStackProps) {
    super(scope, id, props);
    const { config } = props;
    // Other stacks' resources come in through fixed export names (see infra/exports.ts).
    const names = exportNames(config.prefix);
    const bucket = s3.Bucket.fromBucketAttributes(this, 'Artifacts', { bucketArn: importValue(names.bucketArn), bucketName: importValue(names.bucketName) });
    const signingKeyArn = importValue(names.signingKeyArn);
    const presignRoleArn = importValue(names.presignRoleArn);
    const baseEnv = { ARTIFACTS_BUCKET: bucket.bucketName };
    const modelStep = { memoryMb: config.modelFunctionMemoryMb, timeout: Duration.minutes(15), ephemeralStorageMb: 4096 };

    const fn = (name: string, f: NodejsFunction) => (this.functions[name] = f);
    const budgets = config.deviceClasses.map((c) => ({ deviceClass: c.name, memoryBudgetBytes: c.memoryBudgetBytes, flopsBudget: c.flopsBudget }));
    const plan = fn('plan', fleetFunction(this, 'PlanFn', { entry: 'plan.ts', description: 'Expands a request into shards', environment: { ...baseEnv, DEFAULT_BUDGETS: JSON.stringify(budgets) } }));
    const search = fn('search', fleetFunction(this, 'SearchFn', { entry: 'search.ts', description: 'MeRino architecture search for one shard', ...modelStep, environment: baseEnv }));
    const build = fn('build', fleetFunction(this, 'BuildFn', { entry: 'build.ts', description: 'Builds the ONNX decoder', ...modelStep, environment: baseEnv }));
    const compress = fn('compress', fleetFunction(this, 'CompressFn', { entry: 'compress.ts', description: 'Tensor-train compresses the embeddings', ...modelStep, environment: baseEnv }));
    const evaluate = fn('evaluate', fleetFunction(this, 'EvaluateFn', { entry: 'evaluate.ts', description: 'Perplexity of baseline and compressed models', ...modelStep, onnxRuntime: true, environment: baseEnv }));
    const merge = fn('merge', fleetFunction(this, 'MergeFn', { entry: 'merge.ts', description: 'Chooses the best shard per device class', environment: baseEnv }));
    // onnxruntime: publish runs the bundle check (the model loads and generates a token with its tokenizer) before signing.
    const publish = fn('publish', fleetFunction(this, 'PublishFn', { entry: 'publish.ts', description: 'Checks, signs and publishes bundles', ...modelStep, onnxRuntime: true, environment: { ...baseEnv, MANIFEST_KEY_ARN: signingKeyArn, MAX_QUALITY_DROP: String(config.maxQualityDrop) } }));
    const approval = fn('approval', fleetFunction(this, 'ApprovalFn', { entry: 'approval.ts', description: 'Stores the rollout approval request (task token + quality figures)', environment: baseEnv }));
    // The pipeline's jobs follow the one rollout policy (fleet/rollout-policy.ts, validated in infra/config.ts),
    // passed to the rollout Lambdas as JSON and validated again there by the same schema.
    const thingGroups = Object.fromEntries(config.deviceClasses.map((c) => [c.name, thingGroupName(config, c.name)]));
    const rolloutEnv = { ...baseEnv, PRESIGN_ROLE_ARN: presignRoleArn, THING_GROUPS: JSON.stringify(thingGroups), ROLLOUT_POLICY: JSON.stringify(config.rollout) };
    const rollout = fn('rollout', fleetFunction(this, 'RolloutFn', { entry: 'rollout.ts', description: 'Creates the IoT deployment jobs (or their canary jobs)', environment: rolloutEnv }));
    const canaryCheck = fn('canary-check', fleetFunction(this, 'CanaryCheckFn', { entry: 'canary-check.ts', description: 'Judges the canary jobs: PENDING, SUCCEEDED or FAILED', environment: rolloutEnv }));
    const canaryRelease = fn('canary-release', fleetFunction(this, 'CanaryReleaseFn', { entry: 'canary-release.ts', description: 'Creates each group\'s job once its canary succeeded', environment: rolloutEnv }));

    // Least privilege per step: exact actions on fixed prefixes (scratch under runs/, bundles under models/).
    const allow = (f: NodejsFunction, actions: string[], prefixes: string[]) =>
      f.addToRolePolicy(new iam.PolicyStatement({ actions, resources: prefixes.map((p) => bucket.arnForObjects(p)) }));
    const list = (f: NodejsFunction, prefixes: string[]) =>
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn], conditions: { StringLike: { 's3:prefix': prefixes } } }));
    for (const f of [search, build, compress, evaluate]) {
      allow(f, ['s3:GetObject', 's3:PutObject'], ['runs/*']);
      list(f, ['runs/*']);
    }
    // The run's input model (a checkpoint or Hugging Face folder) is read from inputs/ only.
    allow(search, ['s3:GetObject'], ['inputs/*']);
    allow(build, ['s3:GetObject'], ['inputs/*']);
    list(build, ['inputs/*']);
    allow(approval, ['s3:PutObject'], ['approvals/*']);
    allow(evaluate, ['s3:GetObject'], ['eval/*']);
    allow(plan, ['s3:PutObject'], ['runs/*']);
    allow(merge, ['s3:GetObject', 's3:PutObject'], ['runs/*']);
    allow(publish, ['s3:GetObject'], ['runs/*', 'models/*']);
    allow(publish, ['s3:PutObject'], ['models/*']);
    // Without ListBucket a HeadObject on a missing key is 403, not 404, and "already published?" cannot
    // be answered. HeadObject carries no s3:prefix, so this grant cannot have a prefix condition.
    publish.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }));
    publish.addToRolePolicy(new iam.PolicyStatement({ actions: ['kms:Sign', 'kms:GetPublicKey'], resources: [signingKeyArn] }));
    // The signing key's policy admits this role by name (infra/constructs/signing-key-policy.ts), so the name is fixed.
    (publish.role!.node.defaultChild as iam.CfnRole).roleName = publishFunctionRoleName(config);
    const jobArns = this.formatArn({ service: 'iot', resource: 'job', resourceName: '*' });
    const groupArns = this.formatArn({ service: 'iot', resource: 'thinggroup', resourceName: `${config.prefix}-*` });
    // Canary jobs target the canary things themselves, so CreateJob also needs thing ARNs (any thing: the
    // canary devices are members of this deployment's groups, picked at run time).
    const thingArns = this.formatArn({ service: 'iot', resource: 'thing', resourceName: '*' });
    for (const f of [rollout, canaryRelease]) {
      allow(f, ['s3:GetObject'], ['models/*']);
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:CreateJob'], resources: f === rollout ? [jobArns, groupArns, thingArns] : [jobArns, groupArns] }));
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:DescribeThingGroup', 'iot:ListThingsInThingGroup'], resources: [groupArns] }));
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['iam:PassRole'], resources: [presignRoleArn] }));
    }
    rollout.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:DescribeThing'], resources: [thingArns] }));
    // Picking an existing canary job up again (a retried step) reads it; the checker reads and cancels canaries.
    rollout.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:DescribeJob', 'iot:ListJobExecutionsForJob', 'iot:DescribeJobExecution'], resources: [jobArns, thingArns] }));
    canaryCheck.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['iot:DescribeJob', 'iot:ListJobExecutionsForJob', 'iot:DescribeJobExecution', 'iot:CancelJob'], resources: [jobArns, thingArns] }),
    );
    // Fleet indexing tells the checker which pending canary devices are offline (best effort; no resource ARN).
    canaryCheck.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:SearchIndex'], resources: [this.formatArn({ service: 'iot', resource: 'index', resourceName: 'AWS_Things' })] }));

    this.notifications = new sns.Topic(this, 'Notifications', { displayName: 'FleetLM pipeline and fleet alarms', enforceSSL: true });
    if (config.alarmEmail) this.notifications.addSubscription(new subs.EmailSubscription(config.alarmEmail));

    const invoke = (name: string, f: NodejsFunction, comment: string) => {
      const task = new tasks.LambdaInvoke(this, name, { lambdaFunction: f, payloadResponseOnly: true, comment, retryOnServiceExceptions: false });
      task.addRetry({ errors: RETRYABLE_ERRORS, interval: Duration.seconds(5), backoffRate: 2, maxAttempts: 3, jitterStrategy: sfn.JitterType.FULL });
      return task;
    };

    const notifyFailure = new tasks.SnsPublish(this, STEP.notifyFailure, {
      topic: this.notifications,
      subject: 'FleetLM pipeline failed',
      message: sfn.TaskInput.fromObject({ execution: sfn.JsonPath.executionId, error: sfn.JsonPath.stringAt('$.error.Error'), cause: sfn.JsonPath.stringAt('$.error.Cause') }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    const failed = new sfn.Fail(this, STEP.failed, { error: 'PipelineFailed', causePath: '$.error.Cause' });
    const failurePath = notifyFailure.next(failed);
    const onError = <T extends sfn.TaskStateBase | sfn.DistributedMap>(state: T): T => {
      state.addCatch(failurePath, { errors: ['States.ALL'], resultPath: '$.error' });
      return state;
    };

    const shardChain = invoke(STEP.search, search, 'Search an architecture within the shard budget')
      .next(invoke(STEP.build, build, 'Build the ONNX decoder with seeded weights'))
      .next(invoke(STEP.compress, compress, 'Tensor-train compress the token embedding'))
      .next(invoke(STEP.evaluate, evaluate, 'Perplexity before and after compression'));
    // Shards go through S3 both ways (the plan writes them, the Map's ResultWriter exports the results, merge
    // reads them), so the state stays small at any shard count (functions/shared/payload.ts).
    const shards = shardMap(this, STEP.shards, {
      comment: 'One child execution per shard (budget x seed); too much work for one Lambda',
      bucket,
      scratchPrefix: 'runs/',
      itemsKeyPath: '$.shardsKey',
      resultsPrefixPath: '$.resultsPrefix',
      resultPath: '$.shardResults',
      maxConcurrency: config.maxShardConcurrency,
      toleratedFailurePercentage: config.shardFailureTolerancePercent,
    });
    shards.itemProcessor(shardChain);

    const notifyRejected = new tasks.SnsPublish(this, STEP.notifyRejected, {
      topic: this.notifications,
      subject: 'FleetLM quality gate stopped a release',
      message: sfn.TaskInput.fromObject({ execution: sfn.JsonPath.executionId, maxQualityDrop: sfn.JsonPath.numberAt('$.maxQualityDrop'), threshold: config.maxQualityDrop, summaryKey: sfn.JsonPath.stringAt('$.summaryKey') }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    const rejected = new sfn.Fail(this, STEP.rejected, { error: 'QualityGateRejected', cause: `compressed model perplexity grew by more than ${config.maxQualityDrop}` });
    const done = new sfn.Succeed(this, STEP.done);

    // Rollout with a real canary: the rollout step makes only the canary jobs when the policy has a canary; a
    // wait/check loop follows them; each group's own job comes only once every canary device SUCCEEDED, and a
    // failed or timed-out canary notifies and fails the run (the rest of the groups never get a job).
    const notifyCanaryFailed = new tasks.SnsPublish(this, STEP.notifyCanaryFailed, {
      topic: this.notifications,
      subject: 'FleetLM canary failed: rollout stopped',
      message: sfn.TaskInput.fromObject({ execution: sfn.JsonPath.executionId, runId: sfn.JsonPath.stringAt('$.runId'), reason: sfn.JsonPath.stringAt('$.canary.reason') }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    const canaryFailed = new sfn.Fail(this, STEP.canaryFailed, { error: 'CanaryFailed', causePath: '$.canary.reason' });
    const canaryWait = new sfn.Wait(this, STEP.canaryWait, { time: sfn.WaitTime.duration(Duration.seconds(config.canaryPollSeconds)), comment: 'Let the canary devices install and health-check' });
    const canaryOutcome = new sfn.Choice(this, STEP.canaryOutcome)
      .when(sfn.Condition.stringEquals('$.canary.state', 'SUCCEEDED'), onError(invoke(STEP.canaryRelease, canaryRelease, 'Each group gets its job now that its canary succeeded')).next(done))
      .when(sfn.Condition.stringEquals('$.canary.state', 'FAILED'), notifyCanaryFailed.next(canaryFailed))
      .otherwise(canaryWait);
    canaryWait.next(onError(invoke(STEP.canaryCheck, canaryCheck, 'PENDING, SUCCEEDED or FAILED (canary timeout included)'))).next(canaryOutcome);
    const canaryStarted = new sfn.Choice(this, STEP.canaryStarted).when(sfn.Condition.isPresent('$.canary'), canaryWait).otherwise(done);
    // Rollout waits for a person: the approval task stores its token with the figures (approvals/{execution}.json)
    // and the run sleeps until `fleetlm approve` sends SendTaskSuccess, or SendTaskFailure (RolloutRejected).
    const notifyApproval = new tasks.SnsPublish(this, STEP.notifyApproval, {
      topic: this.notifications,
      subject: 'FleetLM release waits for approval',
      message: sfn.TaskInput.fromObject({
        execution: sfn.JsonPath.executionId,
        runId: sfn.JsonPath.stringAt('$.request.runId'),
        published: sfn.JsonPath.objectAt('$.published'),
        answer: 'fleetlm approve <execution> (or --reject --reason TEXT); fleetlm approve --list shows the figures',
      }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    const awaitApproval = new tasks.LambdaInvoke(this, STEP.approval, {
      lambdaFunction: approval,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: sfn.TaskInput.fromObject({
        taskToken: sfn.JsonPath.taskToken,
        executionArn: sfn.JsonPath.executionId,
        request: sfn.JsonPath.objectAt('$.request'),
        published: sfn.JsonPath.objectAt('$.published'),
      }),
      comment: 'Wait for `fleetlm approve` with the quality figures of what would roll out',
      taskTimeout: sfn.Timeout.duration(Duration.hours(config.approvalTimeoutHours)),
      resultPath: sfn.JsonPath.DISCARD,
      retryOnServiceExceptions: false,
    });
    awaitApproval.addRetry({ errors: RETRYABLE_ERRORS, interval: Duration.seconds(5), backoffRate: 2, maxAttempts: 3, jitterStrategy: sfn.JitterType.FULL });
    const approvalRejected = new sfn.Fail(this, STEP.approvalRejected, { error: 'RolloutRejected', causePath: '$.error.Cause' });
    // The rejection first: Catch clauses are tried in order, and onError's States.ALL would take it otherwise.
    awaitApproval.addCatch(approvalRejected, { errors: ['RolloutRejected'], resultPath: '$.error' });
    const rolloutChoice = new sfn.Choice(this, STEP.rolloutEnabled)
      .when(
        sfn.Condition.booleanEquals('$.request.rollout.enabled', true),
        onError(notifyApproval)
          .next(onError(awaitApproval))
          .next(onError(invoke(STEP.rollout, rollout, 'Create one IoT job (or its canary job) per device class')).next(canaryStarted)),
      )
      .otherwise(done);
    const gate = new sfn.Choice(this, STEP.gate, { comment: `Publish only when perplexity grows by at most ${config.maxQualityDrop}` })
      .when(sfn.Condition.numberLessThanEquals('$.maxQualityDrop', config.maxQualityDrop), onError(invoke(STEP.publish, publish, 'Sign and upload bundles')).next(rolloutChoice))
      .otherwise(notifyRejected.next(rejected));

    const definition = onError(invoke(STEP.plan, plan, 'Expand the request into shards'))
      .next(onError(shards))
      .next(onError(invoke(STEP.merge, merge, 'Best shard per device class')))
      .next(gate);

    const logGroup = new logs.LogGroup(this, 'StateMachineLogs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
    this.stateMachine = new sfn.StateMachine(this, 'Pipeline', {
      stateMachineName: `${config.prefix}-pipeline`,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      // Six hours of work plus the approval wait.
      timeout: Duration.hours(6 + config.approvalTimeoutHours),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });

    // cdk-nag findings name resources as rendered; these are built the same way so they stay exact.
    const account = Token.isUnresolved(this.account) ? '<AWS::AccountId>' : this.account;
    const region = Token.isUnresolved(this.region) ? '<AWS::Region>' : this.region;
    const logicalId = (c: Construct) => this.getLogicalId(c.node.defaultChild as CfnElement);
    const objects = (prefix: string) => `Resource::${names.bucketArn}/${prefix}`;
    const xray = { id: 'AwsSolutions-IAM5', reason: 'X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.', finding: 'Resource::*' };
    suppress(this, [
      { id: 'AwsSolutions-IAM4', reason: 'Functions use the AWS-managed basic execution role only to write their own logs.', finding: 'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole' },
      { id: 'AwsSolutions-SNS2', reason: 'Notifications carry run ids and error text only; alarms cannot publish to the AWS-managed SNS key and a CMK costs $1/month.' },
    ]);
    for (const f of Object.values(this.functions)) suppress(f, [xray]);
    for (const f of [plan, search, build, compress, evaluate, merge, publish]) {
      suppress(f, [{ id: 'AwsSolutions-IAM5', reason: 'Per-run scratch objects are created under runs/ with names known only at run time.', finding: objects('runs/*') }]);
    }
    for (const f of [search, build]) {
      suppress(f, [{ id: 'AwsSolutions-IAM5', reason: 'Input models are folders under inputs/ named by each run request.', finding: objects('inputs/*') }]);
    }
    suppress(approval, [{ id: 'AwsSolutions-IAM5', reason: 'One approval request per execution under approvals/, named by the execution.', finding: objects('approvals/*') }]);
    suppress(evaluate, [{ id: 'AwsSolutions-IAM5', reason: 'Evaluation texts are read from the eval/ prefix only.', finding: objects('eval/*') }]);
    for (const f of [publish, rollout, canaryRelease]) {
      suppress(f, [{ id: 'AwsSolutions-IAM5', reason: 'Bundles live under models/{modelId}/{version}/, one prefix per published version.', finding: objects('models/*') }]);
    }
    const jobFinding = { id: 'AwsSolutions-IAM5', reason: 'Job ids (and their -canary jobs) are minted per run, so job/* it is.', finding: `Resource::arn:<AWS::Partition>:iot:${region}:${account}:job/*` };
    const thingFinding = { id: 'AwsSolutions-IAM5', reason: 'Canary jobs target things picked at run time from this deployment\'s groups.', finding: `Resource::arn:<AWS::Partition>:iot:${region}:${account}:thing/*` };
    const groupFinding = { id: 'AwsSolutions-IAM5', reason: 'Jobs may target any of this deployment\'s thing groups, which share its prefix.', finding: `Resource::arn:<AWS::Partition>:iot:${region}:${account}:thinggroup/${config.prefix}-*` };
    suppress(rollout, [jobFinding, thingFinding, groupFinding]);
    suppress(canaryRelease, [jobFinding, groupFinding]);
    suppress(canaryCheck, [jobFinding, thingFinding]);
    suppress(this.stateMachine, [
      xray,
      { id: 'AwsSolutions-IAM5', reason: 'The Distributed Map reads its items from and exports its results to runs/{runId}/, named at run time.', finding: `Resource::arn:<AWS::Partition>:s3:::${names.bucketName}/runs/*` },
      ...Object.values(this.functions).map((f) => ({ id: 'AwsSolutions-IAM5', reason: 'LambdaInvoke may call any version of its own function (qualifier :*).', finding: `Resource::<${logicalId(f)}.Arn>:*` })),
      ...[':*', '/*:*'].map((tail) => ({
        id: 'AwsSolutions-IAM5',
        reason: 'The Distributed Map starts, describes and stops child executions of this same state machine.',
        finding: `Resource::arn:<AWS::Partition>:states:${region}:${account}:execution:{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${logicalId(this.stateMachine)}"}]}]}${tail}`,
      })),
    ]);

    new CfnOutput(this, 'StateMachineArn', { value: this.stateMachine.stateMachineArn });
    new CfnOutput(this, 'NotificationsTopicArn', { value: this.notifications.topicArn });
  }
}
