// Test fixture for the Lambda handlers: a local hub (IoT control plane + S3-protocol store) and a
// local KMS-protocol server, with the handler environment pointed at them the way a Lambda's
// would be on AWS, so every handler talks through the real SDK clients.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { startLocalKms, type LocalKms } from './kms-server.ts';
import type { PipelineRequestInput, Shard } from '../../functions/shared/events.ts';

export interface HandlerFixture {
  hub: LocalHub;
  kms: LocalKms;
  dir: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** Starts the servers and sets process.env for handlers; `stop` restores it. */
export async function startHandlerFixture(extraEnv: Record<string, string> = {}): Promise<HandlerFixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-fn-'));
  const hub = await startHub({ dir: path.join(dir, 'hub') });
  const kms = await startLocalKms();
  const env: Record<string, string> = {
    ARTIFACTS_BUCKET: hub.endpoints.s3.bucket,
    AWS_REGION: hub.endpoints.region,
    FLEETLM_S3_ENDPOINT: hub.endpoints.s3.endpoint,
    FLEETLM_IOT_ENDPOINT: hub.endpoints.iotEndpoint,
    FLEETLM_KMS_ENDPOINT: kms.endpoint,
    FLEETLM_LOCAL_ACCESS_KEY_ID: hub.endpoints.credentials.accessKeyId,
    FLEETLM_LOCAL_SECRET_ACCESS_KEY: hub.endpoints.credentials.secretAccessKey,
    MANIFEST_KEY_ARN: kms.keyId,
    PRESIGN_ROLE_ARN: 'arn:aws:iam::123456789012:role/fleetlm-presign',
    THING_GROUPS: JSON.stringify({ rpi5: 'fleetlm-rpi5' }),
    DEFAULT_BUDGETS: JSON.stringify([TINY_BUDGET]),
    FLEETLM_TMP: path.join(dir, 'tmp'),
    FLEETLM_QUIET_HANDLERS: '1',
    ...extraEnv,
  };
  const saved = { ...process.env };
  Object.assign(process.env, env);
  return {
    hub,
    kms,
    dir,
    env,
    async stop() {
      process.env = saved;
      await kms.close();
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A budget that yields a ~3M-parameter model (almost all of it GPT-2's 50257-row embedding). */
export const TINY_BUDGET = { deviceClass: 'rpi5', memoryBudgetBytes: 16_000_000, flopsBudget: 2e9 };

/** A request small enough to run every step in seconds on two cores. */
export const TINY_REQUEST: PipelineRequestInput = {
  runId: 'test-run-1',
  modelId: 'tiny-lm',
  version: '1.0.0',
  // The search-and-random-weights path exercises every step in seconds; runs with a trained model are in
  // model-steps.test.ts (checkpoint, Hugging Face folder) and pipeline-run.test.ts.
  model: { kind: 'random-weights', benchmarkOnly: true },
  seed: 1,
  vocabSize: 50257,
  contextLength: 64,
  search: { iterations: 500, population: 32, blocks: 1, maxLayersPerBlock: 2, widths: [64, 128], headDim: 32 },
  compression: { method: 'tt-row', ratio: 2 },
  evalTokens: 48,
};

/** The shard the plan step makes of TINY_REQUEST. */
export function tinyShard(): Shard {
  return {
    runId: 'test-run-1',
    shardId: 'rpi5-b0-s0',
    modelId: 'tiny-lm',
    version: '1.0.0-rpi5',
    budget: TINY_BUDGET,
    model: { kind: 'random-weights', benchmarkOnly: true },
    seed: 1,
    vocabSize: 50257,
    contextLength: 64,
    search: { iterations: 500, population: 32, blocks: 1, maxLayersPerBlock: 2, widths: [64, 128], headDim: 32 },
    compression: { method: 'tt-row', ratio: 2 },
    evalTokens: 48,
  };
}
