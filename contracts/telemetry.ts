// Telemetry a device publishes on fleetlm/{thing}/telemetry (QoS 1). Shared by the agent
// (producer), the local hub's sink and the cloud IoT rule (consumers) and the CLI (reader).
import { z } from 'zod';
import { parseWith } from '../common/validate.ts';

export const RecoveryNoteSchema = z
  .object({ file: z.string().max(1024), problem: z.string().max(1024), keptAs: z.string().max(1024), action: z.string().max(1024) })
  .strict();
export type RecoveryNote = z.output<typeof RecoveryNoteSchema>;

const Percentiles = z.object({ p50: z.number().nonnegative(), p95: z.number().nonnegative() }).strict();

export const TelemetrySchema = z
  .object({
    schema: z.literal('fleetlm/telemetry@1'),
    thingName: z.string().min(1).max(128),
    /** Milliseconds since the epoch, device clock. */
    timestamp: z.number().int().nonnegative(),
    /** Monotonic per device, so a consumer can spot gaps and duplicates. */
    seq: z.number().int().nonnegative(),
    event: z.enum(['periodic', 'startup', 'install', 'rollback', 'health-check', 'recovery']),
    model: z.object({ modelId: z.string(), version: z.string() }).strict().nullable(),
    inference: z
      .object({
        requests: z.number().int().nonnegative(),
        firstTokenMs: Percentiles.nullable(),
        tokensPerSecond: Percentiles.nullable(),
        /**
         * Context length the decode steps ran at, per request the mean KV length (prompt + half the
         * generated tokens): what a latency prediction must be made at (absent from older agents).
         */
        decodeKvLength: Percentiles.nullable().optional(),
      })
      .strict(),
    system: z
      .object({
        rssBytes: z.number().nonnegative(),
        cpuLoad1m: z.number().nonnegative(),
        temperatureC: z.number().nullable(),
        powerW: z.number().nonnegative().nullable(),
        energyJ: z.number().nonnegative(),
        /** True when energy is estimated from CPU time and a configured wattage, not measured. */
        energyEstimated: z.boolean(),
      })
      .strict(),
    /** How the device runs models: the onnxruntime execution providers in order (absent from older agents). */
    runtime: z.object({ executionProviders: z.array(z.string().min(1)).min(1) }).strict().optional(),
    /** Messages dropped from the offline buffer because it was full. */
    dropped: z.number().int().nonnegative().default(0),
    /** On `recovery`: damaged files the agent found at start-up, where it kept them, and what it did instead. */
    recovery: z.array(RecoveryNoteSchema).max(8).optional(),
  })
  .strict();

export type Telemetry = z.output<typeof TelemetrySchema>;

/** Validates one telemetry message. */
export function parseTelemetry(value: unknown): Telemetry {
  return parseWith(TelemetrySchema, value, 'telemetry message');
}
