// The telemetry contract's compatibility rules: readers accept a newer agent's message (unknown fields at any
// level) and read its known fields; the agent's own check refuses an unknown field; wrong types, missing fields
// and a newer major schema are refused with their codes.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../common/errors.ts';
import { TelemetryForwardSchema, TelemetryReadSchema, TelemetryWriteSchema, parseTelemetry, readTelemetryMessage } from '../../contracts/telemetry.ts';
import { NEWER_FIELDS, currentMessage, newerAgentMessage, nextMajorMessage } from '../helpers/newer-agent-telemetry.ts';

function thrown(f: () => unknown): ValidationError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('telemetry readers and a newer agent', () => {
  it('read a newer agent\'s message: the known fields as sent, the unknown ones dropped at every level', () => {
    const t = parseTelemetry(newerAgentMessage('dev-1', 4));
    // Exactly what this version's own message reads as: nothing lost, nothing added.
    expect(t).toEqual(parseTelemetry(currentMessage('dev-1', 4)));
    expect(t).toMatchObject({ thingName: 'dev-1', seq: 4, model: { modelId: 'm', version: '1.0.0' }, system: { energyJ: 3.5, temperatureC: 51 } });
    expect(t.inference.firstTokenMs).toEqual({ p50: 12.5, p95: 30 });
    expect(t.inference.decodeKvLength).toEqual({ p50: 20, p95: 40 });
    expect(t.runtime).toEqual({ executionProviders: ['cpu'] });
    expect(t.recovery).toEqual([{ file: 'current.json', problem: 'empty', keptAs: 'current.json.corrupt-1', action: 'rebuilt' }]);
    expect(JSON.stringify(t)).not.toMatch(/gpu|quantization|queueDepth|p99|diskFreeBytes|graphOptimization|attempts/);
  });

  it('a forwarding reader keeps the unknown fields where they were', () => {
    const kept = TelemetryForwardSchema.parse(newerAgentMessage('dev-1', 4)) as unknown as Record<string, Record<string, unknown>>;
    expect(kept.gpu).toEqual(NEWER_FIELDS.top.gpu);
    expect(kept.model).toMatchObject(NEWER_FIELDS.model);
    expect(kept.inference).toMatchObject(NEWER_FIELDS.inference);
    expect(kept.inference!.firstTokenMs).toEqual({ p50: 12.5, p95: 30, p99: 80 });
    expect(kept.system).toMatchObject(NEWER_FIELDS.system);
    expect(kept.runtime).toMatchObject(NEWER_FIELDS.runtime);
    expect((kept.recovery as unknown as object[])[0]).toMatchObject(NEWER_FIELDS.recovery);
    expect(readTelemetryMessage(newerAgentMessage('dev-1', 4), 'keep')).toMatchObject({ kind: 'ok', message: { gpu: NEWER_FIELDS.top.gpu } });
  });

  it('the agent\'s own check refuses an unknown field, at the top level and nested, naming it', () => {
    expect(TelemetryWriteSchema.parse(currentMessage('dev-1', 1))).toEqual(TelemetryReadSchema.parse(currentMessage('dev-1', 1)));
    const top = TelemetryWriteSchema.safeParse({ ...currentMessage('dev-1', 1), decodeKvLenght: 3 });
    expect(top.success).toBe(false);
    expect(top.error!.issues[0]).toMatchObject({ code: 'unrecognized_keys', keys: ['decodeKvLenght'], path: [] });
    const nested = TelemetryWriteSchema.safeParse(newerAgentMessage('dev-1', 1));
    const paths = nested.error!.issues.map((i) => `${i.path.join('.')}:${(i as { keys?: string[] }).keys?.join(',')}`).sort();
    expect(paths).toEqual([':gpu', 'inference.firstTokenMs:p99', 'inference:queueDepth', 'model:quantization', 'recovery.0:attempts', 'runtime:graphOptimization', 'system:diskFreeBytes']);
  });

  it('refuses wrong types and missing fields (VALIDATION, each field named), tolerant or not', () => {
    const wrongType = { ...newerAgentMessage('dev-1', 1), seq: 'four' };
    const e1 = thrown(() => parseTelemetry(wrongType));
    expect(e1.code).toBe('VALIDATION');
    expect(e1.message).toMatch(/^invalid telemetry message: seq: /);
    const m = newerAgentMessage('dev-1', 1) as { system: Record<string, unknown> };
    const { energyJ: _energyJ, ...system } = m.system;
    const e2 = thrown(() => parseTelemetry({ ...m, system }));
    expect(e2.code).toBe('VALIDATION');
    expect(e2.message).toMatch(/system\.energyJ: /);
    expect(readTelemetryMessage({ ...m, system }, 'keep')).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(/system\.energyJ/) });
    const e3 = thrown(() => parseTelemetry({ ...currentMessage('dev-1', 1), schema: 'nope' }));
    expect(e3.code).toBe('VALIDATION');
    expect(e3.message).toMatch(/schema: /);
  });

  it('reports a newer major schema (VALIDATION_SCHEMA_VERSION) instead of misreading it', () => {
    const e = thrown(() => parseTelemetry(nextMajorMessage('dev-9', 1)));
    expect(e.code).toBe('VALIDATION_SCHEMA_VERSION');
    expect(e.message).toBe(
      "telemetry message: schema 'fleetlm/telemetry@2' is major version 2 of fleetlm/telemetry, newer than the fleetlm/telemetry@1 this program reads; upgrade fleetlm to read it",
    );
    expect(readTelemetryMessage(nextMajorMessage('dev-9', 1), 'keep')).toMatchObject({ kind: 'newer', schema: 'fleetlm/telemetry@2', thingName: 'dev-9' });
    expect(readTelemetryMessage({ ...nextMajorMessage('dev-9', 1), schema: 'fleetlm/telemetry@3.1' })).toMatchObject({ kind: 'newer', schema: 'fleetlm/telemetry@3.1' });
    // An older major is not "newer": it is simply not this schema.
    expect(readTelemetryMessage({ ...currentMessage('dev-9', 1), schema: 'fleetlm/telemetry@0' })).toMatchObject({ kind: 'invalid' });
  });
});
