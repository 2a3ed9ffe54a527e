// Telemetry as a newer agent would send it (fields this version does not know, at the top level and inside
// nested objects), a message of a newer major schema, and malformed ones: the readers' compatibility fixtures.
import { TELEMETRY_SCHEMA } from '../../contracts/telemetry.ts';

/** A valid fleetlm/telemetry@1 message from `thingName`, as this version's agent sends it. */
export function currentMessage(thingName: string, seq: number): Record<string, unknown> {
  return {
    schema: TELEMETRY_SCHEMA,
    thingName,
    timestamp: 1_700_000_000_000 + seq * 1000,
    seq,
    event: 'periodic',
    model: { modelId: 'm', version: '1.0.0' },
    inference: { requests: 7, firstTokenMs: { p50: 12.5, p95: 30 }, tokensPerSecond: { p50: 40, p95: 55 }, decodeKvLength: { p50: 20, p95: 40 } },
    system: { rssBytes: 150 * 2 ** 20, cpuLoad1m: 0.5, temperatureC: 51, powerW: null, energyJ: 3.5, energyEstimated: true },
    runtime: { executionProviders: ['cpu'] },
    dropped: 0,
    recovery: [{ file: 'current.json', problem: 'empty', keptAs: 'current.json.corrupt-1', action: 'rebuilt' }],
  };
}

/** The unknown fields a newer agent adds, by where they sit in the message. */
export const NEWER_FIELDS = {
  top: { gpu: { utilisation: 0.4 } },
  model: { quantization: 'int4' },
  inference: { queueDepth: { p50: 1, p95: 3 } },
  firstTokenMs: { p99: 80 },
  system: { diskFreeBytes: 1e9 },
  runtime: { graphOptimization: 'all' },
  recovery: { attempts: 2 },
} as const;

/** `currentMessage` with NEWER_FIELDS added at every level. */
export function newerAgentMessage(thingName: string, seq: number): Record<string, unknown> {
  const m = currentMessage(thingName, seq) as Record<string, Record<string, unknown>>;
  const inference = m.inference!;
  return {
    ...m,
    ...NEWER_FIELDS.top,
    model: { ...m.model, ...NEWER_FIELDS.model },
    inference: { ...inference, ...NEWER_FIELDS.inference, firstTokenMs: { ...(inference.firstTokenMs as object), ...NEWER_FIELDS.firstTokenMs } },
    system: { ...m.system, ...NEWER_FIELDS.system },
    runtime: { ...m.runtime, ...NEWER_FIELDS.runtime },
    recovery: (m.recovery as unknown as object[]).map((r) => ({ ...r, ...NEWER_FIELDS.recovery })),
  };
}

/** A message of the next major schema: readers must report it, not read it. */
export function nextMajorMessage(thingName: string, seq: number): Record<string, unknown> {
  return { ...currentMessage(thingName, seq), schema: 'fleetlm/telemetry@2', inference: { requests: '7 of 9' } };
}
