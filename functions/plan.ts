// Step "plan": expands a pipeline request into shards (budget x seed) for the Distributed Map.
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { z } from 'zod';
import { BudgetSchema, PipelineRequestSchema, type PlanOutput, type Shard } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import type { HandlerEnv } from './shared/env.ts';

/** Shards for a request: every budget times `seedsPerBudget` seeds. */
export function planShards(request: z.output<typeof PipelineRequestSchema>, env: Pick<HandlerEnv, 'DEFAULT_BUDGETS'>): PlanOutput {
  const budgets = request.budgets ?? (env.DEFAULT_BUDGETS ? parseJsonWith(z.array(BudgetSchema).min(1), env.DEFAULT_BUDGETS, 'DEFAULT_BUDGETS') : undefined);
  if (!budgets) throw new ValidationError('the request has no budgets and the function has no DEFAULT_BUDGETS: pass budgets[] in the request');
  const shards: Shard[] = [];
  budgets.forEach((budget, b) => {
    for (let s = 0; s < request.seedsPerBudget; s++) {
      shards.push({
        runId: request.runId,
        shardId: `${budget.deviceClass}-b${b}-s${s}`,
        modelId: request.modelId,
        version: `${request.version}-${budget.deviceClass}`.slice(0, 63),
        budget,
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

export const handler = defineHandler('plan', PipelineRequestSchema, async (request, env) => planShards(request, env));
