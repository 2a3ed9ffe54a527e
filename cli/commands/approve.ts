// `fleetlm approve`: answers the cloud pipeline's approval step. Shows the quality figures of what the run
// would roll out, then sends the stored task token's success (rollout goes ahead) or, with --reject, its
// failure (the run ends in RolloutRejected). `--list` shows approvals, pending first.
import type { Command } from 'commander';
import { ValidationError } from '../../common/errors.ts';
import { answerApproval, createSfnClient, listApprovals, readApproval, type ApprovalState } from '../../fleet/approval.ts';
import { createS3Client } from '../../fleet/profile.ts';
import { out, profileFrom, table, withProfile, type CommonOpts } from './fleet.ts';

interface ApproveOpts extends CommonOpts {
  reject?: boolean;
  reason?: string;
  list?: boolean;
}

function figures(s: ApprovalState): string {
  const rows = s.request.versions.map((v) => [
    v.deviceClass,
    `${v.modelId}@${v.version}`,
    v.quality ? v.quality.baselinePerplexity.toFixed(2) : null,
    v.quality ? v.quality.perplexity.toFixed(2) : null,
    v.quality ? `${(v.quality.qualityDrop * 100).toFixed(2)}%` : null,
    v.quality ? `${v.quality.embeddingCompressionRatio.toFixed(2)}x` : null,
    v.quality ? v.quality.parameters : null,
    (v.totalBytes / 2 ** 20).toFixed(1),
  ]);
  const model = s.request.model as { kind?: unknown; prefix?: unknown };
  return [
    `execution ${s.request.executionName} (run ${s.request.runId}), requested ${s.request.requestedAt}; model ${String(model.kind)}${model.prefix ? ` s3 ${String(model.prefix)}` : ''}`,
    ...(model.kind === 'random-weights' ? ['WARNING: random weights (benchmark run): these models are untrained'] : []),
    table(['device class', 'version', 'ppl dense', 'ppl shipped', 'change', 'embedding', 'parameters', 'size MB'], rows),
  ].join('\n');
}

function status(s: ApprovalState): string {
  if (!s.decision) return 'PENDING';
  return `${s.decision.approved ? 'APPROVED' : 'REJECTED'} ${s.decision.decidedAt}${s.decision.reason ? ` (${s.decision.reason})` : ''}`;
}

/** Registers `approve`. */
export function register(program: Command): void {
  withProfile(
    program
      .command('approve')
      .description("Approve (or --reject) a pipeline run's rollout after reading its quality figures; --list shows approvals")
      .argument('[execution]', 'Step Functions execution ARN or name of the waiting run')
      .option('--reject', 'reject: the run ends in RolloutRejected and nothing rolls out (needs --reason)')
      .option('--reason <text>', 'why (required with --reject; recorded with the decision)')
      .option('--list', 'list approval requests with their figures and decisions, pending first'),
  ).action(async (execution: string | undefined, o: ApproveOpts) => {
    const profile = await profileFrom(o);
    const s3 = createS3Client(profile);
    if (o.list) {
      if (execution) throw new ValidationError('pass either an execution or --list, not both', { code: 'VALIDATION_APPROVAL' });
      const all = await listApprovals(s3, profile.s3.bucket);
      const sorted = [...all.filter((a) => !a.decision), ...all.filter((a) => a.decision)];
      out(o, { approvals: sorted.map(({ request: { taskToken: _t, ...request }, decision }) => ({ ...request, decision: decision ?? null })) }, () =>
        sorted.length ? sorted.map((a) => `${status(a)}\n${figures(a)}`).join('\n\n') : 'no approval requests',
      );
      return;
    }
    if (!execution) throw new ValidationError('approve needs the execution to answer (ARN or name), or --list', { code: 'VALIDATION_APPROVAL' });
    if (o.reason !== undefined && !o.reject && o.reason.trim() === '') throw new ValidationError('--reason must not be empty', { code: 'VALIDATION_APPROVAL' });
    if (o.reject && !o.reason?.trim()) throw new ValidationError('--reject needs --reason TEXT (it is recorded and ends the run)', { code: 'VALIDATION_APPROVAL' });
    // Read first, so the figures are printed even when the answer then fails.
    const before = await readApproval(s3, profile.s3.bucket, execution);
    if (!o.json) process.stderr.write(`${figures(before)}\n`);
    const { decision } = await answerApproval(s3, createSfnClient(profile), profile.s3.bucket, execution, {
      approve: o.reject !== true,
      ...(o.reason ? { reason: o.reason.trim() } : {}),
      ...(process.env.USER ? { decidedBy: process.env.USER } : {}),
    });
    out(o, { executionName: decision.executionName, approved: decision.approved, reason: decision.reason ?? null, decidedAt: decision.decidedAt, versions: before.request.versions }, () =>
      decision.approved ? `approved execution ${decision.executionName}: the rollout goes ahead` : `rejected execution ${decision.executionName}: nothing rolls out (${decision.reason})`,
    );
  });
}
