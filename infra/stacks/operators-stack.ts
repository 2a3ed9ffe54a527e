// The operator roles: least-privilege IAM roles for publishing, rolling out, viewing and registering devices,
// assumed through a named AWS profile (`--aws-profile`, role_arn in ~/.aws/config; docs/cloud.md).
import { CfnOutput, Stack, Token, type StackProps } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import type { InfraConfig } from '../config.ts';
import { exportNames, importValue } from '../exports.ts';
import { suppress } from '../nag.ts';
import { OperatorRoles } from '../constructs/operator-roles.ts';
import { OPERATOR_PERSONAS, type OperatorPersona } from '../constructs/role-names.ts';

export interface OperatorsStackProps extends StackProps {
  readonly config: InfraConfig;
  /** The fleet stack's table of each device's latest telemetry. */
  readonly telemetryTable: dynamodb.ITable;
}

/** `rollout-operator` -> `RolloutOperator`, for output ids. */
function pascal(persona: OperatorPersona): string {
  return persona.split('-').map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

export class OperatorsStack extends Stack {
  readonly operators: OperatorRoles;

  constructor(scope: Construct, id: string, props: OperatorsStackProps) {
    super(scope, id, props);
    const { config } = props;
    const names = exportNames(config.prefix);
    const bucket = s3.Bucket.fromBucketAttributes(this, 'Artifacts', { bucketArn: importValue(names.bucketArn), bucketName: importValue(names.bucketName) });
    this.operators = new OperatorRoles(this, 'Operators', {
      config,
      bucket,
      signingKeyArn: importValue(names.signingKeyArn),
      presignRoleArn: importValue(names.presignRoleArn),
      telemetryTable: props.telemetryTable,
      trustedPrincipalArns: config.operatorPrincipals,
    });

    // cdk-nag findings name resources as rendered; these are built the same way so they stay exact.
    const account = Token.isUnresolved(this.account) ? '<AWS::AccountId>' : this.account;
    const region = Token.isUnresolved(this.region) ? '<AWS::Region>' : this.region;
    const iot = (resource: string) => `Resource::arn:<AWS::Partition>:iot:${region}:${account}:${resource}`;
    const reasons: Record<string, string> = {
      [`Resource::${names.bucketArn}/models/*`]: 'Bundles live under models/{modelId}/{version}/, one prefix per published version.',
      [iot('job/*')]: 'Job ids are minted per rollout (fleetlm-{model}-{version}-{time}, or --job-id).',
      [iot('thing/*')]: 'Things are named by the operator at registration; IoT has no per-deployment thing namespace.',
      [iot(`thinggroup/${config.prefix}-*`)]: "Jobs target this deployment's thing groups, which share its prefix.",
      [iot('cert/*')]: 'Certificate ids are assigned by IoT when a device is registered.',
      'Resource::*': 'ListJobs, ListThings, CreateKeysAndCertificate, CreateCertificateFromCsr and DescribeEndpoint have no resource-level permissions.',
    };
    for (const persona of OPERATOR_PERSONAS) {
      suppress(
        this.operators.policies[persona],
        Object.entries(reasons).map(([finding, reason]) => ({ id: 'AwsSolutions-IAM5', reason, finding })),
      );
      new CfnOutput(this, `${pascal(persona)}RoleArn`, {
        value: this.operators.roles[persona].roleArn,
        description: `Role for fleetlm ${persona} commands: role_arn of a named profile in ~/.aws/config (docs/cloud.md)`,
        exportName: `${config.prefix}-${persona}-role-arn`,
      });
    }
  }
}
