// Names of the CloudFormation exports stacks share. Importing by these fixed names (rather than
// CDK's generated ones) keeps cross-stack references and cdk-nag findings readable and stable.
import { Fn } from 'aws-cdk-lib';

/** Export names for a deployment prefix. */
export function exportNames(prefix: string) {
  return {
    bucketName: `${prefix}-artifacts-bucket-name`,
    bucketArn: `${prefix}-artifacts-bucket-arn`,
    signingKeyArn: `${prefix}-manifest-signing-key-arn`,
    presignRoleArn: `${prefix}-jobs-presign-role-arn`,
  } as const;
}
export type ExportNames = ReturnType<typeof exportNames>;

/** Fn::ImportValue of one of the names above. */
export function importValue(name: string): string {
  return Fn.importValue(name);
}
