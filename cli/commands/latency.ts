// `fleetlm benchmark --group G`: the fleet times a grid of layer microbenchmarks (one benchmark@1 job per
// device). `fleetlm latency --group G`: merges the uploaded tables per device class into the table
// `fleetlm search --group` reads; `--check` compares predicted and reported decode latency.
import type { Command } from 'commander';
import { ValidationError } from '../../common/errors.ts';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { parseDurationMs } from '../../common/units.ts';
import { type GridFamily, type GridStorage } from '../../models/benchmark/grid-file.ts';
import { readLatencyTable, type LayerLatencyTable } from '../../models/search/latency-table.ts';
import { createBenchmarkRollout, listBenchmarkRuns, readRunTables, runsToMerge, type BenchmarkRolloutRequest, type BenchmarkRun } from '../../fleet/benchmark-rollout.ts';
import { watchJob } from '../../fleet/fleet-status.ts';
import { listThingNames } from '../../fleet/fleet-inventory.ts';
import { CHECK_GOAL, latencyCheck, specOfManifest, storageOfManifest, type DeployedVersion } from '../../fleet/latency-check.ts';
import { mergeLatencyTables, type MergedClass } from '../../fleet/latency-merge.ts';
import { getMergedTable, mergedTableKey, putMergedTable } from '../../fleet/latency-tables.ts';
import { createIotClient, createS3Client } from '../../fleet/profile.ts';
import { readPublishedVersion } from '../../fleet/publisher.ts';
import { FAMILY_FLAG_CHOICES, parseFamilyFlag } from '../family-flag.ts';
import { out, profileFrom, readTelemetryFor, signerFor, table, withProfile, type CommonOpts } from './fleet.ts';

function numberList(text: string, what: string, integer = true): number[] {
  const v = text.split(',').map((s) => Number(s.trim()));
  if (v.length === 0 || v.some((x) => !Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x)))) {
    throw new ValidationError(`${what} must be a comma-separated list of positive ${integer ? 'integers' : 'numbers'}; got '${text}'`);
  }
  return v;
}

function intOpt(text: string | undefined, what: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isInteger(v) || v < min || v > max) throw new ValidationError(`${what} must be an integer in ${min}..${max}; got '${text}'`);
  return v;
}

function pct(x: number | null): string {
  return x === null ? '-' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
}

export interface BenchmarkOpts extends CommonOpts {
  group: string;
  device: string;
  storage?: string;
  family?: string;
  kvHeads?: string;
  widths?: string;
  ffnRatios?: string;
  heads?: string;
  headDim?: string;
  vocab?: string;
  kvLengths?: string;
  samples?: string;
  warmup?: string;
  threads?: string;
  timeLimit?: string;
  idleQuiet?: string;
  timeoutMinutes?: string;
  key?: string;
  kmsKey?: string;
  wait?: string | boolean;
}

interface LatencyOpts extends CommonOpts {
  group: string;
  run?: string;
  out?: string;
  outlierFactor?: string;
  check?: boolean;
}

/**
 * The grid `fleetlm benchmark` flags ask for (validated). Every spelling of a family gives the same grid, so the
 * same job documents and grid version: a gpt2 grid carries no family at all, as before families existed.
 */
export function benchmarkGridOf(o: Pick<BenchmarkOpts, 'storage' | 'family' | 'kvHeads' | 'widths' | 'ffnRatios' | 'heads' | 'headDim' | 'vocab'>): BenchmarkRolloutRequest['grid'] {
  const storage = (o.storage ?? 'fp32') as GridStorage;
  if (!['fp32', 'int8', 'int4'].includes(storage)) throw new ValidationError(`--storage must be fp32, int8 or int4; got '${o.storage}'`);
  const family: GridFamily = parseFamilyFlag(o.family) ?? 'gpt2';
  if (o.kvHeads !== undefined && family !== 'llama') throw new ValidationError('--kv-heads needs --family llama (a gpt2 layer has as many K/V heads as query heads)');
  const kvHeads = o.kvHeads !== undefined ? numberList(o.kvHeads, '--kv-heads') : undefined;
  return {
    widths: o.widths ? numberList(o.widths, '--widths') : [128, 256, 512, 768],
    ffnRatios: o.ffnRatios ? numberList(o.ffnRatios, '--ffn-ratios', false) : [4],
    ...(o.heads ? { heads: numberList(o.heads, '--heads') } : {}),
    headDim: intOpt(o.headDim, '--head-dim', 1, 1024, 64),
    vocabSize: intOpt(o.vocab, '--vocab', 1, 10_000_000, 50257),
    storage,
    ...(family === 'llama' ? { family, ...(kvHeads ? { kvHeads } : {}) } : {}),
  };
}

/** Registers `benchmark` and `latency`. */
export function register(program: Command): void {
  withProfile(
    program
      .command('benchmark')
      .description('Time a grid of layer microbenchmarks on every device of a group (one benchmark job per device)')
      .requiredOption('--group <group>', 'thing group to benchmark')
      .requiredOption('--device <class>', 'device class the tables are for (a device profile id such as rpi4)')
      .option('--storage <type>', 'weight storage of the grid: fp32, int8 or int4 (default fp32)')
      .option('--family <family>', `layer family of the grid: ${FAMILY_FLAG_CHOICES}`)
      .option('--kv-heads <list>', 'llama: K/V head counts, each timed with the head counts it divides (default: as many as the query heads)')
      .option('--widths <list>', 'block widths (default 128,256,512,768)')
      .option('--ffn-ratios <list>', 'FFN ratios (default 4)')
      .option('--heads <list>', 'query head counts (default: width / head dim)')
      .option('--head-dim <n>', 'head dimension (default 64)')
      .option('--vocab <n>', 'vocabulary of the per-model cost files (default 50257)')
      .option('--kv-lengths <list>', 'KV lengths each layer is timed at; the first is the table seqLen (default 64,256)')
      .option('--samples <n>', 'timed decode steps per file and KV length (default 15)')
      .option('--warmup <n>', 'untimed steps first (default 3)')
      .option('--threads <n>', 'onnxruntime threads on the device (default 0: all cores)')
      .option('--time-limit <duration>', 'the benchmark stops after this long on a device (default 300s)')
      .option('--idle-quiet <duration>', 'measure only after the local API has been quiet this long (default 2s)')
      .option('--timeout-minutes <n>', 'minutes a device may take once it started (default 60)')
      .option('--key <pem>', 'signing key for the grid bundle (local)')
      .option('--kms-key <arn>', 'KMS signing key for the grid bundle')
      .option('--wait [seconds]', 'wait until every device finished (optionally at most this long)'),
  ).action(async (o: BenchmarkOpts) => {
    const grid = benchmarkGridOf(o);
    const timeLimitMs = o.timeLimit === undefined ? 300_000 : parseDurationMs(o.timeLimit, '--time-limit');
    const idleQuietMs = o.idleQuiet === undefined ? 2000 : parseDurationMs(o.idleQuiet, '--idle-quiet');
    const profile = await profileFrom(o);
    const iot = createIotClient(profile);
    const s3 = createS3Client(profile);
    const log = (l: string): void => void (o.json ? undefined : process.stderr.write(`${l}\n`));
    const run = await createBenchmarkRollout(iot, s3, profile, {
      group: o.group,
      deviceClass: o.device,
      grid,
      kvLengths: o.kvLengths ? numberList(o.kvLengths, '--kv-lengths') : [64, 256],
      samples: intOpt(o.samples, '--samples', 1, 1000, 15),
      warmup: intOpt(o.warmup, '--warmup', 0, 100, 3),
      threads: intOpt(o.threads, '--threads', 0, 64, 0),
      timeLimitSec: Math.max(1, Math.round(timeLimitMs / 1000)),
      idleQuietMs,
      timeoutMinutes: intOpt(o.timeoutMinutes, '--timeout-minutes', 1, 10080, 60),
      signer: signerFor(o, profile),
      onProgress: log,
    });
    let finished: Array<{ thingName: string; status: string; details: Record<string, string> }> | undefined;
    if (o.wait !== undefined) {
      const timeoutMs = typeof o.wait === 'string' ? Number(o.wait) * 1000 : undefined;
      if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new ValidationError(`--wait must be a positive number of seconds; got '${String(o.wait)}'`);
      finished = [];
      for (const j of run.jobs) {
        const p = await watchJob(iot, j.jobId, { timeoutMs, intervalMs: 1000 });
        const d = p.devices.find((x) => x.thingName === j.thingName);
        finished.push({ thingName: j.thingName, status: d?.status ?? p.status, details: d?.statusDetails ?? {} });
      }
    }
    out(o, { run, finished }, () =>
      [
        `benchmark ${run.runId}: ${run.jobs.length} device(s) in ${run.group}, class ${run.deviceClass}, ${run.storage}${run.family ? ` ${run.family}` : ''}, grid ${run.grid.modelId}@${run.grid.version} (${run.grid.files} files, ${(run.grid.bytes / 1e6).toFixed(1)} MB)`,
        ...(finished
          ? finished.map((f) => `  ${f.thingName}: ${f.status}${f.details.reason ? ` (${f.details.reason})` : f.details.layers ? ` (${f.details.layers} layer figures, complete ${f.details.complete})` : ''}`)
          : [`then: fleetlm latency --group ${run.group}`]),
      ].join('\n'),
    );
  });

  withProfile(
    program
      .command('latency')
      .description('Merge the fleet-measured layer latencies of a group per device class (--check: predicted vs reported decode latency)')
      .requiredOption('--group <group>', 'thing group')
      .option('--run <id>', 'benchmark run to merge (default: the group\'s newest); the newest run of each other layer family for its class joins in')
      .option('--out <file>', 'also write the merged table (one class) or tables (a JSON array) here')
      .option('--outlier-factor <x>', 'a device whose figures are this many times off its class median is an outlier (default 1.3)')
      .option('--check', 'compare predicted and reported decode latency of every deployed version'),
  ).action(async (o: LatencyOpts) => {
    const profile = await profileFrom(o);
    const s3 = createS3Client(profile);
    const bucket = profile.s3.bucket;
    const runs = await listBenchmarkRuns(s3, bucket, o.group);
    if (o.check) {
      await check(o, profile, s3, runs);
      return;
    }
    const run = o.run ? runs.find((r) => r.runId === o.run) : runs[0];
    if (!run) throw new ValidationError(o.run ? `no benchmark run ${o.run} for group ${o.group}` : `no benchmark run for group ${o.group}: run \`fleetlm benchmark --group ${o.group} --device <class>\` first`);
    // The newest run of each other layer family for the same class joins in (one table holds every family).
    const merging = runsToMerge(runs, run);
    const tables: unknown[] = [];
    let missing: string[] = [];
    for (const r of merging) {
      const read = await readRunTables(s3, bucket, r);
      tables.push(...read.tables);
      if (r === run) missing = read.missing;
    }
    const factor = o.outlierFactor === undefined ? undefined : Number(o.outlierFactor);
    const merged = mergeLatencyTables(tables, { outlierFactor: factor });
    const keys: string[] = [];
    for (const m of merged) {
      const key = mergedTableKey(o.group, m.deviceClass, m.storage);
      await putMergedTable(s3, bucket, key, m.table);
      keys.push(`s3://${bucket}/${key}`);
    }
    if (o.out) await writeJsonAtomic(o.out, merged.length === 1 ? merged[0]!.table : merged.map((m) => m.table));
    const also = merging.slice(1);
    out(o, { runId: run.runId, ...(also.length ? { alsoMerged: also.map((r) => r.runId) } : {}), missing, classes: merged.map((m, i) => ({ ...summary(m), key: keys[i] })) }, () =>
      describeMerge(run, also, merged, keys, missing),
    );
  });
}

function summary(m: MergedClass): Record<string, unknown> {
  const spreads = [...m.table.layers, ...m.table.heads].map((e) => e.spread?.relMad ?? 0);
  return {
    deviceClass: m.deviceClass,
    storage: m.storage,
    devices: m.devices,
    outliers: m.outliers,
    notes: m.notes,
    layers: m.table.layers.length,
    heads: m.table.heads.length,
    seqLen: m.table.seqLen,
    medianRelMad: spreads.length ? [...spreads].sort((a, b) => a - b)[spreads.length >> 1] : 0,
  };
}

function describeMerge(run: BenchmarkRun, also: readonly BenchmarkRun[], merged: readonly MergedClass[], keys: readonly string[], missing: readonly string[]): string {
  const lines = [
    `benchmark ${run.runId} (${run.group}): ${run.jobs.length - missing.length} of ${run.jobs.length} device tables uploaded${missing.length ? `; missing: ${missing.join(', ')}` : ''}${also.map((r) => `; with ${r.family ?? 'gpt2'} run ${r.runId}`).join('')}`,
  ];
  merged.forEach((m, i) => {
    const s = summary(m);
    lines.push(
      `${m.deviceClass} (${m.storage}): median of ${m.devices.length} device(s) [${m.devices.join(', ')}], ${s.layers} layer and ${s.heads} per-model entries at KV ${m.table.seqLen}, median spread (MAD/median) ${((s.medianRelMad as number) * 100).toFixed(1)}%${m.table.complete === false ? ', some runs stopped at their time limit' : ''}`,
    );
    for (const x of m.outliers) lines.push(`  outlier ${x.thingName}: ${x.reason} (left out)`);
    for (const n of m.notes) lines.push(`  note: ${n}`);
    lines.push(`  -> ${keys[i]}  (fleetlm search --group ${run.group} --device ${m.deviceClass}${m.storage === 'fp32' ? '' : ` --weight-bits ${m.storage.slice(3)}`})`);
  });
  return lines.join('\n');
}

async function check(o: LatencyOpts, profile: Awaited<ReturnType<typeof profileFrom>>, s3: ReturnType<typeof createS3Client>, runs: readonly BenchmarkRun[]): Promise<void> {
  const bucket = profile.s3.bucket;
  const things = new Set(await listThingNames(createIotClient(profile), o.group));
  // A device's class is the one its newest benchmark run named.
  const classOf = new Map<string, string>();
  for (const r of [...runs].reverse()) for (const j of r.jobs) classOf.set(j.thingName, r.deviceClass);
  const telemetry = (await readTelemetryFor(profile)).filter((t) => things.has(t.thingName));
  const tables = new Map<string, LayerLatencyTable[]>();
  for (const cls of new Set(classOf.values())) {
    for (const storage of ['fp32', 'int8', 'int4']) {
      const value = await getMergedTable(s3, bucket, mergedTableKey(o.group, cls, storage));
      if (value !== null) tables.set(cls, [...(tables.get(cls) ?? []), readLatencyTable(value, `s3://${bucket}/${mergedTableKey(o.group, cls, storage)}`)]);
    }
  }
  const refs = new Set(telemetry.filter((t) => t.model).map((t) => `${t.model!.modelId}@${t.model!.version}`));
  const versions: DeployedVersion[] = [];
  for (const ref of refs) {
    const [modelId, version] = ref.split('@') as [string, string];
    const m = (await readPublishedVersion(s3, bucket, modelId, version)).manifest;
    const spec = specOfManifest(m.arch);
    if (spec) versions.push({ modelId, version, spec, storage: storageOfManifest(m.compression) });
  }
  const rows = latencyCheck({ telemetry, versions, classOf, tables });
  out(o, { goal: CHECK_GOAL, rows }, () =>
    rows.length === 0
      ? `no deployed version in ${o.group} reports decode speed yet`
      : [
          table(
            ['class', 'version', 'devices', 'KV', 'reported ms', 'roofline ms', 'error', 'table ms', 'error', `within ${CHECK_GOAL * 100}%`],
            rows.map((r) => [
              r.deviceClass,
              `${r.modelId}@${r.version}`,
              r.devices.length,
              `${r.seqLen} (${r.seqLenReported ? 'devices' : 'table'})`,
              r.measuredMs,
              r.rooflineMs,
              pct(r.rooflineError),
              r.tableMs,
              pct(r.tableError),
              r.tableError === null ? '-' : Math.abs(r.tableError) <= CHECK_GOAL ? 'yes' : 'no',
            ]),
          ),
          ...rows.flatMap((r) => r.notes.map((n) => `note (${r.deviceClass} ${r.modelId}@${r.version}): ${n}`)),
        ].join('\n'),
  );
}
