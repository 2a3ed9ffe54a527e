// What an operator looks at: one dashboard (pipeline runs, rollout progress, failures, device
// latency and tokens/s per model version) and alarms on failed runs and latency regressions.
import { Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import type { InfraConfig } from '../config.ts';
import { DEVICE_METRICS_NAMESPACE, FLEET_EVENT_METRICS } from './fleet-stack.ts';

export interface ObservabilityStackProps extends StackProps {
  config: InfraConfig;
  stateMachine: sfn.IStateMachine;
  functions: Record<string, lambda.IFunction>;
  topic: sns.ITopic;
  telemetryRuleName: string;
}

const FIVE_MIN = Duration.minutes(5);

/** A SEARCH over every series of a metric, so new model versions and jobs appear without a deploy. */
function search(expression: string, label: string, stat = 'Average'): cloudwatch.MathExpression {
  return new cloudwatch.MathExpression({ expression: `SEARCH('${expression}', '${stat}', 300)`, label, period: FIVE_MIN, usingMetrics: {} });
}

export class ObservabilityStack extends Stack {
  readonly dashboard: cloudwatch.Dashboard;
  readonly failedRunsAlarm: cloudwatch.Alarm;
  readonly latencyAlarm: cloudwatch.Alarm;
  readonly latencyAnomalyAlarm: cloudwatch.AnomalyDetectionAlarm;
  /** Any job execution that failed, was rejected or timed out in the last 5 minutes. */
  readonly failedJobExecutionsAlarm: cloudwatch.Alarm;
  /** More disconnects than connects over 15 minutes: a device went offline and has not come back. */
  readonly devicesOfflineAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: ObservabilityStackProps) {
    super(scope, id, props);
    const { config, stateMachine, topic } = props;
    const alarmAction = new actions.SnsAction(topic);

    const fleetLatency = new cloudwatch.Metric({ namespace: DEVICE_METRICS_NAMESPACE, metricName: 'FirstTokenMsP50', statistic: 'Average', period: FIVE_MIN });
    const fleetTps = new cloudwatch.Metric({ namespace: DEVICE_METRICS_NAMESPACE, metricName: 'TokensPerSecondP50', statistic: 'Average', period: FIVE_MIN });

    /** An alarm (to the SNS topic) as soon as a count reaches 1 within its period; no data is no alarm. */
    const onAnyCount = (alarmId: string, metric: cloudwatch.Metric | cloudwatch.MathExpression, alarmDescription: string): cloudwatch.Alarm => {
      const alarm = metric.createAlarm(this, alarmId, {
        alarmDescription,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm.addAlarmAction(alarmAction);
      return alarm;
    };
    const eventCount = (metricName: string, period: Duration) =>
      new cloudwatch.Metric({ namespace: DEVICE_METRICS_NAMESPACE, metricName, statistic: 'Sum', period });
    const fifteen = Duration.minutes(15);

    this.failedRunsAlarm = onAnyCount(
      'FailedRuns',
      stateMachine.metricFailed({ period: FIVE_MIN, statistic: 'Sum' }),
      'A FleetLM pipeline execution failed (including quality-gate rejections)',
    );
    this.failedJobExecutionsAlarm = onAnyCount(
      'FailedJobExecutions',
      new cloudwatch.MathExpression({
        expression: 'FILL(failed, 0) + FILL(timedOut, 0)',
        usingMetrics: { failed: eventCount(FLEET_EVENT_METRICS.jobExecutionsFailed, FIVE_MIN), timedOut: eventCount(FLEET_EVENT_METRICS.jobExecutionsTimedOut, FIVE_MIN) },
        label: 'Job executions failed, rejected or timed out',
        period: FIVE_MIN,
      }),
      'A rollout job execution failed, was rejected or timed out on a device (IoT job execution events).',
    );
    this.devicesOfflineAlarm = onAnyCount(
      'DevicesOffline',
      new cloudwatch.MathExpression({
        expression: 'FILL(disconnects, 0) - FILL(connects, 0)',
        usingMetrics: { disconnects: eventCount(FLEET_EVENT_METRICS.deviceDisconnects, fifteen), connects: eventCount(FLEET_EVENT_METRICS.deviceConnects, fifteen) },
        label: 'Disconnects not followed by a connect',
        period: fifteen,
      }),
      'More devices disconnected than reconnected over 15 minutes (IoT lifecycle events): a device went offline.',
    );

    this.latencyAlarm = fleetLatency.createAlarm(this, 'LatencyAboveLimit', {
      alarmDescription: `Fleet p50 first-token latency above ${config.latencyAlarmMs} ms for 15 minutes`,
      threshold: config.latencyAlarmMs,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    // A regression is latency above what this fleet usually shows, whatever the absolute level.
    this.latencyAnomalyAlarm = new cloudwatch.AnomalyDetectionAlarm(this, 'LatencyRegression', {
      metric: fleetLatency,
      stdDevs: 3,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_UPPER_THRESHOLD,
      alarmDescription: 'Fleet p50 first-token latency above its anomaly band (likely a model or runtime regression)',
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    for (const alarm of [this.latencyAlarm, this.latencyAnomalyAlarm]) alarm.addAlarmAction(alarmAction);

    const lambdaErrors = Object.entries(props.functions).map(([name, f]) => f.metricErrors({ period: FIVE_MIN, label: name }));
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${config.prefix}-fleet`,
      defaultInterval: Duration.days(1),
      widgets: [
        [
          new cloudwatch.TextWidget({ markdown: '# FleetLM\nPipeline runs, rollouts (IoT Jobs) and what devices report.', width: 24, height: 2 }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Pipeline executions',
            left: [stateMachine.metricSucceeded({ period: FIVE_MIN }), stateMachine.metricFailed({ period: FIVE_MIN }), stateMachine.metricStarted({ period: FIVE_MIN })],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Rollout progress (job executions by job)',
            left: [
              search(`{AWS/IoT,JobId} MetricName="SuccededJobExecutionCount"`, 'succeeded', 'Sum'),
              search(`{AWS/IoT,JobId} MetricName="InProgressJobExecutionCount"`, 'in progress', 'Sum'),
              search(`{AWS/IoT,JobId} MetricName="QueuedJobExecutionCount"`, 'queued', 'Sum'),
            ],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Failures',
            left: [
              search(`{AWS/IoT,JobId} MetricName="FailedJobExecutionCount"`, 'job executions failed', 'Sum'),
              search(`{AWS/IoT,JobId} MetricName="TimedOutJobExecutionCount"`, 'job executions timed out', 'Sum'),
              new cloudwatch.Metric({ namespace: 'AWS/IoT', metricName: 'Failure', dimensionsMap: { RuleName: props.telemetryRuleName }, statistic: 'Sum', period: FIVE_MIN, label: 'telemetry rule failures' }),
            ],
            right: lambdaErrors,
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Device first-token latency p50 (ms) by model version',
            left: [search(`{${DEVICE_METRICS_NAMESPACE},ModelId,ModelVersion} MetricName="FirstTokenMsP50ByVersion"`, 'first token ms')],
            leftAnnotations: [{ value: config.latencyAlarmMs, label: 'alarm', color: '#d62728' }],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Device tokens/s p50 by model version',
            left: [search(`{${DEVICE_METRICS_NAMESPACE},ModelId,ModelVersion} MetricName="TokensPerSecondP50ByVersion"`, 'tokens/s')],
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Fleet-wide p50 (all versions)', left: [fleetLatency], right: [fleetTps], width: 12 }),
          new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: [this.failedRunsAlarm, this.latencyAlarm, this.latencyAnomalyAlarm], width: 12 }),
        ],
      ],
    });
  }
}
