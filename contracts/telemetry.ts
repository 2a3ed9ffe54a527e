// Telemetry a device publishes on fleetlm/{thing}/telemetry (QoS 1). Shared by the agent
// (producer), the local hub's sink and the cloud IoT rule (consumers) and the CLI (reader).
// Compatibility: fields are only ever added within `fleetlm/telemetry@1` (readers ignore the ones they do not
// know, so an older CLI or hub reads a newer agent); a change an older reader would misread takes @2, which
// readers report as newer instead of reading.
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';
import { formatIssues, newerMajorReason, objectWith, type UnknownFields } from '../common/validate.ts';

/** The schema id every message carries, and its major version. */
export const TELEMETRY_SCHEMA = 'fleetlm/telemetry@1';
const TELEMETRY_FAMILY = 'fleetlm/telemetry';
const TELEMETRY_MAJOR = 1;

/** The message's shape with the given policy for fields it does not know (at every level). */
function telemetrySchemaOf(unknown: UnknownFields) {
  const obj = objectWith(unknown);
  const recoveryNote = obj({ file: z.string().max(1024), problem: z.string().max(1024), keptAs: z.string().max(1024), action: z.string().max(1024) });
  const percentiles = obj({ p50: z.number().nonnegative(), p95: z.number().nonnegative() });
  return {
    recoveryNote,
    message: obj({
      schema: z.literal(TELEMETRY_SCHEMA),
      thingName: z.string().min(1).max(128),
      /** Milliseconds since the epoch, device clock. */
      timestamp: z.number().int().nonnegative(),
      /** Monotonic per device, so a consumer can spot gaps and duplicates. */
      seq: z.number().int().nonnegative(),
      event: z.enum(['periodic', 'startup', 'install', 'rollback', 'health-check', 'recovery']),
      model: obj({ modelId: z.string(), version: z.string() }).nullable(),
      inference: obj({
        requests: z.number().int().nonnegative(),
        firstTokenMs: percentiles.nullable(),
        tokensPerSecond: percentiles.nullable(),
        /**
         * Context length the decode steps ran at, per request the mean KV length (prompt + half the
         * generated tokens): what a latency prediction must be made at (absent from older agents).
         */
        decodeKvLength: percentiles.nullable().optional(),
      }),
      system: obj({
        rssBytes: z.number().nonnegative(),
        cpuLoad1m: z.number().nonnegative(),
        temperatureC: z.number().nullable(),
        powerW: z.number().nonnegative().nullable(),
        energyJ: z.number().nonnegative(),
        /** True when energy is estimated from CPU time and a configured wattage, not measured. */
        energyEstimated: z.boolean(),
      }),
      /** How the device runs models: the onnxruntime execution providers in order (absent from older agents). */
      runtime: obj({ executionProviders: z.array(z.string().min(1)).min(1) }).optional(),
      /** Messages dropped from the offline buffer because it was full. */
      dropped: z.number().int().nonnegative().default(0),
      /** On `recovery`: damaged files the agent found at start-up, where it kept them, and what it did instead. */
      recovery: z.array(recoveryNote).max(8).optional(),
    }),
  };
}

const writer = telemetrySchemaOf('reject');

/** The agent's check of what it sends: an unknown field is a bug in the agent and fails. */
export const TelemetryWriteSchema = writer.message;
/** A reader that uses the fields: fields of newer agents are dropped, wrong types and missing fields still fail. */
export const TelemetryReadSchema = telemetrySchemaOf('strip').message;
/** A reader that stores or forwards the message (the hub's sink, the agent's outbox): unknown fields are kept. */
export const TelemetryForwardSchema = telemetrySchemaOf('keep').message;

export const RecoveryNoteSchema = writer.recoveryNote;
export type RecoveryNote = z.output<typeof RecoveryNoteSchema>;

export type Telemetry = z.output<typeof TelemetryWriteSchema>;

/** What a reader made of one message: read, of a newer major schema (to report, not misread), or invalid. */
export type TelemetryReadResult =
  | { kind: 'ok'; message: Telemetry }
  | { kind: 'newer'; schema: string; thingName: string | null; reason: string }
  | { kind: 'invalid'; reason: string };

/** Reads one message as a reader does (`strip` or `keep` unknown fields); never throws. */
export function readTelemetryMessage(value: unknown, unknown: Exclude<UnknownFields, 'reject'> = 'strip'): TelemetryReadResult {
  const newer = newerMajorReason(value, 'schema', TELEMETRY_FAMILY, TELEMETRY_MAJOR, 'telemetry message');
  if (newer !== null) {
    const v = value as { schema: string; thingName?: unknown };
    return { kind: 'newer', schema: v.schema, thingName: typeof v.thingName === 'string' ? v.thingName : null, reason: newer };
  }
  const parsed = (unknown === 'keep' ? TelemetryForwardSchema : TelemetryReadSchema).safeParse(value);
  return parsed.success ? { kind: 'ok', message: parsed.data } : { kind: 'invalid', reason: formatIssues(parsed.error.issues) };
}

/**
 * Validates one message as a reader does (fields it does not know are dropped). Throws ValidationError:
 * VALIDATION_SCHEMA_VERSION for a newer major schema, VALIDATION naming each bad field otherwise.
 */
export function parseTelemetry(value: unknown): Telemetry {
  const r = readTelemetryMessage(value);
  if (r.kind === 'ok') return r.message;
  if (r.kind === 'newer') throw new ValidationError(r.reason, { code: 'VALIDATION_SCHEMA_VERSION' });
  throw new ValidationError(`invalid telemetry message: ${r.reason}`);
}
