// Step "rollout": per published version, a job for its device class's thing group (fleet/rollout.ts), or, when
// the deployment's rollout policy has a canary, only the canary job (`<id>-canary`, fleet/canary-rollout.ts);
// the canary-check and canary-release steps then decide whether the rest of the group gets `<id>`.
// An empty group is an expected outcome (reported as skipped), not an error.
import { z } from 'zod';
import { ResourceAlreadyExistsException } from '@aws-sdk/client-iot';
import { TransportError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { createRollout, describeGroup, MAX_ROLLOUT_JOB_ID } from '../fleet/rollout.ts';
import { startCanary } from '../fleet/canary-rollout.ts';
import { policyWarnings } from '../fleet/rollout-policy.ts';
import { PublishOutputSchema, type RolloutOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { fleetProfile, iotClient, s3Client, type HandlerEnv } from './shared/env.ts';
import { rolloutPolicyOf } from './shared/rollout-policy-env.ts';

const ThingGroupsSchema = z.record(z.string(), z.string().min(1).max(128));

/** Job ids are derived from the run, so a retried step finds its own job instead of making another; short enough for `-canary`. */
export function pipelineJobId(runId: string, deviceClass: string): string {
  return `fleetlm-${runId}-${deviceClass}`.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, MAX_ROLLOUT_JOB_ID);
}

function groupsOf(env: HandlerEnv): Record<string, string> {
  return env.THING_GROUPS ? parseJsonWith(ThingGroupsSchema, env.THING_GROUPS, 'THING_GROUPS') : {};
}

/** True when CreateJob refused because the job exists: a retried step, whose job was made by the first attempt. */
export function alreadyExists(err: unknown): boolean {
  return err instanceof TransportError && err.cause instanceof ResourceAlreadyExistsException;
}

export const handler = defineHandler('rollout', PublishOutputSchema, async (input, env): Promise<RolloutOutput> => {
  const iot = iotClient(env);
  const s3 = s3Client(env);
  const profile = fleetProfile(env);
  const policy = rolloutPolicyOf(env);
  for (const w of policyWarnings(policy)) process.stdout.write(`${JSON.stringify({ level: 'warn', step: 'rollout', warning: w })}\n`);
  const groups = groupsOf(env);
  const jobs: RolloutOutput['jobs'] = [];
  const canaries: NonNullable<RolloutOutput['canary']>['jobs'] = [];
  const skipped: string[] = [];
  for (const p of input.published) {
    const group = input.request.rollout.thingGroups?.[p.deviceClass] ?? groups[p.deviceClass];
    if (!group) {
      skipped.push(`${p.deviceClass}: no thing group configured`);
      continue;
    }
    const { things, arn } = await describeGroup(iot, group);
    if (things.length === 0 && (policy.targetSelection !== 'CONTINUOUS' || policy.canaryPercent !== undefined)) {
      skipped.push(`${p.deviceClass}: thing group ${group} has no devices`);
      continue;
    }
    const jobId = pipelineJobId(input.request.runId, p.deviceClass);
    const req = { modelId: p.modelId, version: p.version, group, settings: policy, jobId };
    if (policy.canaryPercent !== undefined) {
      // startCanary picks an existing canary job of this id up again, so a retried step makes no second one.
      const c = await startCanary(iot, s3, profile, req);
      canaries.push({ deviceClass: p.deviceClass, jobId, canaryJobId: c.canaryJobId, canaryThings: c.canaryThings, group, modelId: p.modelId, version: p.version });
      continue;
    }
    try {
      const r = await createRollout(iot, s3, profile, req);
      jobs.push({ deviceClass: p.deviceClass, jobId: r.jobId, jobArn: r.jobArn ?? '', targets: r.targets });
    } catch (err) {
      if (!alreadyExists(err)) throw err;
      jobs.push({ deviceClass: p.deviceClass, jobId, jobArn: '', targets: [arn] });
    }
  }
  return {
    runId: input.request.runId,
    jobs,
    ...(skipped.length ? { skipped: skipped.join('; ') } : {}),
    ...(canaries.length ? { canary: { startedAt: new Date().toISOString(), jobs: canaries, state: 'PENDING' as const } } : {}),
  };
});
