// Step "approval" (a `.waitForTaskToken` task): stores the task token with what the rollout would ship
// (each published version with its perplexity, quality drop, size and compression) under
// approvals/{execution}.json, where `fleetlm approve` finds it. The run waits until that command answers.
import { z } from 'zod';
import { putApprovalRequest, executionNameOf } from '../fleet/approval.ts';
import { PipelineRequestSchema, PublishedSchema } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { s3Client } from './shared/env.ts';

export const ApprovalInputSchema = z
  .object({
    /** $$.Task.Token: what SendTaskSuccess/SendTaskFailure answer. */
    taskToken: z.string().min(1).max(1024),
    /** $$.Execution.Id. */
    executionArn: z.string().min(1),
    request: PipelineRequestSchema,
    published: z.array(PublishedSchema).min(1),
  })
  .strict();

export const handler = defineHandler('approval', ApprovalInputSchema, async (input, env): Promise<{ approvalKey: string }> => {
  const executionName = executionNameOf(input.executionArn);
  const approvalKey = await putApprovalRequest(s3Client(env), env.ARTIFACTS_BUCKET, {
    format: 'fleetlm/approval-request@1',
    executionArn: input.executionArn,
    executionName,
    runId: input.request.runId,
    requestedAt: new Date().toISOString(),
    model: input.request.model,
    versions: input.published,
    taskToken: input.taskToken,
  });
  return { approvalKey };
});
