// Rollout approvals of the cloud pipeline: the approval step (functions/approval.ts) stores its Step Functions
// task token with the release's quality figures under approvals/{execution}.json; `fleetlm approve` reads it,
// answers the token (SendTaskSuccess / SendTaskFailure) and records the decision beside it, once.
// https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html#connect-wait-token
import { GetObjectCommand, NoSuchKey, PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { listKeys } from './s3-list.ts';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { z } from 'zod';
import { TransportError, ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import type { FleetProfile } from './profile.ts';

/** Where approval requests and decisions live in the artifacts bucket. */
export const APPROVALS_PREFIX = 'approvals/';
/** The error a rejected approval fails the task with; the state machine ends in its RolloutRejected state. */
export const APPROVAL_REJECTED_ERROR = 'RolloutRejected';

const ExecutionNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,80}$/, 'must be an execution name or ARN (1-80 of [A-Za-z0-9_-])');

/** One published version as the approver sees it. */
export const ApprovalVersionSchema = z
  .object({
    deviceClass: z.string(),
    modelId: z.string(),
    version: z.string(),
    prefix: z.string(),
    manifestSha256: z.string(),
    totalBytes: z.number().int().nonnegative(),
    quality: z
      .object({
        tokens: z.number(),
        baselinePerplexity: z.number(),
        perplexity: z.number(),
        qualityDrop: z.number(),
        parameters: z.number(),
        embeddingCompressionRatio: z.number(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** What the approval step stores: the token to answer and what the rollout would ship. */
export const ApprovalRequestSchema = z
  .object({
    format: z.literal('fleetlm/approval-request@1'),
    executionArn: z.string().min(1),
    executionName: ExecutionNameSchema,
    runId: z.string(),
    requestedAt: z.string(),
    /** The model source of the run (checkpoint, huggingface, or random-weights for benchmarks). */
    model: z.record(z.string(), z.unknown()),
    versions: z.array(ApprovalVersionSchema).min(1),
    taskToken: z.string().min(1).max(1024),
  })
  .strict();
export type ApprovalRequest = z.output<typeof ApprovalRequestSchema>;

/** The decision `fleetlm approve` records (written once: a second answer is refused). */
export const ApprovalDecisionSchema = z
  .object({
    format: z.literal('fleetlm/approval-decision@1'),
    executionName: ExecutionNameSchema,
    approved: z.boolean(),
    reason: z.string().optional(),
    decidedAt: z.string(),
    /** Who answered, as the caller's environment names them (USER), for the record only. */
    decidedBy: z.string().optional(),
  })
  .strict();
export type ApprovalDecision = z.output<typeof ApprovalDecisionSchema>;

/** Step Functions client for a profile (AWS mode; AWS_ENDPOINT_URL[_SFN] points it at an emulator). */
export function createSfnClient(profile: FleetProfile): SFNClient {
  if (profile.kind === 'local') {
    throw new ValidationError('approvals belong to the cloud pipeline (AWS Step Functions); the local hub runs no pipeline: drop --local', { code: 'VALIDATION_APPROVAL' });
  }
  return new SFNClient({
    region: profile.region,
    ...(profile.credentials ? { credentials: profile.credentials } : {}),
    ...(profile.awsProfile ? { profile: profile.awsProfile } : {}),
    maxAttempts: 3,
  });
}

/** `arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME` or a bare NAME -> NAME. */
export function executionNameOf(executionArnOrName: string): string {
  const name = executionArnOrName.startsWith('arn:') ? executionArnOrName.slice(executionArnOrName.lastIndexOf(':') + 1) : executionArnOrName;
  const parsed = ExecutionNameSchema.safeParse(name);
  if (!parsed.success) throw new ValidationError(`execution ${JSON.stringify(executionArnOrName)} ${parsed.error.issues[0]?.message ?? 'is invalid'}`, { code: 'VALIDATION_APPROVAL' });
  return name;
}

/** Key of an execution's approval request. */
export function approvalRequestKey(executionName: string): string {
  return `${APPROVALS_PREFIX}${executionName}.json`;
}
/** Key of an execution's recorded decision. */
export function approvalDecisionKey(executionName: string): string {
  return `${APPROVALS_PREFIX}${executionName}.decision.json`;
}

function isMissing(err: unknown): boolean {
  return err instanceof NoSuchKey || (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404));
}

async function getText(s3: S3Client, bucket: string, key: string): Promise<string | undefined> {
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return out.Body ? await out.Body.transformToString() : undefined;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw new TransportError(`cannot read s3://${bucket}/${key}`, { cause: err });
  }
}

/** Stores an approval request (the approval step; a retried step's newer token replaces the older one). */
export async function putApprovalRequest(s3: S3Client, bucket: string, request: ApprovalRequest): Promise<string> {
  const key = approvalRequestKey(request.executionName);
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${JSON.stringify(ApprovalRequestSchema.parse(request), null, 2)}\n`, ContentType: 'application/json' }));
  } catch (err) {
    throw new TransportError(`cannot store the approval request at s3://${bucket}/${key}`, { cause: err });
  }
  return key;
}

/** An execution's approval request and its decision so far. */
export interface ApprovalState {
  request: ApprovalRequest;
  decision: ApprovalDecision | undefined;
}

/** Reads an execution's approval; a ValidationError (VALIDATION_APPROVAL) when the pipeline has not asked for one. */
export async function readApproval(s3: S3Client, bucket: string, execution: string): Promise<ApprovalState> {
  const name = executionNameOf(execution);
  const text = await getText(s3, bucket, approvalRequestKey(name));
  if (text === undefined) {
    throw new ValidationError(
      `no approval request for execution ${name} in s3://${bucket}/${approvalRequestKey(name)}: the run has not reached its approval step (or asked for no rollout); list pending ones with \`fleetlm approve --list\``,
      { code: 'VALIDATION_APPROVAL' },
    );
  }
  const request = parseJsonWith(ApprovalRequestSchema, text, `approval request ${approvalRequestKey(name)}`);
  const decisionText = await getText(s3, bucket, approvalDecisionKey(name));
  return { request, decision: decisionText === undefined ? undefined : parseJsonWith(ApprovalDecisionSchema, decisionText, `approval decision ${approvalDecisionKey(name)}`) };
}

/** Every approval request in the bucket with its decision (undefined: still pending), newest first. */
export async function listApprovals(s3: S3Client, bucket: string): Promise<ApprovalState[]> {
  const names: string[] = [];
  for (const key of await listKeys(s3, bucket, APPROVALS_PREFIX)) {
    const m = /^approvals\/([A-Za-z0-9_-]+)\.json$/.exec(key);
    if (m) names.push(m[1]!);
  }
  const states = await Promise.all(names.map((n) => readApproval(s3, bucket, n)));
  return states.sort((a, b) => b.request.requestedAt.localeCompare(a.request.requestedAt));
}

export interface AnswerOptions {
  approve: boolean;
  reason?: string;
  decidedBy?: string;
  now?: Date;
}

/**
 * Answers an execution's approval: sends the task token's success or failure to Step Functions, then records
 * the decision beside the request. A decision already recorded is refused with VALIDATION_APPROVAL; so is a
 * token Step Functions no longer accepts (answered already, timed out, run stopped).
 */
export async function answerApproval(s3: S3Client, sfn: SFNClient, bucket: string, execution: string, opts: AnswerOptions): Promise<{ state: ApprovalState; decision: ApprovalDecision }> {
  const state = await readApproval(s3, bucket, execution);
  const name = state.request.executionName;
  if (state.decision) throw alreadyDecided(name, state.decision);
  if (!opts.approve && !opts.reason) throw new ValidationError('a rejection needs a reason: --reject --reason TEXT', { code: 'VALIDATION_APPROVAL' });
  const decision: ApprovalDecision = {
    format: 'fleetlm/approval-decision@1',
    executionName: name,
    approved: opts.approve,
    ...(opts.reason ? { reason: opts.reason } : {}),
    decidedAt: (opts.now ?? new Date()).toISOString(),
    ...(opts.decidedBy ? { decidedBy: opts.decidedBy } : {}),
  };
  try {
    if (opts.approve) {
      await sfn.send(new SendTaskSuccessCommand({ taskToken: state.request.taskToken, output: JSON.stringify({ approved: true, decidedAt: decision.decidedAt, ...(decision.decidedBy ? { decidedBy: decision.decidedBy } : {}) }) }));
    } else {
      // Step Functions caps error at 256 and cause at 32,768 characters.
      await sfn.send(new SendTaskFailureCommand({ taskToken: state.request.taskToken, error: APPROVAL_REJECTED_ERROR, cause: opts.reason!.slice(0, 32_000) }));
    }
  } catch (err) {
    const n = (err as { name?: string }).name;
    if (n === 'TaskTimedOut' || n === 'InvalidToken' || n === 'TaskDoesNotExist') {
      throw new ValidationError(`Step Functions no longer waits on execution ${name}'s approval (${n}): it was answered already, timed out, or the run was stopped`, {
        code: 'VALIDATION_APPROVAL',
        cause: err,
      });
    }
    throw new TransportError(`cannot answer execution ${name}'s approval token`, { cause: err });
  }
  // Recorded after Step Functions took the answer (it accepts one answer per token; a second one gets
  // TaskTimedOut), so a failed send leaves nothing behind and can be retried.
  try {
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: approvalDecisionKey(name), Body: `${JSON.stringify(decision, null, 2)}\n`, ContentType: 'application/json', IfNoneMatch: '*' }),
    );
  } catch (err) {
    if (!(err instanceof S3ServiceException && (err.name === 'PreconditionFailed' || err.$metadata?.httpStatusCode === 412))) {
      throw new TransportError(`Step Functions took the answer, but the decision could not be recorded at s3://${bucket}/${approvalDecisionKey(name)}`, { cause: err });
    }
  }
  return { state, decision };
}

function alreadyDecided(name: string, d: ApprovalDecision | undefined): ValidationError {
  return new ValidationError(
    `execution ${name} was already ${d ? `${d.approved ? 'approved' : 'rejected'} at ${d.decidedAt}${d.reason ? ` (${d.reason})` : ''}` : 'answered'}: an approval is answered once`,
    { code: 'VALIDATION_APPROVAL' },
  );
}
