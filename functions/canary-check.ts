// Step "canary-check": judges the run's canary jobs (fleet/canary-rollout.ts canaryOutcome). SUCCEEDED once every
// canary device of every class SUCCEEDED; FAILED as soon as one canary failed, or when the policy's
// canaryTimeoutMinutes passed (the canary jobs still running are then canceled, so no queued canary starts);
// PENDING otherwise, and the state machine waits and asks again.
import { TERMINAL_JOB_STATUSES, getJobProgress } from '../fleet/fleet-status.ts';
import { canaryOutcome } from '../fleet/canary-rollout.ts';
import { cancelRollout } from '../fleet/rollout.ts';
import { RolloutOutputSchema, type RolloutOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { iotClient } from './shared/env.ts';
import { rolloutPolicyOf } from './shared/rollout-policy-env.ts';
import { ValidationError } from '../common/errors.ts';

export const handler = defineHandler('canary-check', RolloutOutputSchema, async (input, env): Promise<RolloutOutput> => {
  const canary = input.canary;
  if (!canary) throw new ValidationError('canary-check needs the rollout step\'s canary (the policy had no canaryPercent?)');
  if (canary.state !== 'PENDING') return input;
  const iot = iotClient(env);
  const policy = rolloutPolicyOf(env);
  const progress = await Promise.all(canary.jobs.map((c) => getJobProgress(iot, c.canaryJobId, { details: true })));
  const outcomes = progress.map((p, i) => canaryOutcome(p, canary.jobs[i]!.canaryThings.length, policy.retries));
  const failures = outcomes.flatMap((o) => (o.state === 'failed' ? [o.reason] : []));
  const timedOut = failures.length === 0 && Date.now() - Date.parse(canary.startedAt) >= policy.canaryTimeoutMinutes * 60_000;
  if (failures.length === 0 && !timedOut) {
    return outcomes.every((o) => o.state === 'succeeded') ? { ...input, canary: { ...canary, state: 'SUCCEEDED' } } : input;
  }
  const reason = timedOut ? `canary not done after ${policy.canaryTimeoutMinutes} min: ${progress.map((p) => `${p.jobId} ${p.status} ${JSON.stringify(p.counts)}`).join(', ')}` : failures.join('; ');
  // One class's failed canary stops the whole run: stop the other canaries too, so no queued canary device starts.
  for (const p of progress) {
    if (!TERMINAL_JOB_STATUSES.has(p.status)) await cancelRollout(iot, p.jobId, { comment: `pipeline ${input.runId}: ${reason}`.slice(0, 2028) });
  }
  return { ...input, canary: { ...canary, state: 'FAILED', reason } };
});
