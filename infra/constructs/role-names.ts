// Fixed IAM role names the signing key's policy names before the roles exist: the operator roles and the
// pipeline's publish function role. One home, so the key policy, the roles and the tests agree.
import type { InfraConfig } from '../config.ts';

/** The operator personas the CLI serves (docs/cloud.md, "Operator roles"). */
export const OPERATOR_PERSONAS = ['publisher', 'rollout-operator', 'viewer', 'device-registrar'] as const;
export type OperatorPersona = (typeof OPERATOR_PERSONAS)[number];

// Role names are global per account, so the region is part of them: one prefix may be deployed to several regions.
/** Name of the operator role for `persona` (at most 64 characters for any valid prefix and region). */
export function operatorRoleName(config: Pick<InfraConfig, 'prefix' | 'region'>, persona: OperatorPersona): string {
  return `${config.prefix}-${persona}-${config.region}`;
}

/** Name of the pipeline publish function's execution role, the only pipeline role that may sign. */
export function publishFunctionRoleName(config: Pick<InfraConfig, 'prefix' | 'region'>): string {
  return `${config.prefix}-pipeline-publish-${config.region}`;
}

/** `arn:PARTITION:iam::ACCOUNT:role/NAME` for a role of this deployment. */
export function roleArn(partition: string, account: string, name: string): string {
  return `arn:${partition}:iam::${account}:role/${name}`;
}
