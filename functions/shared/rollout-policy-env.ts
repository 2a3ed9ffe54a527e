// The rollout policy a rollout Lambda runs under: ROLLOUT_POLICY (JSON, set by the CDK app from the same schema),
// validated with fleet/rollout-policy.ts, so the pipeline's jobs follow the rules the CLI's do.
import { ValidationError } from '../../common/errors.ts';
import { resolveRolloutPolicy, type RolloutPolicy } from '../../fleet/rollout-policy.ts';
import type { HandlerEnv } from './env.ts';

/** The deployment's rollout policy (defaults where ROLLOUT_POLICY is unset). */
export function rolloutPolicyOf(env: HandlerEnv): RolloutPolicy {
  if (!env.ROLLOUT_POLICY) return resolveRolloutPolicy({}, 'ROLLOUT_POLICY');
  let raw: unknown;
  try {
    raw = JSON.parse(env.ROLLOUT_POLICY);
  } catch (err) {
    throw new ValidationError(`invalid ROLLOUT_POLICY: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return resolveRolloutPolicy(raw, 'ROLLOUT_POLICY');
}
