// The device side of the cloud: thing groups per device class, the least-privilege IoT policy
// devices connect with, the role IoT uses to presign artifact URLs, and
// the topic rule that stores telemetry (DynamoDB latest state, CloudWatch metrics and logs).
import { CfnOutput, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { suppress } from '../nag.ts';
import type { Construct } from 'constructs';
import { TELEMETRY_TOPIC_FILTER } from '../../contracts/jobs-topics.ts';
import { TELEMETRY_SCHEMA } from '../../contracts/telemetry.ts';
import { thingGroupName, type InfraConfig } from '../config.ts';
import { exportNames, importValue } from '../exports.ts';

export interface FleetStackProps extends StackProps {
  config: InfraConfig;
}

/** Namespace of device metrics (rule action and log metric filters). */
export const DEVICE_METRICS_NAMESPACE = 'FleetLM/Devices';

/** Fleet event counts (namespace DEVICE_METRICS_NAMESPACE) that the topic rules below publish and the alarms read. */
export const FLEET_EVENT_METRICS = {
  jobExecutionsFailed: 'JobExecutionsFailed',
  jobExecutionsTimedOut: 'JobExecutionsTimedOut',
  deviceConnects: 'DeviceConnects',
  deviceDisconnects: 'DeviceDisconnects',
  /** Telemetry messages of another fleetlm/telemetry version than this stack reads (agents newer than the cloud). */
  telemetryOtherSchema: 'TelemetryOtherSchema',
} as const;

/** IoT policy variable for the connected thing; a literal, never a CloudFormation Sub variable. */
const THING = '${iot:Connection.Thing.ThingName}';

/**
 * The device policy document. Each action is limited to the connected thing's own client id and
 * topics, and only while its certificate is attached to that thing.
 * https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html
 * https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
 */
export function devicePolicyDocument(partition: string, region: string, account: string) {
  const arn = (resource: string) => `arn:${partition}:iot:${region}:${account}:${resource}`;
  const attached = { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } };
  return {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'ConnectAsOwnThing', Effect: 'Allow', Action: 'iot:Connect', Resource: arn(`client/${THING}`), Condition: attached },
      {
        Sid: 'PublishOwnJobsAndTelemetry',
        Effect: 'Allow',
        Action: 'iot:Publish',
        Resource: [arn(`topic/$aws/things/${THING}/jobs/*`), arn(`topic/fleetlm/${THING}/telemetry`)],
        Condition: attached,
      },
      { Sid: 'ReceiveOwnJobs', Effect: 'Allow', Action: 'iot:Receive', Resource: arn(`topic/$aws/things/${THING}/jobs/*`), Condition: attached },
      {
        Sid: 'SubscribeOwnJobs',
        Effect: 'Allow',
        Action: 'iot:Subscribe',
        Resource: arn(`topicfilter/$aws/things/${THING}/jobs/*`),
        Condition: attached,
      },
    ],
  };
}

export class FleetStack extends Stack {
  readonly thingGroups: Record<string, iot.CfnThingGroup> = {};
  readonly devicePolicy: iot.CfnPolicy;
  readonly presignRole: iam.Role;
  readonly deviceStateTable: dynamodb.Table;
  readonly telemetryLogGroup: logs.LogGroup;
  readonly telemetryRule: iot.CfnTopicRule;
  readonly ruleErrorLogGroup: logs.LogGroup;
  readonly devicePolicyName: string;

  constructor(scope: Construct, id: string, props: FleetStackProps) {
    super(scope, id, props);
    const { config } = props;
    const names = exportNames(config.prefix);
    const bucketArn = importValue(names.bucketArn);

    for (const cls of config.deviceClasses) {
      this.thingGroups[cls.name] = new iot.CfnThingGroup(this, `Group-${cls.name}`, {
        thingGroupName: thingGroupName(config, cls.name),
        thingGroupProperties: {
          thingGroupDescription: `FleetLM devices of class ${cls.name}`,
          attributePayload: {
            attributes: { deviceClass: cls.name, memoryBudgetBytes: String(cls.memoryBudgetBytes), flopsBudget: String(cls.flopsBudget) },
          },
        },
      });
    }

    this.devicePolicyName = `${config.prefix}-device`;
    this.devicePolicy = new iot.CfnPolicy(this, 'DevicePolicy', {
      policyName: this.devicePolicyName,
      policyDocument: devicePolicyDocument(this.partition, this.region, this.account),
    });

    // presignedUrlConfig: IoT assumes this role to sign the artifact URLs in job documents.
    // https://docs.aws.amazon.com/iot/latest/developerguide/create-manage-jobs.html#create-manage-jobs-presigned-URLs
    this.presignRole = new iam.Role(this, 'JobsPresignRole', {
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
      description: 'Lets AWS IoT Jobs presign GET URLs for published model bundles',
    });
    this.presignRole.addToPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [`${bucketArn}/models/*`] }));
    suppress(this.presignRole, [
      { id: 'AwsSolutions-IAM5', reason: 'GetObject on models/* only: each job names different versions, all under that prefix.', finding: `Resource::${names.bucketArn}/models/*` },
    ]);

    // No CfnJobTemplate: every job carries its own configuration from the one rollout policy
    // (fleet/rollout-policy.ts, set per job by the CLI and the rollout Lambdas). A template would be a second copy
    // of that policy that drifts, and its document could only be a placeholder that devices reject, so a job made
    // from it in the console would fail on every device (docs/cloud.md, "Rollout policy").

    this.deviceStateTable = new dynamodb.Table(this, 'DeviceState', {
      partitionKey: { name: 'thingName', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.telemetryLogGroup = new logs.LogGroup(this, 'TelemetryLogs', {
      retention: logs.RetentionDays.TWO_WEEKS,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.ruleErrorLogGroup = new logs.LogGroup(this, 'TelemetryRuleErrors', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const ruleRole = new iam.Role(this, 'TelemetryRuleRole', {
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
      description: 'Lets the telemetry topic rule write device state, metrics and logs',
    });
    this.deviceStateTable.grant(ruleRole, 'dynamodb:PutItem');
    this.telemetryLogGroup.grantWrite(ruleRole);
    this.ruleErrorLogGroup.grantWrite(ruleRole);
    ruleRole.addToPolicy(
      new iam.PolicyStatement({
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': DEVICE_METRICS_NAMESPACE } },
      }),
    );
    suppress(ruleRole, [{ id: 'AwsSolutions-IAM5', reason: 'PutMetricData has no resource ARNs; the namespace condition confines it.', finding: 'Resource::*' }]);

    // topic(2) is the thing name in fleetlm/{thing}/telemetry; it overrides whatever the payload claims.
    // https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-function-topic
    const metric = (name: string, value: string) => ({
      cloudwatchMetric: {
        metricNamespace: DEVICE_METRICS_NAMESPACE,
        metricName: name,
        metricUnit: name.endsWith('Ms') ? 'Milliseconds' : 'Count/Second',
        metricValue: value,
        roleArn: ruleRole.roleArn,
      },
    });
    this.telemetryRule = new iot.CfnTopicRule(this, 'TelemetryRule', {
      ruleName: `${config.prefix.replace(/-/g, '_')}_telemetry`,
      topicRulePayload: {
        description: 'Device telemetry: latest state per device, fleet metrics, and per-model-version metrics via logs',
        awsIotSqlVersion: '2016-03-23',
        sql: `SELECT *, topic(2) AS thingName, timestamp() AS receivedAt FROM '${TELEMETRY_TOPIC_FILTER}' WHERE schema = '${TELEMETRY_SCHEMA}'`,
        ruleDisabled: false,
        actions: [
          { dynamoDBv2: { putItem: { tableName: this.deviceStateTable.tableName }, roleArn: ruleRole.roleArn } },
          { cloudwatchLogs: { logGroupName: this.telemetryLogGroup.logGroupName, roleArn: ruleRole.roleArn } },
          metric('FirstTokenMsP50', '${inference.firstTokenMs.p50}'),
          metric('TokensPerSecondP50', '${inference.tokensPerSecond.p50}'),
        ],
        errorAction: { cloudwatchLogs: { logGroupName: this.ruleErrorLogGroup.logGroupName, roleArn: ruleRole.roleArn } },
      },
    });

    // Telemetry of another major version (from agents newer than this stack) is not what the rule above reads, and
    // it would misread it: counted, with its sender and schema id in the telemetry log, instead of dropped unseen.
    // Only those fields are selected, so the log group's metric filters never read such a message as @1.
    // https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-func-startswith
    new iot.CfnTopicRule(this, 'TelemetryOtherSchemaRule', {
      ruleName: `${config.prefix.replace(/-/g, '_')}_telemetry_other_schema`,
      topicRulePayload: {
        description: `Counts telemetry of a schema other than ${TELEMETRY_SCHEMA} (agents newer than the cloud) as ${DEVICE_METRICS_NAMESPACE} ${FLEET_EVENT_METRICS.telemetryOtherSchema}`,
        awsIotSqlVersion: '2016-03-23',
        sql: `SELECT topic(2) AS thingName, schema, timestamp() AS receivedAt FROM '${TELEMETRY_TOPIC_FILTER}' WHERE startswith(schema, 'fleetlm/telemetry@') AND schema <> '${TELEMETRY_SCHEMA}'`,
        ruleDisabled: false,
        actions: [
          { cloudwatchMetric: { metricNamespace: DEVICE_METRICS_NAMESPACE, metricName: FLEET_EVENT_METRICS.telemetryOtherSchema, metricUnit: 'Count', metricValue: '1', roleArn: ruleRole.roleArn } },
          { cloudwatchLogs: { logGroupName: this.telemetryLogGroup.logGroupName, roleArn: ruleRole.roleArn } },
        ],
        errorAction: { cloudwatchLogs: { logGroupName: this.ruleErrorLogGroup.logGroupName, roleArn: ruleRole.roleArn } },
      },
    });

    // Job execution and presence events as fleet counts, for the alarms on failed rollouts and devices going
    // offline. Lifecycle (presence) events are always published; job events once the account enables them.
    // https://docs.aws.amazon.com/iot/latest/developerguide/events-jobs.html
    // https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html
    const countEvents = (id: string, topic: string, metricName: string): iot.CfnTopicRule =>
      new iot.CfnTopicRule(this, id, {
        ruleName: `${config.prefix.replace(/-/g, '_')}_${id.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase()}`,
        topicRulePayload: {
          description: `Counts ${topic} events as ${DEVICE_METRICS_NAMESPACE} ${metricName}`,
          awsIotSqlVersion: '2016-03-23',
          sql: `SELECT * FROM '${topic}'`,
          ruleDisabled: false,
          actions: [{ cloudwatchMetric: { metricNamespace: DEVICE_METRICS_NAMESPACE, metricName, metricUnit: 'Count', metricValue: '1', roleArn: ruleRole.roleArn } }],
          errorAction: { cloudwatchLogs: { logGroupName: this.ruleErrorLogGroup.logGroupName, roleArn: ruleRole.roleArn } },
        },
      });
    countEvents('JobExecutionFailed', '$aws/events/jobExecution/+/failed', FLEET_EVENT_METRICS.jobExecutionsFailed);
    countEvents('JobExecutionRejected', '$aws/events/jobExecution/+/rejected', FLEET_EVENT_METRICS.jobExecutionsFailed);
    countEvents('JobExecutionTimedOut', '$aws/events/jobExecution/+/timed_out', FLEET_EVENT_METRICS.jobExecutionsTimedOut);
    countEvents('DeviceConnected', '$aws/events/presence/connected/+', FLEET_EVENT_METRICS.deviceConnects);
    countEvents('DeviceDisconnected', '$aws/events/presence/disconnected/+', FLEET_EVENT_METRICS.deviceDisconnects);
    // Job execution events are off by default and the setting is account-wide (other job users see the events too).
    // https://docs.aws.amazon.com/iot/latest/apireference/API_UpdateEventConfigurations.html
    const jobEvents = new cr.AwsCustomResource(this, 'EnableJobExecutionEvents', {
      onUpdate: {
        service: 'Iot',
        action: 'UpdateEventConfigurations',
        parameters: { eventConfigurations: { JOB_EXECUTION: { Enabled: true } } },
        physicalResourceId: cr.PhysicalResourceId.of(`${config.prefix}-job-execution-events`),
      },
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
      installLatestAwsSdk: false,
    });
    suppress(jobEvents, [{ id: 'AwsSolutions-IAM5', reason: 'iot:UpdateEventConfigurations has no resource-level permissions, so the custom resource needs "*".', finding: 'Resource::*' }]);

    // The metric action has no dimensions; per-model-version series come from the rule's log stream.
    const byVersion = { ModelId: '$.model.modelId', ModelVersion: '$.model.version' };
    new logs.MetricFilter(this, 'FirstTokenMsByVersion', {
      logGroup: this.telemetryLogGroup,
      filterPattern: logs.FilterPattern.numberValue('$.inference.firstTokenMs.p50', '>=', 0),
      metricNamespace: DEVICE_METRICS_NAMESPACE,
      metricName: 'FirstTokenMsP50ByVersion',
      metricValue: '$.inference.firstTokenMs.p50',
      dimensions: byVersion,
    });
    new logs.MetricFilter(this, 'TokensPerSecondByVersion', {
      logGroup: this.telemetryLogGroup,
      filterPattern: logs.FilterPattern.numberValue('$.inference.tokensPerSecond.p50', '>=', 0),
      metricNamespace: DEVICE_METRICS_NAMESPACE,
      metricName: 'TokensPerSecondP50ByVersion',
      metricValue: '$.inference.tokensPerSecond.p50',
      dimensions: byVersion,
    });

    // The account's ATS data endpoint, so agents need no manual lookup.
    // https://docs.aws.amazon.com/iot/latest/apireference/API_DescribeEndpoint.html
    const endpoint = new cr.AwsCustomResource(this, 'DescribeIotEndpoint', {
      onUpdate: {
        service: 'Iot',
        action: 'DescribeEndpoint',
        parameters: { endpointType: 'iot:Data-ATS' },
        physicalResourceId: cr.PhysicalResourceId.of(`${config.prefix}-iot-data-endpoint`),
      },
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
      installLatestAwsSdk: false,
    });
    suppress(this, [
      { id: 'AwsSolutions-IAM4', reason: 'The AwsCustomResource provider uses the AWS-managed basic execution role for its logs.', finding: 'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole' },
      { id: 'AwsSolutions-L1', reason: 'The AwsCustomResource provider runtime is pinned by aws-cdk-lib, not by this app.' },
    ]);
    suppress(endpoint, [{ id: 'AwsSolutions-IAM5', reason: 'iot:DescribeEndpoint has no resource-level permissions, so the custom resource needs "*".', finding: 'Resource::*' }]);

    new CfnOutput(this, 'IotDataEndpoint', { value: endpoint.getResponseField('endpointAddress') });
    new CfnOutput(this, 'DevicePolicyName', { value: this.devicePolicyName });
    new CfnOutput(this, 'PresignRoleArn', { value: this.presignRole.roleArn, exportName: names.presignRoleArn });
    new CfnOutput(this, 'DeviceStateTableName', { value: this.deviceStateTable.tableName });
    new CfnOutput(this, 'ThingGroups', { value: config.deviceClasses.map((c) => thingGroupName(config, c.name)).join(',') });
  }
}
