// Merges the layer-latency tables devices uploaded into one table per device class and weight storage:
// each entry is the median of the devices' figures with their spread; a device whose figures sit far
// from its class (a throttled board, a background load, another onnxruntime) is named and left out.
// Layer families (gpt2, llama at each K/V head count) are separate entries, never one median.
import { ValidationError } from '../common/errors.ts';
import { entryFamilyOf, entryKvHeadsOf, parseLatencyTable, readLatencyTable, type LayerLatencyTable } from '../models/search/latency-table.ts';

/** A device is an outlier when its median ratio to the class median is beyond this factor either way. */
export const DEFAULT_OUTLIER_FACTOR = 1.3;
/** Devices a class needs before any can be called an outlier (with two, neither is the odd one out). */
export const MIN_DEVICES_FOR_OUTLIERS = 3;

export interface MergeOptions {
  outlierFactor?: number;
}

/** One merged class: the table the search reads, and what went into it. */
export interface MergedClass {
  deviceClass: string;
  storage: string;
  table: LayerLatencyTable;
  devices: string[];
  outliers: Array<{ thingName: string; ratio: number; reason: string }>;
  /** Device tables left out before merging (wrong class key, incomplete provenance), with why. */
  notes: string[];
}

function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

type Keyed = { key: string; ms: number };
// gpt2 keys are the keys of old tables; other families add their name (and llama its K/V heads).
const layerKey = (t: LayerLatencyTable, l: LayerLatencyTable['layers'][number]): string =>
  entryFamilyOf(l) === 'gpt2'
    ? `L ${l.width}/${l.ffnWidth}/${l.heads}/${l.headDim}@${l.seqLen ?? t.seqLen}`
    : `L ${entryFamilyOf(l)} ${l.width}/${l.ffnWidth}/${l.heads}/${entryKvHeadsOf(l)}/${l.headDim}@${l.seqLen ?? t.seqLen}`;
const headKey = (t: LayerLatencyTable, h: LayerLatencyTable['heads'][number]): string =>
  `H ${entryFamilyOf(h) === 'gpt2' ? '' : `${entryFamilyOf(h)} `}${h.width}/${h.vocabSize}@${h.seqLen ?? t.seqLen}`;
/** The family fields a merged entry carries: none for gpt2 (merged tables read as before). */
const layerFamily = (l: LayerLatencyTable['layers'][number]): Record<string, unknown> => (entryFamilyOf(l) === 'gpt2' ? {} : { family: entryFamilyOf(l), kvHeads: entryKvHeadsOf(l) });
const headFamily = (h: LayerLatencyTable['heads'][number]): Record<string, unknown> => (entryFamilyOf(h) === 'gpt2' ? {} : { family: entryFamilyOf(h) });

function entriesOf(t: LayerLatencyTable): Keyed[] {
  return [...t.layers.map((l) => ({ key: layerKey(t, l), ms: l.ms })), ...t.heads.map((h) => ({ key: headKey(t, h), ms: h.ms }))];
}

/** Median over entries of (device figure / reference figure), on the entries both have; null when none are shared. */
function ratioTo(t: LayerLatencyTable, reference: ReadonlyMap<string, number>): number | null {
  const r = entriesOf(t)
    .filter((e) => reference.has(e.key))
    .map((e) => e.ms / reference.get(e.key)!);
  return r.length > 0 ? median(r) : null;
}

function medianByKey(tables: readonly LayerLatencyTable[]): Map<string, number> {
  const by = new Map<string, number[]>();
  for (const t of tables) for (const e of entriesOf(t)) by.set(e.key, [...(by.get(e.key) ?? []), e.ms]);
  return new Map([...by].map(([k, v]) => [k, median(v)]));
}

function describeOutlier(t: LayerLatencyTable, ratio: number, majorityBoard: string, majorityOrt: string): string {
  const parts = [`${ratio >= 1 ? `${ratio.toFixed(2)}x slower` : `${(1 / ratio).toFixed(2)}x faster`} than the class median`];
  const m = t.measuredOn;
  if (m) {
    if (m.board !== majorityBoard) parts.push(`board ${m.board} (class: ${majorityBoard})`);
    if (m.onnxruntime !== majorityOrt) parts.push(`onnxruntime ${m.onnxruntime} (class: ${majorityOrt})`);
    if (m.thermal.endC !== null) parts.push(`${m.thermal.endC.toFixed(0)} °C at the end`);
    parts.push(`load ${m.loadAvg1m.toFixed(2)}`);
    if (t.complete === false) parts.push('incomplete run');
  }
  return parts.join(', ');
}

function mostCommon(values: readonly string[]): string {
  const n = new Map<string, number>();
  for (const v of values) n.set(v, (n.get(v) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0] ?? '';
}

/**
 * One device's tables of several runs (a gpt2 and a llama grid are two benchmark runs) as one table of
 * that device, so the device counts once: entries joined by key, a key in both taken from the newer
 * table. Tables without a device name, and devices with one table, are returned as they are.
 */
function joinByDevice(tables: readonly LayerLatencyTable[]): LayerLatencyTable[] {
  const byDevice = new Map<string, LayerLatencyTable[]>();
  const out: LayerLatencyTable[] = [];
  for (const t of tables) {
    const name = t.measuredOn?.thingName;
    if (name === undefined) out.push(t);
    else byDevice.set(name, [...(byDevice.get(name) ?? []), t]);
  }
  for (const list of byDevice.values()) {
    if (list.length === 1) {
      out.push(list[0]!);
      continue;
    }
    // Oldest first, so a newer table's entry replaces an older one of the same key.
    const ordered = [...list].sort((a, b) => (a.measuredAt ?? '').localeCompare(b.measuredAt ?? ''));
    const layers = new Map<string, LayerLatencyTable['layers'][number]>();
    const heads = new Map<string, LayerLatencyTable['heads'][number]>();
    for (const t of ordered) {
      for (const l of t.layers) layers.set(layerKey(t, l), { ...l, seqLen: l.seqLen ?? t.seqLen });
      for (const h of t.heads) heads.set(headKey(t, h), { ...h, seqLen: h.seqLen ?? t.seqLen });
    }
    const newest = ordered[ordered.length - 1]!;
    out.push({ ...newest, complete: list.every((t) => t.complete !== false), layers: [...layers.values()], heads: [...heads.values()] });
  }
  return out;
}

/**
 * Merges device tables (already validated or raw JSON values) per (device class, storage). A device's
 * tables from several runs (one per layer family) count as one device. Throws
 * ValidationError when there is no table. Deterministic: the same tables give the same output.
 */
export function mergeLatencyTables(inputs: readonly unknown[], o: MergeOptions = {}): MergedClass[] {
  const factor = o.outlierFactor ?? DEFAULT_OUTLIER_FACTOR;
  if (!(factor > 1)) throw new ValidationError(`outlier factor must be above 1; got ${factor}`);
  const tables = inputs.map((v, i) => {
    try {
      // Uploaded by agents of any version: fields this version does not know are dropped (readLatencyTable).
      return readLatencyTable(v);
    } catch (err) {
      throw new ValidationError(`device table ${i + 1}: ${(err as Error).message}`, { cause: err });
    }
  });
  if (tables.length === 0) throw new ValidationError('no device latency tables to merge: run `fleetlm benchmark --group G` and wait for the devices to finish');
  const classes = new Map<string, LayerLatencyTable[]>();
  for (const t of tables) {
    const key = `${t.device}\u0000${t.storage ?? `${t.bytesPerWeight * 8}-bit`}`;
    classes.set(key, [...(classes.get(key) ?? []), t]);
  }
  const out: MergedClass[] = [];
  for (const [key, uploaded] of [...classes].sort((a, b) => a[0].localeCompare(b[0]))) {
    const [deviceClass, storage] = key.split('\u0000') as [string, string];
    const runIds = [...new Set(uploaded.map((t) => t.measuredOn?.runId).filter((r): r is string => !!r))].sort();
    const group = joinByDevice(uploaded);
    group.sort((a, b) => (a.measuredOn?.thingName ?? '').localeCompare(b.measuredOn?.thingName ?? ''));
    const notes: string[] = [];
    const seqLen = Number(mostCommon(group.map((t) => String(t.seqLen))));
    const reference = medianByKey(group);
    const majorityBoard = mostCommon(group.map((t) => t.measuredOn?.board ?? ''));
    const majorityOrt = mostCommon(group.map((t) => t.measuredOn?.onnxruntime ?? ''));
    const outliers: MergedClass['outliers'] = [];
    const kept: LayerLatencyTable[] = [];
    for (const t of group) {
      const name = t.measuredOn?.thingName ?? '(unnamed table)';
      const ratio = ratioTo(t, reference);
      if (ratio === null) {
        notes.push(`${name}: no entry in common with the class; left out`);
        continue;
      }
      if (group.length >= MIN_DEVICES_FOR_OUTLIERS && (ratio > factor || ratio < 1 / factor)) {
        outliers.push({ thingName: name, ratio, reason: describeOutlier(t, ratio, majorityBoard, majorityOrt) });
        continue;
      }
      kept.push(t);
    }
    // Per entry: the median of the kept devices' figures, with min, max and relative MAD.
    const by = new Map<string, { values: number[]; samples: number; make: (ms: number) => Record<string, unknown> }>();
    const add = (k: string, ms: number, samples: number | undefined, make: (ms: number) => Record<string, unknown>): void => {
      const cur = by.get(k) ?? { values: [], samples: 0, make };
      cur.values.push(ms);
      cur.samples += samples ?? 1;
      by.set(k, cur);
    };
    for (const t of kept) {
      for (const l of t.layers) add(layerKey(t, l), l.ms, l.samples, (ms) => ({ width: l.width, ffnWidth: l.ffnWidth, heads: l.heads, headDim: l.headDim, seqLen: l.seqLen ?? t.seqLen, ms, ...layerFamily(l) }));
      for (const h of t.heads) add(headKey(t, h), h.ms, h.samples, (ms) => ({ width: h.width, vocabSize: h.vocabSize, seqLen: h.seqLen ?? t.seqLen, ms, ...headFamily(h) }));
    }
    const layers: unknown[] = [];
    const heads: unknown[] = [];
    for (const [k, e] of [...by].sort((a, b) => a[0].localeCompare(b[0], 'en', { numeric: true }))) {
      const m = median(e.values);
      const relMad = m > 0 ? median(e.values.map((v) => Math.abs(v - m))) / m : 0;
      const entry = { ...e.make(m), samples: e.samples, spread: { devices: e.values.length, min: Math.min(...e.values), max: Math.max(...e.values), relMad } };
      (k.startsWith('L ') ? layers : heads).push(entry);
    }
    const first = group[0]!;
    const table = parseLatencyTable({
      format: 'fleetlm/layer-latency@1',
      device: deviceClass,
      ...(first.unit ? { unit: first.unit } : {}),
      seqLen,
      bytesPerWeight: first.bytesPerWeight,
      ...(first.storage ? { storage: first.storage } : {}),
      measuredAt: group.map((t) => t.measuredAt ?? '').sort().pop() || undefined,
      complete: kept.every((t) => t.complete !== false),
      mergedFrom: {
        runIds,
        devices: kept.map((t) => ({ thingName: t.measuredOn?.thingName ?? '', board: t.measuredOn?.board ?? '', onnxruntime: t.measuredOn?.onnxruntime ?? '' })),
        outliers,
      },
      layers,
      heads,
    });
    out.push({ deviceClass, storage, table, devices: kept.map((t) => t.measuredOn?.thingName ?? ''), outliers, notes });
  }
  return out;
}
