// The demo's fleet-latency stages: its devices time a small int4/fp32 layer grid (benchmark@1 jobs), the
// tables merge into the table the search designs against, and after the rollout the report shows the
// decode latency each model predicted against what the devices report.
import type { IoTClient } from '@aws-sdk/client-iot';
import type { S3Client } from '@aws-sdk/client-s3';
import { TransportError } from '../common/errors.ts';
import type { ManifestSigner } from '../contracts/manifest-signing.ts';
import type { Telemetry } from '../contracts/telemetry.ts';
import { createBenchmarkRollout, readRunTables, type BenchmarkRun } from '../fleet/benchmark-rollout.ts';
import { watchJob } from '../fleet/fleet-status.ts';
import { CHECK_GOAL, latencyCheck, type CheckRow } from '../fleet/latency-check.ts';
import { mergeLatencyTables, type MergedClass } from '../fleet/latency-merge.ts';
import { mergedTableKey, putMergedTable } from '../fleet/latency-tables.ts';
import type { FleetProfile } from '../fleet/profile.ts';
import type { ArchSpec } from '../models/arch/spec.ts';
import type { WeightStorage } from '../models/arch/weight-storage.ts';
import type { GridStorage } from '../models/benchmark/grid-file.ts';
import { layerGridOf, type LayerGrid } from '../models/benchmark/grid.ts';

/**
 * The demo's timing settings, and the grid it uses when it ships no known design (--searched): GPT-2
 * layers at two widths, the demo vocabulary, two KV lengths.
 */
export const DEMO_BENCHMARK = {
  widths: [128, 256],
  ffnRatios: [4],
  headDim: 64,
  vocabSize: 4096,
  /** The first is the completions' context (prompt + reply); the second the demo's context length. */
  kvLengths: [32, 128],
  samples: 15,
  warmup: 2,
  /** The agents serve with one thread; the benchmark times with the same. */
  threads: 1,
  timeLimitSec: 30,
} as const;

/**
 * The grid that times the layers of `spec` itself (layerGridOf), so the table prices the shipped model
 * from its own entries; the default grid without a spec, or when its blocks mix head widths.
 */
export function demoGridFor(spec: ArchSpec | undefined): LayerGrid {
  const fallback: LayerGrid = { widths: [...DEMO_BENCHMARK.widths], ffnRatios: [...DEMO_BENCHMARK.ffnRatios], headDim: DEMO_BENCHMARK.headDim, vocabSize: DEMO_BENCHMARK.vocabSize };
  if (!spec) return fallback;
  return layerGridOf(spec) ?? { ...fallback, vocabSize: spec.vocabSize };
}

export interface FleetBenchmark {
  run: BenchmarkRun;
  merged: MergedClass;
  tableUrl: string;
}

/** Benchmarks every device of the group, waits for them, merges and stores the class table. */
export async function benchmarkFleet(o: {
  iot: IoTClient;
  s3: S3Client;
  profile: FleetProfile;
  group: string;
  /** The group's devices; benchmarked one after another. */
  things: readonly string[];
  deviceClass: string;
  storage: GridStorage;
  /** The layers to time (default: DEMO_BENCHMARK's grid). */
  grid?: LayerGrid;
  signer: ManifestSigner;
  jobTimeoutMs: number;
  log: (line: string) => void;
}): Promise<FleetBenchmark> {
  const { kvLengths, samples, warmup, threads, timeLimitSec } = DEMO_BENCHMARK;
  const grid = o.grid ?? demoGridFor(undefined);
  // The demo's devices share this machine's cores, which real devices do not: they take turns, one run each.
  const tables: unknown[] = [];
  let run: BenchmarkRun | undefined;
  for (const thing of o.things) {
    run = await createBenchmarkRollout(o.iot, o.s3, o.profile, {
      group: o.group,
      things: [thing],
      deviceClass: o.deviceClass,
      grid: { ...grid, storage: o.storage },
      kvLengths: [...kvLengths],
      samples,
      warmup,
      threads,
      timeLimitSec,
      idleQuietMs: 0,
      timeoutMinutes: 5,
      signer: o.signer,
    });
    if (tables.length === 0) o.log(`    grid ${run.grid.modelId}@${run.grid.version} (${run.grid.files} files), one job per device in turn (they share this machine's cores), time limit ${timeLimitSec} s`);
    for (const j of run.jobs) {
      const p = await watchJob(o.iot, j.jobId, { timeoutMs: o.jobTimeoutMs, intervalMs: 250 });
      const d = p.devices.find((x) => x.thingName === j.thingName);
      if (d?.status !== 'SUCCEEDED') throw new TransportError(`benchmark on ${j.thingName} ended ${d?.status ?? p.status}: ${JSON.stringify(d?.statusDetails ?? {})}`);
    }
    const r = await readRunTables(o.s3, o.profile.s3.bucket, run);
    if (r.missing.length > 0) throw new TransportError(`benchmark table missing from ${r.missing.join(', ')}`);
    tables.push(...r.tables);
  }
  const merged = mergeLatencyTables(tables).find((m) => m.deviceClass === o.deviceClass)!;
  const key = mergedTableKey(o.group, merged.deviceClass, merged.storage);
  await putMergedTable(o.s3, o.profile.s3.bucket, key, merged.table);
  return { run: run!, merged, tableUrl: `s3://${o.profile.s3.bucket}/${key}` };
}

/** One line per merged table, for the stage's summary. */
export function describeBenchmark(b: FleetBenchmark): string {
  const t = b.merged.table;
  const outliers = b.merged.outliers.length ? `; outliers: ${b.merged.outliers.map((x) => `${x.thingName} (${x.reason})`).join(', ')}` : '';
  return `${t.layers.length} layer and ${t.heads.length} per-model entries (${b.merged.storage}, KV ${[...new Set(t.layers.map((l) => l.seqLen))].join('/')}), median of ${b.merged.devices.length} devices -> ${b.tableUrl}${outliers}`;
}

/** Predicted (roofline, measured table) vs reported decode latency of the shipped version. */
export function latencyReport(o: {
  telemetry: readonly Telemetry[];
  modelId: string;
  version: string;
  spec: ArchSpec;
  storage: WeightStorage | null;
  things: readonly string[];
  deviceClass: string;
  table: MergedClass['table'];
}): { rows: CheckRow[]; text: string } {
  const rows = latencyCheck({
    telemetry: o.telemetry,
    versions: [{ modelId: o.modelId, version: o.version, spec: o.spec, storage: o.storage }],
    classOf: new Map(o.things.map((t) => [t, o.deviceClass])),
    tables: new Map([[o.deviceClass, [o.table]]]),
  }).filter((r) => r.modelId === o.modelId && r.version === o.version);
  const pct = (x: number | null): string => (x === null ? '-' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(0)}%`);
  const lines = rows.map(
    (r) =>
      `${r.deviceClass} ${r.modelId}@${r.version} on ${r.devices.length} devices, KV ${r.seqLen} (${r.seqLenReported ? 'the devices\' decode context' : 'the table\'s'}): reported ${r.measuredMs.toFixed(2)} ms/token; ` +
      `measured table ${r.tableMs?.toFixed(2) ?? '-'} ms (${pct(r.tableError)}${r.tableError !== null ? (Math.abs(r.tableError) <= CHECK_GOAL ? `, within ${CHECK_GOAL * 100}%` : `, outside ${CHECK_GOAL * 100}%`) : ''}), ` +
      `roofline ${r.rooflineMs?.toFixed(2) ?? '-'} ms (${pct(r.rooflineError)})${r.notes.length ? `; ${r.notes.join('; ')}` : ''}`,
  );
  return { rows, text: lines.join('\n') || 'no device reported decode speed' };
}
