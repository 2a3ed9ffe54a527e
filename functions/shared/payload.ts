// How much a pipeline run puts in its Step Functions state. Shards never travel inline: the plan step writes
// them to S3, the Distributed Map reads them with ItemReader and exports child results with ResultWriter, and
// the merge step reads them back. What stays inline is the request (in every state) and, after merge, one
// candidate per device class; a request is refused up front when that could pass the state budget.
// https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html (maximum input or output size: 256 KiB)
// (No import of events.ts: its request schema uses these bounds.)

/** Step Functions' limit on a state's input or output, bytes of UTF-8. */
export const STATE_PAYLOAD_LIMIT_BYTES = 256 * 1024;
/**
 * What a pipeline state may use at worst: the limit less 64 KiB of room, enough for the `$.error` a Catch adds
 * (an error name and a cause of up to 32 KiB) and for the fields later steps add.
 */
export const STATE_BUDGET_BYTES = STATE_PAYLOAD_LIMIT_BYTES - 64 * 1024;
/**
 * Shards a run may have (budgets x seedsPerBudget). They travel through S3, not the state, so this is the
 * schema's own extent (200 budgets x 16 seeds), tested through the handlers with a 1,000-shard plan.
 */
export const MAX_PIPELINE_SHARDS = 3200;

const WORST_NUMBER = 1.2345678901234567e123;

/** What the request contributes to a candidate's fields. */
export interface RequestIdentity {
  readonly runId: string;
  readonly modelId: string;
  readonly version: string;
}

/** The largest merge candidate a device class can become (full-length keys and numbers, both step summaries). */
export function worstCaseCandidate(request: RequestIdentity, deviceClass: string): Record<string, unknown> {
  const shardId = `${deviceClass}-b199-s15`;
  const prefix = `runs/${request.runId}/${shardId}/`;
  const step = (name: string) => ({ step: name, perplexityBefore: WORST_NUMBER, perplexityAfter: WORST_NUMBER, change: WORST_NUMBER });
  return {
    deviceClass,
    modelId: request.modelId,
    version: `${request.version}-${deviceClass}`.slice(0, 63),
    shardId,
    specKey: `${prefix}search-result.json`,
    modelPrefix: `${prefix}compressed/`,
    parameters: WORST_NUMBER,
    evaluate: {
      tokens: Number.MAX_SAFE_INTEGER,
      baselinePerplexity: WORST_NUMBER,
      compressedPerplexity: WORST_NUMBER,
      qualityDrop: WORST_NUMBER,
      steps: [step(`embedding tt-matrix ${WORST_NUMBER}x`), step('quantize int8 block 4096 asym')],
    },
    embeddingCompressionRatio: WORST_NUMBER,
    seed: Number.MAX_SAFE_INTEGER,
  };
}

/**
 * Bytes of the largest inline state a request makes at worst: the merge step's output (the request plus one
 * candidate per device class); the plan, the Map's result and the publish and rollout outputs are smaller.
 */
export function worstCaseStateBytes(request: RequestIdentity, deviceClasses: Iterable<string>): number {
  const classes = [...new Set(deviceClasses)];
  const merged = {
    request,
    candidates: classes.map((c) => worstCaseCandidate(request, c)),
    maxQualityDrop: WORST_NUMBER,
    summaryKey: `runs/${request.runId}/summary.json`,
  };
  return Buffer.byteLength(JSON.stringify(merged));
}

/** Why a request cannot be carried, or undefined: too many shards, or a worst-case state over the budget. */
export function pipelineSizeProblem(request: RequestIdentity & { readonly seedsPerBudget: number }, budgets: ReadonlyArray<{ readonly deviceClass: string }>): string | undefined {
  const shards = budgets.length * request.seedsPerBudget;
  if (shards > MAX_PIPELINE_SHARDS) {
    return `the request expands to ${shards} shards (${budgets.length} budgets x ${request.seedsPerBudget} seeds); a run carries at most ${MAX_PIPELINE_SHARDS} shards`;
  }
  const bytes = worstCaseStateBytes(request, budgets.map((b) => b.deviceClass));
  if (bytes > STATE_BUDGET_BYTES) {
    const classes = new Set(budgets.map((b) => b.deviceClass)).size;
    return (
      `the request makes a state of up to ${bytes} bytes (the request plus one merge candidate for each of its ${classes} device classes); ` +
      `a pipeline state may use at most ${STATE_BUDGET_BYTES} of Step Functions' ${STATE_PAYLOAD_LIMIT_BYTES} bytes (fewer device classes, or a shorter request)`
    );
  }
  return undefined;
}
