// Step "rollout": one IoT job per published version, targeting its device class's thing group
// (fleet/rollout.ts). An empty group is an expected outcome (reported as skipped), not an error.
import { z } from 'zod';
import { ResourceAlreadyExistsException } from '@aws-sdk/client-iot';
import { TransportError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { createRollout, describeGroup, type RolloutSettings } from '../fleet/rollout.ts';
import { PublishOutputSchema, type RolloutOutput } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { fleetProfile, iotClient, s3Client, type HandlerEnv } from './shared/env.ts';

const ThingGroupsSchema = z.record(z.string(), z.string().min(1).max(128));
const SettingsSchema = z
  .object({
    maxPerMinute: z.number().int().min(1).max(1000),
    abortThresholdPercent: z.number().positive().max(100),
    abortMinExecuted: z.number().int().positive(),
    timeoutMinutes: z.number().int().min(1).max(10080),
    retries: z.number().int().min(0).max(10),
    presignExpiresInSec: z.number().int().min(60).max(3600),
    targetSelection: z.enum(['SNAPSHOT', 'CONTINUOUS']),
  })
  .partial()
  .strict();

/** Job ids are derived from the run, so a retried step finds its own job instead of making another. */
export function pipelineJobId(runId: string, deviceClass: string): string {
  return `fleetlm-${runId}-${deviceClass}`.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64);
}

function groupsOf(env: HandlerEnv): Record<string, string> {
  return env.THING_GROUPS ? parseJsonWith(ThingGroupsSchema, env.THING_GROUPS, 'THING_GROUPS') : {};
}

function alreadyExists(err: unknown): boolean {
  return err instanceof TransportError && err.cause instanceof ResourceAlreadyExistsException;
}

export const handler = defineHandler('rollout', PublishOutputSchema, async (input, env): Promise<RolloutOutput> => {
  const iot = iotClient(env);
  const s3 = s3Client(env);
  const profile = fleetProfile(env);
  const settings: Partial<RolloutSettings> = env.ROLLOUT_SETTINGS ? parseJsonWith(SettingsSchema, env.ROLLOUT_SETTINGS, 'ROLLOUT_SETTINGS') : {};
  const groups = groupsOf(env);
  const jobs: RolloutOutput['jobs'] = [];
  const skipped: string[] = [];
  for (const p of input.published) {
    const group = input.request.rollout.thingGroups?.[p.deviceClass] ?? groups[p.deviceClass];
    if (!group) {
      skipped.push(`${p.deviceClass}: no thing group configured`);
      continue;
    }
    const { things, arn } = await describeGroup(iot, group);
    if (things.length === 0 && settings.targetSelection !== 'CONTINUOUS') {
      skipped.push(`${p.deviceClass}: thing group ${group} has no devices`);
      continue;
    }
    const jobId = pipelineJobId(input.request.runId, p.deviceClass);
    try {
      const r = await createRollout(iot, s3, profile, { modelId: p.modelId, version: p.version, group, settings, jobId });
      jobs.push({ deviceClass: p.deviceClass, jobId: r.jobId, jobArn: r.jobArn ?? '', targets: r.targets });
    } catch (err) {
      if (!alreadyExists(err)) throw err;
      jobs.push({ deviceClass: p.deviceClass, jobId, jobArn: '', targets: [arn] });
    }
  }
  return { runId: input.request.runId, jobs, ...(skipped.length ? { skipped: skipped.join('; ') } : {}) };
});
