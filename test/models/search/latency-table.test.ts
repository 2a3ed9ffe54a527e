// The layer-latency table's two checks: the fleet's reader (readLatencyTable) drops fields a newer FleetLM added
// and refuses a newer major format; what FleetLM writes and an operator's --latency-table file stay strict.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../common/errors.ts';
import { loadLatencyTable, parseLatencyTable, readLatencyTable } from '../../../models/search/latency-table.ts';

const current = {
  format: 'fleetlm/layer-latency@1',
  device: 'rpi4',
  seqLen: 64,
  storage: 'int4',
  bytesPerWeight: 0.5,
  layers: [{ width: 128, ffnWidth: 512, heads: 2, headDim: 64, ms: 1.5, family: 'llama', kvHeads: 1, spread: { devices: 3, min: 1, max: 2, relMad: 0.1 } }],
  heads: [{ width: 128, vocabSize: 4096, ms: 2 }],
  mergedFrom: { runIds: ['b1'], devices: [{ thingName: 'a', board: 'Pi', onnxruntime: '1.30.0' }], outliers: [] },
};
const newer = {
  ...current,
  accelerator: 'npu',
  layers: [{ ...current.layers[0], p95: 2.5, spread: { ...current.layers[0]!.spread, p95: 3 } }],
  heads: [{ ...current.heads[0], p95: 3 }],
  mergedFrom: { ...current.mergedFrom, devices: [{ ...current.mergedFrom.devices[0], kernel: '6.6' }], method: 'median' },
};

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return (err as ValidationError).code;
  }
  return 'none';
}

describe('layer-latency tables across versions', () => {
  it('the fleet reader reads a newer table\'s known entries exactly and drops its unknown fields', () => {
    expect(readLatencyTable(newer)).toEqual(parseLatencyTable(current));
    expect(JSON.stringify(readLatencyTable(newer))).not.toMatch(/accelerator|p95|kernel|method/);
  });

  it('what FleetLM writes is checked strictly: an unknown field anywhere fails, named', () => {
    expect(() => parseLatencyTable(newer)).toThrow(/invalid layer latency table: .*\(root\): Unrecognized key: "accelerator"/);
    expect(() => parseLatencyTable({ ...current, layers: [{ ...current.layers[0], kvheads: 1 }] })).toThrow(/layers\.0: Unrecognized key: "kvheads"/);
  });

  it('wrong types and missing fields fail the reader too (VALIDATION); a newer major format is refused (VALIDATION_SCHEMA_VERSION)', () => {
    expect(codeOf(() => readLatencyTable({ ...newer, seqLen: 'long' }))).toBe('VALIDATION');
    expect(() => readLatencyTable({ ...newer, heads: [{ width: 128, ms: 2 }] })).toThrow(/heads\.0\.vocabSize: /);
    expect(() => readLatencyTable({ ...newer, layers: [{ ...newer.layers[0], family: 'gpt2', kvHeads: 1 }] })).toThrow(/kvHeads applies to llama entries only/);
    expect(codeOf(() => readLatencyTable({ ...current, format: 'fleetlm/layer-latency@2' }, 's3://b/latency/g/rpi4-int4.json'))).toBe('VALIDATION_SCHEMA_VERSION');
    expect(() => readLatencyTable({ ...current, format: 'fleetlm/layer-latency@2' }, 's3://b/k.json')).toThrow(
      "s3://b/k.json: format 'fleetlm/layer-latency@2' is major version 2 of fleetlm/layer-latency, newer than the fleetlm/layer-latency@1 this program reads; upgrade fleetlm to read it",
    );
  });

  it('an operator\'s --latency-table file stays strict (a misspelt field is caught) and names a newer format', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-lt-'));
    try {
      const file = path.join(dir, 't.json');
      writeFileSync(file, JSON.stringify(newer));
      expect(() => loadLatencyTable(file)).toThrow(/Unrecognized key: "accelerator"/);
      writeFileSync(file, JSON.stringify({ ...current, format: 'fleetlm/layer-latency@3' }));
      expect(codeOf(() => loadLatencyTable(file))).toBe('VALIDATION_SCHEMA_VERSION');
      writeFileSync(file, JSON.stringify(current));
      expect(loadLatencyTable(file)).toEqual(parseLatencyTable(current));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
