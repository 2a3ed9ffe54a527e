// `fleetlm jobs`: rollout history per group, newest first, with each job's outcome counts.
import type { Command } from 'commander';
import { ValidationError } from '../../common/errors.ts';
import { listDeployments } from '../../fleet/job-history.ts';
import { createIotClient } from '../../fleet/profile.ts';
import { out, profileFrom, table, withProfile, type CommonOpts } from './fleet.ts';

/** Registers `jobs`. */
export function register(program: Command): void {
  withProfile(
    program
      .command('jobs')
      .description('Rollout history per group, newest first, with outcome counts')
      .option('--group <group>', 'only this thing group')
      .option('--limit <n>', 'newest n jobs (default 50)'),
  ).action(async (o: CommonOpts & { group?: string; limit?: string }) => {
    const limit = o.limit === undefined ? 50 : Number(o.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new ValidationError(`--limit must be an integer in 1..10000; got ${JSON.stringify(o.limit)}`);
    const profile = await profileFrom(o, { bucket: false });
    const jobs = await listDeployments(createIotClient(profile), { group: o.group, limit });
    // Grouped for reading: one block per group (things-only rollouts last), newest first inside.
    const byGroup = [...jobs].sort((a, b) => (a.group === null ? 1 : 0) - (b.group === null ? 1 : 0) || (a.group ?? '').localeCompare(b.group ?? ''));
    out(o, { jobs }, () =>
      jobs.length === 0
        ? `no fleetlm rollouts${o.group ? ` on group ${o.group}` : ''}`
        : table(
            ['group', 'job', 'model', 'status', 'succeeded', 'failed', 'timed out', 'canceled', 'in progress', 'queued', 'created'],
            byGroup.map((j) => [
              j.group ?? '(things)',
              j.jobId,
              `${j.modelId}@${j.version}`,
              j.reasonCode ? `${j.status} (${j.reasonCode})` : j.status,
              j.counts.succeeded,
              j.counts.failed + j.counts.rejected,
              j.counts.timedOut,
              j.counts.canceled,
              j.counts.inProgress,
              j.counts.queued,
              j.createdAt,
            ]),
          ),
    );
  });
}
