// Step "plan": expands a pipeline request into shards (budget x seed) for the Distributed Map, and resolves
// whether the run asks for a rollout (a trained model: yes, after approval; random weights: only if asked).
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { z } from 'zod';
import { BudgetSchema, PipelineRequestSchema, type PlanOutput, type Shard } from './shared/events.ts';
import { defineHandler } from './shared/handler.ts';
import { MAX_PIPELINE_SHARDS, STATE_PAYLOAD_LIMIT_BYTES, worstCaseStateBytes } from './shared/payload.ts';
import type { HandlerEnv } from './shared/env.ts';

/** Shards for a request: every budget times `seedsPerBudget` seeds. */
export function planShards(input: z.output<typeof PipelineRequestSchema>, env: Pick<HandlerEnv, 'DEFAULT_BUDGETS'>): PlanOutput {
  // Random weights are never rolled out unless the request says so; the resolved value travels in the state.
  const request = { ...input, rollout: { ...input.rollout, enabled: input.rollout.enabled ?? input.model.kind !== 'random-weights' } };
  if (request.model.kind !== 'random-weights' && request.seedsPerBudget > 1) {
    throw new ValidationError(`seedsPerBudget ${request.seedsPerBudget} applies to random-weights searches only; a ${request.model.kind} model is one model, so pass seedsPerBudget 1`);
  }
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
  if (shards.length > MAX_PIPELINE_SHARDS) {
    throw new ValidationError(`the request expands to ${shards.length} shards (${budgets.length} budgets x ${request.seedsPerBudget} seeds); a run carries at most ${MAX_PIPELINE_SHARDS}`);
  }
  const plan = { request, shards };
  const bytes = worstCaseStateBytes(plan);
  if (bytes > STATE_PAYLOAD_LIMIT_BYTES) {
    throw new ValidationError(
      `the request's ${shards.length} shards make a state of ${bytes} bytes (the Distributed Map's input or result); Step Functions carries at most ${STATE_PAYLOAD_LIMIT_BYTES} (fewer budgets or seeds, or shorter search.widths)`,
    );
  }
  return plan;
}

export const handler = defineHandler('plan', PipelineRequestSchema, async (request, env) => planShards(request, env));
