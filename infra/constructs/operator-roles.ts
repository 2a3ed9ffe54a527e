// Least-privilege IAM roles (and their customer-managed policies) for the people who run the fleet: one per
// persona the CLI serves. Each policy lists exactly the actions the persona's CLI commands send
// (test/cloud/operator-iam.test.ts records them against moto and compares), on this deployment's resources.
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { PUBLIC_KEY_OBJECT } from '../../functions/shared/constants.ts';
import type { InfraConfig } from '../config.ts';
import { OPERATOR_PERSONAS, operatorRoleName, type OperatorPersona } from './role-names.ts';

export interface OperatorRolesProps {
  readonly config: InfraConfig;
  /** The artifact bucket (bundles under models/, the fleet public key under keys/). */
  readonly bucket: s3.IBucket;
  /** ARN of the manifest-signing KMS key. */
  readonly signingKeyArn: string;
  /** ARN of the role IoT Jobs assumes to presign artifact URLs (passed with every CreateJob). */
  readonly presignRoleArn: string;
  /** The table with each device's latest telemetry (`devices`, `telemetry` and `versions` scan it). */
  readonly telemetryTable: dynamodb.ITable;
  /**
   * Principals that may assume the roles.
   * @default - the account: any of its principals whose own IAM policy allows sts:AssumeRole on the role
   */
  readonly trustedPrincipalArns?: readonly string[];
}

/** One persona's policy statements, before they become a managed policy. */
export type PersonaStatements = Readonly<Record<OperatorPersona, iam.PolicyStatement[]>>;

/** What each persona's CLI commands do (docs/cloud.md, "Operator roles"). */
export const PERSONA_COMMANDS: Readonly<Record<OperatorPersona, readonly string[]>> = {
  publisher: ['publish', 'deprecate', 'authorize-rollback', 'kms-public-key'],
  'rollout-operator': ['rollout', 'status', 'cancel', 'rollback', 'devices', 'jobs'],
  viewer: ['status', 'devices', 'telemetry', 'jobs', 'versions'],
  'device-registrar': ['device register'],
};

/** The statements of every persona's policy, on this deployment's bucket, key, table, things, groups and jobs. */
export function personaStatements(stack: Stack, props: OperatorRolesProps): PersonaStatements {
  const { config, bucket } = props;
  const things = stack.formatArn({ service: 'iot', resource: 'thing', resourceName: '*' });
  const groups = stack.formatArn({ service: 'iot', resource: 'thinggroup', resourceName: `${config.prefix}-*` });
  const jobs = stack.formatArn({ service: 'iot', resource: 'job', resourceName: '*' });
  const certs = stack.formatArn({ service: 'iot', resource: 'cert', resourceName: '*' });
  const thingIndex = stack.formatArn({ service: 'iot', resource: 'index', resourceName: 'AWS_Things' });
  const allow = (actions: string[], resources: string[], conditions?: Record<string, unknown>) =>
    new iam.PolicyStatement({ actions, resources, ...(conditions ? { conditions } : {}) });
  // HeadObject/GetObject of a missing key answers 403 instead of 404 without ListBucket, and the CLI tells
  // "not published yet" from "forbidden" by that; HeadObject carries no s3:prefix, so no prefix condition.
  const listBucket = allow(['s3:ListBucket'], [bucket.bucketArn]);
  const readModels = allow(['s3:GetObject'], [bucket.arnForObjects('models/*')]);
  const readFleet = [
    allow(['iot:DescribeJob', 'iot:ListJobExecutionsForJob'], [jobs]),
    allow(['iot:DescribeJobExecution', 'iot:ListJobExecutionsForThing'], [things]),
    allow(['iot:ListThingsInThingGroup'], [groups]),
    allow(['iot:SearchIndex'], [thingIndex]),
    // ListJobs and ListThings have no resource-level permissions.
    allow(['iot:ListJobs', 'iot:ListThings'], ['*']),
    allow(['dynamodb:Scan'], [props.telemetryTable.tableArn]),
  ];
  return {
    publisher: [
      allow(['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:GetObject', 's3:PutObject'], [bucket.arnForObjects('models/*')]),
      listBucket,
      allow(['kms:GetPublicKey', 'kms:Sign'], [props.signingKeyArn]),
    ],
    'rollout-operator': [
      readModels,
      listBucket,
      allow(['iot:CreateJob'], [jobs, groups, things]),
      allow(['iot:CancelJob'], [jobs]),
      allow(['iot:DescribeThing'], [things]),
      allow(['iot:DescribeThingGroup'], [groups]),
      allow(['iam:PassRole'], [props.presignRoleArn], { StringEquals: { 'iam:PassedToService': 'iot.amazonaws.com' } }),
      ...readFleet,
    ],
    viewer: [readModels, listBucket, ...readFleet],
    'device-registrar': [
      allow(['iot:AttachThingPrincipal', 'iot:CreateThing', 'iot:DetachThingPrincipal', 'iot:ListThingPrincipals'], [things]),
      allow(['iot:AddThingToThingGroup'], [things, groups]),
      allow(['iot:CreateThingGroup'], [groups]),
      allow(['iot:AttachPolicy', 'iot:DeleteCertificate', 'iot:DescribeCertificate', 'iot:DetachPolicy', 'iot:UpdateCertificate'], [certs]),
      // Certificates get their ids when created, and the endpoint is account-wide: no resource-level permissions.
      allow(['iot:CreateCertificateFromCsr', 'iot:CreateKeysAndCertificate', 'iot:DescribeEndpoint'], ['*']),
      allow(['s3:GetObject'], [bucket.arnForObjects(PUBLIC_KEY_OBJECT)]),
      listBucket,
    ],
  };
}

/** Four roles, one per persona, each with a customer-managed policy of the same name (attachable to users too). */
export class OperatorRoles extends Construct {
  readonly roles: Readonly<Record<OperatorPersona, iam.Role>>;
  readonly policies: Readonly<Record<OperatorPersona, iam.ManagedPolicy>>;

  constructor(scope: Construct, id: string, props: OperatorRolesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const trusted = props.trustedPrincipalArns ?? [];
    const assumedBy = trusted.length === 0 ? new iam.AccountPrincipal(stack.account) : new iam.CompositePrincipal(...trusted.map((a) => new iam.ArnPrincipal(a)));
    const statements = personaStatements(stack, props);
    const roles = {} as Record<OperatorPersona, iam.Role>;
    const policies = {} as Record<OperatorPersona, iam.ManagedPolicy>;
    for (const persona of OPERATOR_PERSONAS) {
      const name = operatorRoleName(props.config, persona);
      const commands = PERSONA_COMMANDS[persona].map((c) => `fleetlm ${c}`).join(', ');
      policies[persona] = new iam.ManagedPolicy(this, `${persona}-policy`, {
        managedPolicyName: name,
        description: `FleetLM ${persona}: ${commands}`.slice(0, 1000),
        statements: statements[persona],
      });
      roles[persona] = new iam.Role(this, `${persona}-role`, {
        roleName: name,
        assumedBy,
        description: `FleetLM ${persona}: ${commands}`.slice(0, 1000),
        managedPolicies: [policies[persona]],
      });
    }
    this.roles = roles;
    this.policies = policies;
  }
}
