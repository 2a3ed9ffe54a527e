// Step "canary-release": after every canary SUCCEEDED, the rollout's own job (`<id>`) for each class's whole
// thing group (fleet/canary-rollout.ts releaseRest); canary devices already run the version and succeed at once.
import { releaseRest } from '../fleet/canary-rollout.ts';
import { ValidationError } from '../common/errors.ts';
import { RolloutOutputSchema, type RolloutOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { fleetProfile, iotClient, s3Client } from './shared/env.ts';
import { rolloutPolicyOf } from './shared/rollout-policy-env.ts';
import { alreadyExists } from './rollout.ts';

export const handler = defineHandler('canary-release', RolloutOutputSchema, async (input, env): Promise<RolloutOutput> => {
  const canary = input.canary;
  if (canary?.state !== 'SUCCEEDED') throw new ValidationError(`canary-release runs only after every canary SUCCEEDED; the canary is ${canary?.state ?? 'missing'}`);
  const iot = iotClient(env);
  const s3 = s3Client(env);
  const profile = fleetProfile(env);
  const policy = rolloutPolicyOf(env);
  const jobs = [...input.jobs];
  for (const c of canary.jobs) {
    try {
      const r = await releaseRest(iot, s3, profile, { modelId: c.modelId, version: c.version, group: c.group, settings: policy }, c.jobId);
      jobs.push({ deviceClass: c.deviceClass, jobId: r.jobId, jobArn: r.jobArn ?? '', targets: r.targets });
    } catch (err) {
      // A retried step: the first attempt made this job.
      if (!alreadyExists(err)) throw err;
      jobs.push({ deviceClass: c.deviceClass, jobId: c.jobId, jobArn: '', targets: [c.group] });
    }
  }
  return { ...input, jobs, canary: { ...canary, state: 'RELEASED' } };
});
