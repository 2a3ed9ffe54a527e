// Step "plan": expands a pipeline request into shards (budget x seed) and writes them to S3, where the
// Distributed Map's ItemReader reads them; the state carries only their key, so it stays small at any count.
// It also resolves whether the run asks for a rollout (a trained model: yes, after approval; random weights: only if asked).
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { z } from 'zod';
import { BudgetSchema, PipelineRequestSchema, type PipelineRequest, type PlannedShards, type PlanOutput, type Shard } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { pipelineSizeProblem } from './shared/payload.ts';
import { s3Client, type HandlerEnv } from './shared/env.ts';
import { putJson } from './shared/s3.ts';

/** Shards for a request: every budget times `seedsPerBudget` seeds. */
export function planShards(input: PipelineRequest, env: Pick<HandlerEnv, 'DEFAULT_BUDGETS'>): PlannedShards {
  // Random weights are never rolled out unless the request says so; the resolved value travels in the state.
  const request = { ...input, rollout: { ...input.rollout, enabled: input.rollout.enabled ?? input.model.kind !== 'random-weights' } };
  if (request.model.kind !== 'random-weights' && request.seedsPerBudget > 1) {
    throw new ValidationError(`seedsPerBudget ${request.seedsPerBudget} applies to random-weights searches only; a ${request.model.kind} model is one model, so pass seedsPerBudget 1`);
  }
  const budgets = request.budgets ?? (env.DEFAULT_BUDGETS ? parseJsonWith(z.array(BudgetSchema).min(1), env.DEFAULT_BUDGETS, 'DEFAULT_BUDGETS') : undefined);
  if (!budgets) throw new ValidationError('the request has no budgets and the function has no DEFAULT_BUDGETS: pass budgets[] in the request');
  // The request schema checks budgets it carries; the deployment's default budgets are checked here.
  const problem = pipelineSizeProblem(request, budgets);
  if (problem) throw new ValidationError(problem);
  const shards: Shard[] = [];
  budgets.forEach((budget, b) => {
    for (let s = 0; s < request.seedsPerBudget; s++) {
      shards.push({
        runId: request.runId,
        shardId: `${budget.deviceClass}-b${b}-s${s}`,
        modelId: request.modelId,
        version: `${request.version}-${budget.deviceClass}`.slice(0, 63),
        budget,
        model: request.model,
        seed: request.seed + s,
        vocabSize: request.vocabSize,
        contextLength: request.contextLength,
        search: request.search,
        compression: request.compression,
        evalTextKey: request.evalTextKey,
        evalTokens: request.evalTokens,
      });
    }
  });
  return { request, shards };
}

/** Where a run's shards and Map results live (under runs/{runId}/, expired by the bucket's lifecycle rule). */
export function planKeys(runId: string): { shardsKey: string; resultsPrefix: string } {
  return { shardsKey: `runs/${runId}/plan/shards.json`, resultsPrefix: `runs/${runId}/shard-results` };
}

export const handler = defineHandler('plan', PipelineRequestSchema, async (input, env): Promise<PlanOutput> => {
  // The request travels on as planned: with rollout.enabled resolved.
  const { request, shards } = planShards(input, env);
  const keys = planKeys(request.runId);
  await putJson(s3Client(env), env.ARTIFACTS_BUCKET, keys.shardsKey, shards);
  return { request, shardCount: shards.length, ...keys };
});
