// `fleetlm latency --check`: for every deployed model version and device class, the decode latency the
// devices report (1000 / decode tokens per second, median over devices) against two predictions of it:
// the roofline of the class's device profile and the fleet-measured layer table. Closes the loop between
// what the search assumed and what the fleet runs.
import { layerShapeOf } from '../models/arch/accounting.ts';
import { parseArchSpec, type ArchSpec } from '../models/arch/spec.ts';
import { weightStorageOfBits, type WeightStorage } from '../models/arch/weight-storage.ts';
import { computeUnitOf, deviceProfile, DEVICE_IDS } from '../models/search/device-profiles.ts';
import { predictLatencyMs } from '../models/search/latency-model.ts';
import type { LayerLatencyTable } from '../models/search/latency-table.ts';
import { llamaKvHeadsOf, MeasuredLatencyModel } from '../models/search/measured-latency.ts';
import { RooflineLatencyModel } from '../models/search/roofline-latency.ts';
import type { Telemetry } from '../contracts/telemetry.ts';
import { ValidationError } from '../common/errors.ts';

/** Whether a spec has layers only a table's llama entries price (RMSNorm, SwiGLU, rotary, no biases). */
function hasLlamaLayers(spec: ArchSpec): boolean {
  return spec.blocks.some((b) => llamaKvHeadsOf(b.heads, b.headDim, { ...layerShapeOf(b), rotary: spec.positions === 'rotary' }) !== null);
}

/** Goal of the measured table: its prediction within this fraction of the reported decode latency. */
export const CHECK_GOAL = 0.15;

/** A deployed version as the check needs it: its architecture and how its weights ship. */
export interface DeployedVersion {
  modelId: string;
  version: string;
  spec: ArchSpec;
  /** Weight storage of the shipped file (null: fp32). */
  storage: WeightStorage | null;
}

export interface CheckRow {
  deviceClass: string;
  modelId: string;
  version: string;
  devices: string[];
  /** Median over devices of 1000 / decode tokens per second (p50). */
  measuredMs: number;
  /**
   * KV length the predictions are made at: the median over devices of the mean KV length their decode
   * ran at, where every device reports it (agents from the version that added it), else the table's seqLen.
   */
  seqLen: number;
  /** Whether seqLen is the devices' reported decode KV length (true) or the table's (false). */
  seqLenReported: boolean;
  rooflineMs: number | null;
  tableMs: number | null;
  /** (predicted - measured) / measured. */
  rooflineError: number | null;
  tableError: number | null;
  /** Why a prediction is missing (no table for the class, storage mismatch, no device profile). */
  notes: string[];
}

function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The weight storage a published manifest records (its compression.quantization report), or null for float weights. */
export function storageOfManifest(compression: Record<string, unknown> | undefined): WeightStorage | null {
  const q = compression?.quantization as { bits?: unknown; blockSize?: unknown } | undefined;
  const bits = q?.bits;
  if (bits !== 8 && bits !== 4) return null;
  const blockSize = q?.blockSize === 64 || q?.blockSize === 128 ? q.blockSize : 32;
  return weightStorageOfBits(bits, { blockSize });
}

/** The spec a manifest's arch field holds (`arch.spec`, or the arch itself), or null. */
export function specOfManifest(arch: Record<string, unknown> | undefined): ArchSpec | null {
  if (!arch) return null;
  try {
    return parseArchSpec('spec' in arch ? arch.spec : arch);
  } catch {
    return null;
  }
}

function storageName(s: WeightStorage | null): string {
  return s ? s.type : 'fp32';
}

/** The class's roofline for a version's weight storage at `seqLen`. */
function rooflineAt(cls: string, v: DeployedVersion, table: LayerLatencyTable | undefined, seqLen: number): RooflineLatencyModel {
  return new RooflineLatencyModel(computeUnitOf(deviceProfile(cls), table?.unit ?? 'cpu').unit, v.storage ? { seqLen, weights: v.storage } : { seqLen, bytesPerWeight: 4 });
}

/**
 * Compares reported and predicted decode latency per (class, version). `classOf` maps things to their
 * device class (from benchmark runs); `tables` holds the merged tables of each class (one per storage).
 */
export function latencyCheck(input: {
  telemetry: readonly Telemetry[];
  versions: readonly DeployedVersion[];
  classOf: ReadonlyMap<string, string>;
  tables: ReadonlyMap<string, readonly LayerLatencyTable[]>;
  /** KV length for classes without a table (default 64). */
  defaultSeqLen?: number;
}): CheckRow[] {
  // Latest message with a decode speed per (device, version).
  const latest = new Map<string, Telemetry>();
  for (const t of input.telemetry) {
    if (!t.model || !t.inference.tokensPerSecond || !(t.inference.tokensPerSecond.p50 > 0)) continue;
    const key = `${t.thingName}\u0000${t.model.modelId}@${t.model.version}`;
    const prev = latest.get(key);
    if (!prev || t.timestamp >= prev.timestamp) latest.set(key, t);
  }
  const groups = new Map<string, { cls: string; ref: string; devices: string[]; ms: number[]; kv: number[] }>();
  for (const t of latest.values()) {
    const cls = input.classOf.get(t.thingName) ?? 'unbenchmarked';
    const ref = `${t.model!.modelId}@${t.model!.version}`;
    const k = `${cls}\u0000${ref}`;
    const g = groups.get(k) ?? { cls, ref, devices: [], ms: [], kv: [] };
    g.devices.push(t.thingName);
    g.ms.push(1000 / t.inference.tokensPerSecond!.p50);
    const kv = t.inference.decodeKvLength?.p50;
    if (kv !== undefined && kv > 0) g.kv.push(kv);
    groups.set(k, g);
  }
  const byRef = new Map(input.versions.map((v) => [`${v.modelId}@${v.version}`, v]));
  const rows: CheckRow[] = [];
  for (const g of [...groups.values()].sort((a, b) => a.cls.localeCompare(b.cls) || a.ref.localeCompare(b.ref))) {
    const v = byRef.get(g.ref);
    const [modelId, version] = g.ref.split('@') as [string, string];
    const measuredMs = median(g.ms);
    const candidates = input.tables.get(g.cls) ?? [];
    const table = candidates.find((t) => (t.storage ?? `${t.bytesPerWeight * 8}-bit`) === storageName(v?.storage ?? null)) ?? candidates[0];
    const notes: string[] = [];
    // Attention reads the whole cache: predict at the context the devices decoded at, when they all say.
    const reportedKv = g.kv.length === g.devices.length ? Math.max(1, Math.round(median(g.kv))) : undefined;
    let seqLen = reportedKv ?? table?.seqLen ?? input.defaultSeqLen ?? 64;
    let seqLenReported = reportedKv !== undefined;
    let rooflineMs: number | null = null;
    let tableMs: number | null = null;
    if (!v) notes.push('no architecture in the published manifest');
    else if (!DEVICE_IDS.includes(g.cls)) notes.push(`device class ${g.cls} has no device profile for a roofline`);
    else {
      const roofline = rooflineAt(g.cls, v, table, seqLen);
      rooflineMs = predictLatencyMs(v.spec, roofline);
      if (!table) notes.push(`no merged table for ${g.cls}: run fleetlm benchmark and fleetlm latency`);
      else if ((table.storage ?? `${table.bytesPerWeight * 8}-bit`) !== storageName(v.storage)) notes.push(`table measured ${table.storage ?? `${table.bytesPerWeight * 8}-bit`} weights, the version ships ${storageName(v.storage)}`);
      else {
        try {
          tableMs = predictLatencyMs(v.spec, new MeasuredLatencyModel(table, roofline));
        } catch (err) {
          if (!(err instanceof ValidationError) || !seqLenReported) throw err;
          // A table timed at one KV length cannot be moved to another: predict both at its own.
          notes.push(`the devices decoded at KV ${seqLen}, but the table has layers at KV ${table.seqLen} only (time two KV lengths to interpolate); both predictions are at KV ${table.seqLen}`);
          seqLen = table.seqLen;
          seqLenReported = false;
          const atTable = rooflineAt(g.cls, v, table, seqLen);
          rooflineMs = predictLatencyMs(v.spec, atTable);
          tableMs = predictLatencyMs(v.spec, new MeasuredLatencyModel(table, atTable));
        }
        if (hasLlamaLayers(v.spec) && !table.layers.some((l) => l.family === 'llama')) {
          notes.push(`Llama-family layers, and the ${g.cls} table has no llama entries (they use the calibrated roofline): run fleetlm benchmark --family llama`);
        }
      }
    }
    rows.push({
      deviceClass: g.cls,
      modelId,
      version,
      devices: g.devices.sort(),
      measuredMs,
      seqLen,
      seqLenReported,
      rooflineMs,
      tableMs,
      rooflineError: rooflineMs === null ? null : (rooflineMs - measuredMs) / measuredMs,
      tableError: tableMs === null ? null : (tableMs - measuredMs) / measuredMs,
      notes,
    });
  }
  return rows;
}
