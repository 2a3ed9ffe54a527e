// The manifest-signing key's policy: who may sign, who may read the public key, who may administer the key.
// It replaces CDK's default key policy, which grants kms:* to the account root and so lets any IAM policy in the
// account hand out kms:Sign (whoever can sign can release a model to every device).
import { DefaultStackSynthesizer, Fn, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';

/** Key administration without any use of the key (no Sign, Verify, GetPublicKey, CreateGrant). */
export const KEY_ADMIN_ACTIONS = [
  'kms:CancelKeyDeletion',
  'kms:CreateAlias',
  'kms:DeleteAlias',
  'kms:DescribeKey',
  'kms:DisableKey',
  'kms:EnableKey',
  'kms:GetKeyPolicy',
  'kms:GetKeyRotationStatus',
  'kms:ListAliases',
  'kms:ListGrants',
  'kms:ListKeyPolicies',
  'kms:ListResourceTags',
  'kms:PutKeyPolicy',
  'kms:RevokeGrant',
  'kms:ScheduleKeyDeletion',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:UpdateAlias',
  'kms:UpdateKeyDescription',
] as const;

export interface SigningKeyPolicyProps {
  /** Principals (ArnLike patterns) that administer the key, from config.signingKeyAdmins. */
  readonly adminArns: readonly string[];
  /** Principals that may call kms:Sign (the publisher operator role and the publish function's role). */
  readonly signerArns: readonly string[];
  /** Principals that may call kms:GetPublicKey besides the signers (the deploy-time public-key export). */
  readonly publicKeyReaderArns: readonly string[];
}

/**
 * The CloudFormation execution role CDK deploys this stack with (the bootstrap's cfn-exec role unless the app
 * chose another synthesizer): it must stay a key administrator, or the next deployment cannot update the key.
 */
export function deploymentRoleArn(stack: Stack): string {
  const synth = stack.synthesizer;
  if (synth instanceof DefaultStackSynthesizer) return Fn.sub(synth.cloudFormationExecutionRoleArn);
  return `arn:${stack.partition}:iam::${stack.account}:role/cdk-${DefaultStackSynthesizer.DEFAULT_QUALIFIER}-cfn-exec-role-${stack.account}-${stack.region}`;
}

/**
 * Builds the key policy. Every statement names the account as principal and narrows it with aws:PrincipalArn:
 * a key policy that named the roles themselves would be refused while they do not exist yet (the operator roles
 * and the publish function live in stacks deployed after this key), and the condition keeps each use to the
 * listed roles whatever other IAM policies in the account allow.
 *
 * Trade-off: administration stays with the account root *user* (break-glass; aws:PrincipalArn of the root user is
 * `arn:PARTITION:iam::ACCOUNT:root`), the deployment role, and the configured admins. Without one of them the key
 * would be unmanageable until AWS Support restored access; none of them may sign.
 * https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
 */
export function signingKeyPolicy(stack: Stack, props: SigningKeyPolicyProps): iam.PolicyDocument {
  const account = new iam.AccountRootPrincipal();
  const rootUser = `arn:${stack.partition}:iam::${stack.account}:root`;
  const only = (arns: readonly string[]) => ({ ArnLike: { 'aws:PrincipalArn': [...new Set(arns)] } });
  return new iam.PolicyDocument({
    statements: [
      new iam.PolicyStatement({
        sid: 'KeyAdministration',
        principals: [account],
        actions: [...KEY_ADMIN_ACTIONS],
        resources: ['*'],
        conditions: only([rootUser, deploymentRoleArn(stack), ...props.adminArns]),
      }),
      new iam.PolicyStatement({
        sid: 'SignManifests',
        principals: [account],
        actions: ['kms:Sign'],
        resources: ['*'],
        conditions: { ...only(props.signerArns), StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256' } },
      }),
      new iam.PolicyStatement({
        sid: 'ReadPublicKey',
        principals: [account],
        actions: ['kms:GetPublicKey'],
        resources: ['*'],
        conditions: only([...props.signerArns, ...props.publicKeyReaderArns]),
      }),
    ],
  });
}
