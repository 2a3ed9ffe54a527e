// Model artifacts: the versioned S3 bucket that holds bundles and manifests, its access-log
// bucket, and the KMS ECC_NIST_P256 key that signs manifests (public key exported for agents).
import { CfnElement, CfnOutput, CustomResource, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as cr from 'aws-cdk-lib/custom-resources';
import { suppress } from '../nag.ts';
import type { Construct } from 'constructs';
import type { InfraConfig } from '../config.ts';
import { exportNames } from '../exports.ts';
import { fleetFunction } from '../lambda.ts';
import { PUBLIC_KEY_OBJECT } from '../../functions/shared/constants.ts';
import { signingKeyPolicy } from '../constructs/signing-key-policy.ts';
import { operatorRoleName, publishFunctionRoleName, roleArn } from '../constructs/role-names.ts';

export interface ArtifactsStackProps extends StackProps {
  config: InfraConfig;
}


export class ArtifactsStack extends Stack {
  readonly bucket: s3.Bucket;
  readonly logsBucket: s3.Bucket;
  readonly signingKey: kms.Key;

  constructor(scope: Construct, id: string, props: ArtifactsStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.logsBucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    suppress(this.logsBucket, [
      { id: 'AwsSolutions-S1', reason: 'This is the access-log bucket itself; logging it into itself would loop.' },
    ]);

    // SSE-S3 rather than KMS: IoT presigned URLs are fetched by devices without kms:Decrypt.
    this.bucket = new s3.Bucket(this, 'Artifacts', {
      versioned: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      serverAccessLogsBucket: this.logsBucket,
      serverAccessLogsPrefix: 'artifacts/',
      lifecycleRules: [
        {
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: Duration.days(config.noncurrentVersionDays),
          abortIncompleteMultipartUploadAfter: Duration.days(7),
        },
        { id: 'expire-pipeline-scratch', prefix: 'runs/', expiration: Duration.days(config.noncurrentVersionDays) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // kms:GetPublicKey at deploy time, so the agents' public key is an output and an S3 object
    // rather than a manual step. https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html
    const publicKeyFn = fleetFunction(this, 'PublicKeyFn', {
      entry: 'public-key.ts',
      description: 'Exports the manifest-signing public key as PEM',
      environment: { ARTIFACTS_BUCKET: this.bucket.bucketName },
    });

    // Asymmetric keys cannot rotate automatically; rotation is a new key plus a new agent trust entry.
    // The key policy admits only the signers, the public-key readers and the administrators by name (see
    // infra/constructs/signing-key-policy.ts for why the account root stays an administrator, never a signer).
    const role = (name: string) => roleArn(this.partition, this.account, name);
    this.signingKey = new kms.Key(this, 'ManifestSigningKey', {
      keySpec: kms.KeySpec.ECC_NIST_P256,
      keyUsage: kms.KeyUsage.SIGN_VERIFY,
      description: `${config.prefix}: signs model manifests (ECDSA_SHA_256); agents verify with the public key`,
      alias: `alias/${config.prefix}-manifest-signing`,
      removalPolicy: RemovalPolicy.RETAIN,
      policy: signingKeyPolicy(this, {
        adminArns: config.signingKeyAdmins,
        signerArns: [role(operatorRoleName(config, 'publisher')), role(publishFunctionRoleName(config))],
        publicKeyReaderArns: [publicKeyFn.role!.roleArn],
      }),
    });
    publicKeyFn.addToRolePolicy(new iam.PolicyStatement({ actions: ['kms:GetPublicKey'], resources: [this.signingKey.keyArn] }));
    publicKeyFn.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [this.bucket.arnForObjects(PUBLIC_KEY_OBJECT)] }));
    const provider = new cr.Provider(this, 'PublicKeyProvider', { onEventHandler: publicKeyFn });
    const publicKey = new CustomResource(this, 'ManifestPublicKey', {
      serviceToken: provider.serviceToken,
      properties: { KeyArn: this.signingKey.keyArn },
    });

    suppress(this, [
      { id: 'AwsSolutions-IAM4', reason: 'Lambda roles use the AWS-managed basic execution role only to write their own logs.', finding: 'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole' },
    ]);
    suppress(publicKeyFn, [{ id: 'AwsSolutions-IAM5', reason: 'X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.', finding: 'Resource::*' }]);
    suppress(provider, [
      { id: 'AwsSolutions-L1', reason: 'The custom-resource Provider framework runtime is pinned by aws-cdk-lib, not by this app.' },
      { id: 'AwsSolutions-IAM5', reason: 'The Provider framework may invoke any version of its own onEvent function.', finding: `Resource::<${this.getLogicalId(publicKeyFn.node.defaultChild as CfnElement)}.Arn>:*` },
    ]);

    const names = exportNames(config.prefix);
    new CfnOutput(this, 'ArtifactsBucketName', { value: this.bucket.bucketName, exportName: names.bucketName });
    new CfnOutput(this, 'ArtifactsBucketArn', { value: this.bucket.bucketArn, exportName: names.bucketArn });
    new CfnOutput(this, 'ManifestSigningKeyArn', { value: this.signingKey.keyArn, exportName: names.signingKeyArn });
    new CfnOutput(this, 'ManifestPublicKeyObject', { value: publicKey.getAttString('PublicKeyObject'), description: 'PEM public key agents verify manifests with' });
    new CfnOutput(this, 'ManifestPublicKeySha256', { value: publicKey.getAttString('PublicKeySha256') });
  }
}
