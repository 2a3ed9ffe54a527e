// The CDK app: five stacks (artifacts, fleet, pipeline, observability, operator roles) from one validated config,
// checked by cdk-nag's AwsSolutions pack. `npx cdk synth` runs this through tsx.
import { App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from './nag.ts';
import { loadInfraConfig, type InfraConfig } from './config.ts';
import { ArtifactsStack } from './stacks/artifacts-stack.ts';
import { FleetStack } from './stacks/fleet-stack.ts';
import { PipelineStack } from './stacks/pipeline-stack.ts';
import { ObservabilityStack } from './stacks/observability-stack.ts';
import { OperatorsStack } from './stacks/operators-stack.ts';

export interface FleetApp {
  app: App;
  config: InfraConfig;
  artifacts: ArtifactsStack;
  fleet: FleetStack;
  pipeline: PipelineStack;
  observability: ObservabilityStack;
  operators: OperatorsStack;
}

/** Builds every stack into `app` (tests pass their own App with context). */
export function buildApp(app: App = new App(), env: NodeJS.ProcessEnv = process.env): FleetApp {
  const config = loadInfraConfig((k) => app.node.tryGetContext(k), env);
  const stackEnv = { account: config.account, region: config.region };
  const name = (s: string) => `${config.prefix === 'fleetlm' ? 'FleetLM' : config.prefix}-${s}`;

  const artifacts = new ArtifactsStack(app, name('Artifacts'), { env: stackEnv, config, description: 'FleetLM model artifacts and manifest signing key' });
  const fleet = new FleetStack(app, name('Fleet'), { env: stackEnv, config, description: 'FleetLM IoT fleet: groups, policy, jobs, telemetry' });
  fleet.addStackDependency(artifacts, 'imports the artifacts bucket ARN');
  const pipeline = new PipelineStack(app, name('Pipeline'), {
    env: stackEnv,
    config,
    description: 'FleetLM search/build/compress/evaluate/publish/rollout pipeline',
  });
  pipeline.addStackDependency(artifacts, 'imports the bucket and signing key');
  pipeline.addStackDependency(fleet, 'imports the presign role');
  const observability = new ObservabilityStack(app, name('Observability'), {
    env: stackEnv,
    config,
    stateMachine: pipeline.stateMachine,
    functions: pipeline.functions,
    topic: pipeline.notifications,
    telemetryRuleName: fleet.telemetryRule.ruleName!,
    description: 'FleetLM dashboard and alarms',
  });
  const operators = new OperatorsStack(app, name('Operators'), {
    env: stackEnv,
    config,
    telemetryTable: fleet.deviceStateTable,
    description: 'FleetLM operator roles: publisher, rollout operator, viewer, device registrar',
  });
  operators.addStackDependency(artifacts, 'imports the bucket and signing key');
  operators.addStackDependency(fleet, 'imports the presign role and the telemetry table');
  // cfn-lint's resource spec has no Tags on AWS::CloudWatch::Dashboard yet.
  Tags.of(app).add('project', 'fleetlm', { excludeResourceTypes: ['AWS::CloudWatch::Dashboard'] });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return { app, config, artifacts, fleet, pipeline, observability, operators };
}

const isEntry = process.argv[1] !== undefined && /infra[\\/]app\.ts$/.test(process.argv[1]);
if (isEntry) {
  buildApp().app.synth();
}
