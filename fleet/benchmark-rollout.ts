// `fleetlm benchmark`: builds the microbenchmark grid on the operator's machine, publishes it as a
// signed bundle (content-addressed: the same grid is published once), and sends each device of a group
// its own benchmark@1 job with a presigned PUT for its own table key (IoT Jobs presign only GETs, and one
// job document serves every target, so per-device upload URLs need per-device jobs). Then reads the
// uploaded tables back for `fleetlm latency`.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateJobCommand, DescribeThingCommand, type IoTClient } from '@aws-sdk/client-iot';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listKeys } from './s3-list.ts';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { TransportError, ValidationError } from '../common/errors.ts';
import { BENCHMARK_GRID_MODEL_ID, BENCHMARK_SCHEMA, BenchmarkDocumentSchema, type BenchmarkDocument, type BenchmarkModelInput } from '../contracts/benchmark-job.ts';
import { MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, modelPrefix } from '../contracts/manifest.ts';
import type { ManifestSigner } from '../contracts/manifest-signing.ts';
import { parseWith } from '../common/validate.ts';
import { buildGridFiles, planGrid, type GridFile, type GridOptions, type GridStorage } from '../models/benchmark/grid.ts';
import { checkJobConfig } from './job-limits.ts';
import { presignedPlaceholder, type FleetProfile } from './profile.ts';
import { isPublished, publishBundle, readPublishedVersion } from './publisher.ts';
import { describeGroup } from './rollout.ts';

/** Where device tables and run records live in the artifact bucket. */
export const BENCHMARK_PREFIX = 'benchmarks/';

export interface BenchmarkRolloutRequest {
  group: string;
  deviceClass: string;
  grid: Omit<GridOptions, 'maxKvLength'>;
  kvLengths: number[];
  samples: number;
  warmup: number;
  threads: number;
  timeLimitSec: number;
  idleQuietMs: number;
  /** Minutes a device may take from IN_PROGRESS to its final status. */
  timeoutMinutes: number;
  signer: ManifestSigner;
  runId?: string;
  /** Only these members of the group (default: all of them). */
  things?: string[];
  onProgress?: (line: string) => void;
}

/** What `fleetlm benchmark` started. */
export interface BenchmarkRun {
  format: 'fleetlm/benchmark-run@1';
  runId: string;
  group: string;
  deviceClass: string;
  storage: GridStorage;
  /** Layer family of the grid; absent: gpt2 (runs recorded before families). */
  family?: 'llama';
  createdAt: string;
  grid: { modelId: string; version: string; files: number; bytes: number };
  jobs: Array<{ thingName: string; jobId: string; tableKey: string }>;
}

/** The S3 key a device's table goes to. */
export function deviceTableKey(runId: string, thingName: string): string {
  return `${BENCHMARK_PREFIX}${runId}/devices/${thingName}.json`;
}

/** A run id: sortable by time, valid in job ids. */
export function makeRunId(now = Date.now()): string {
  return `b${now.toString(36)}`;
}

/**
 * The version a grid is published under: storage plus a hash of everything that shapes its files. A
 * gpt2 grid hashes exactly as before families existed (its published bundle is found again).
 */
export function gridVersion(o: GridOptions): string {
  const { family, kvHeads, ...rest } = o;
  const llama = family === 'llama' ? { family, kvHeads: kvHeads ? [...kvHeads].sort() : null } : {};
  const h = createHash('sha256').update(JSON.stringify({ ...rest, widths: [...o.widths].sort(), ffnRatios: [...o.ffnRatios].sort(), heads: o.heads ? [...o.heads].sort() : null, ...llama })).digest('hex');
  return `${o.storage}-${h.slice(0, 16)}`;
}

/**
 * The benchmark@1 `models` entries of grid files. `family` and `kvHeads` only on llama files: agents
 * from before them refuse unknown fields, and a gpt2 grid is one any agent times.
 */
export function jobModelsOf(files: readonly GridFile[]): BenchmarkModelInput[] {
  return files.map(({ name, role, width, ffnWidth, heads, headDim, depth, vocabSize, family, kvHeads }) => ({
    name,
    role,
    width,
    ffnWidth,
    heads,
    headDim,
    depth,
    vocabSize,
    ...(family === 'llama' ? { family, kvHeads: kvHeads ?? heads } : {}),
  }));
}

/** Builds and publishes the grid unless that exact grid is already published; returns its version. */
async function publishGrid(s3: S3Client, profile: FleetProfile, o: GridOptions, signer: ManifestSigner, log: (l: string) => void): Promise<{ version: string; files: ReturnType<typeof planGrid> }> {
  const files = planGrid(o);
  const version = gridVersion(o);
  if (await isPublished(s3, profile.s3.bucket, BENCHMARK_GRID_MODEL_ID, version)) {
    log(`grid ${BENCHMARK_GRID_MODEL_ID}@${version} already published (${files.length} files)`);
    return { version, files };
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-grid-'));
  try {
    log(`building ${files.length} grid files (${o.storage}) ...`);
    await buildGridFiles(files, o, dir);
    await publishBundle({ s3, bucket: profile.s3.bucket, signer, modelDir: dir, modelId: BENCHMARK_GRID_MODEL_ID, version, entry: files[0]!.name, shipEveryModel: true });
    log(`published grid ${BENCHMARK_GRID_MODEL_ID}@${version}`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  return { version, files };
}

/** Publishes the grid and creates one benchmark@1 job per device of the group. */
export async function createBenchmarkRollout(iot: IoTClient, s3: S3Client, profile: FleetProfile, req: BenchmarkRolloutRequest): Promise<BenchmarkRun> {
  const log = req.onProgress ?? (() => {});
  if (!profile.presignRoleArn) throw new ValidationError('a presign role ARN is required for the grid download URLs: set presignRoleArn in the profile');
  const kvLengths = [...req.kvLengths];
  const gridOptions: GridOptions = { ...req.grid, maxKvLength: Math.max(...kvLengths) };
  const group = await describeGroup(iot, req.group);
  if (group.things.length === 0) throw new ValidationError(`thing group ${req.group} has no things to benchmark`);
  const { version, files } = await publishGrid(s3, profile, gridOptions, req.signer, log);
  const published = await readPublishedVersion(s3, profile.s3.bucket, BENCHMARK_GRID_MODEL_ID, version);
  const prefix = modelPrefix(BENCHMARK_GRID_MODEL_ID, version);
  const runId = req.runId ?? makeRunId();
  // The upload URL must outlive the queue, the download and the timing: the job timeout plus an hour.
  const uploadExpiresIn = Math.min(7 * 24 * 3600, req.timeoutMinutes * 60 + 3600);
  const jobs: BenchmarkRun['jobs'] = [];
  const members = new Set(group.things);
  const outside = (req.things ?? []).filter((t) => !members.has(t));
  if (outside.length > 0) throw new ValidationError(`not in thing group ${req.group}: ${outside.join(', ')}`);
  const things = [...(req.things ?? group.things)].sort();
  for (const [i, thingName] of things.entries()) {
    const tableKey = deviceTableKey(runId, thingName);
    const uploadUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: profile.s3.bucket, Key: tableKey, ContentType: 'application/json' }), { expiresIn: uploadExpiresIn });
    const document: BenchmarkDocument = parseWith(
      BenchmarkDocumentSchema,
      {
        schema: BENCHMARK_SCHEMA,
        runId,
        deviceClass: req.deviceClass,
        storage: req.grid.storage,
        modelId: BENCHMARK_GRID_MODEL_ID,
        version,
        manifest: { url: presignedPlaceholder(profile, prefix + MANIFEST_FILE), sha256: published.manifestSha256, size: published.manifestBytes.length },
        signature: { url: presignedPlaceholder(profile, prefix + MANIFEST_SIGNATURE_FILE) },
        artifacts: published.manifest.files.map((f) => ({ name: f.name, url: presignedPlaceholder(profile, prefix + f.name), sha256: f.sha256, size: f.size })),
        kvLengths,
        models: jobModelsOf(files),
        samples: req.samples,
        warmup: req.warmup,
        threads: req.threads,
        timeLimitSec: req.timeLimitSec,
        idleQuietMs: req.idleQuietMs,
        upload: { url: uploadUrl },
      },
      `${BENCHMARK_SCHEMA} job document`,
    );
    const arn = (await iot.send(new DescribeThingCommand({ thingName }))).thingArn;
    if (!arn) throw new TransportError(`DescribeThing ${thingName} returned no ARN`);
    const jobId = `fleetlm-bench-${runId}-${i}`;
    const config = checkJobConfig({
      timeoutConfig: { inProgressTimeoutInMinutes: req.timeoutMinutes },
      presignedUrlConfig: { roleArn: profile.presignRoleArn, expiresInSec: 3600 },
    });
    try {
      await iot.send(
        new CreateJobCommand({
          jobId,
          targets: [arn],
          document: JSON.stringify(document),
          description: `fleetlm benchmark ${runId} ${req.deviceClass} ${req.grid.storage}${req.grid.family === 'llama' ? ' llama' : ''} on ${thingName} in group ${req.group}`,
          ...config,
        }),
      );
    } catch (err) {
      throw new TransportError(`CreateJob ${jobId} failed: ${(err as Error).message}`, { cause: err });
    }
    jobs.push({ thingName, jobId, tableKey });
    log(`job ${jobId} -> ${thingName}`);
  }
  const run: BenchmarkRun = {
    format: 'fleetlm/benchmark-run@1',
    runId,
    group: req.group,
    deviceClass: req.deviceClass,
    storage: req.grid.storage,
    ...(req.grid.family === 'llama' ? { family: 'llama' as const } : {}),
    createdAt: new Date().toISOString(),
    grid: { modelId: BENCHMARK_GRID_MODEL_ID, version, files: files.length, bytes: published.manifest.files.reduce((n, f) => n + f.size, 0) },
    jobs,
  };
  await s3.send(new PutObjectCommand({ Bucket: profile.s3.bucket, Key: `${BENCHMARK_PREFIX}${runId}/run.json`, Body: JSON.stringify(run, null, 2), ContentType: 'application/json' }));
  return run;
}

async function getText(s3: S3Client, bucket: string, key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!out.Body) throw new TransportError(`s3://${bucket}/${key} has no body`);
  return out.Body.transformToString();
}

/** The benchmark runs recorded for a group, newest first. */
export async function listBenchmarkRuns(s3: S3Client, bucket: string, group: string): Promise<BenchmarkRun[]> {
  const keys = (await listKeys(s3, bucket, BENCHMARK_PREFIX)).filter((k) => k.endsWith('/run.json'));
  const runs: BenchmarkRun[] = [];
  for (const k of keys) {
    const run = JSON.parse(await getText(s3, bucket, k)) as BenchmarkRun;
    if (run.format === 'fleetlm/benchmark-run@1' && run.group === group) runs.push(run);
  }
  return runs.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.runId.localeCompare(a.runId));
}

/**
 * The runs `fleetlm latency` merges for `run`: itself, then for each other layer family the newest run
 * (of `runs`, newest first) of that family for the same device class and storage, so that merging a
 * llama run keeps the class's gpt2 entries in its table, and the reverse.
 */
export function runsToMerge(runs: readonly BenchmarkRun[], run: BenchmarkRun): BenchmarkRun[] {
  const familyOf = (r: BenchmarkRun): string => r.family ?? 'gpt2';
  const out = [run];
  const families = new Set([familyOf(run)]);
  for (const r of runs) {
    if (r.deviceClass !== run.deviceClass || r.storage !== run.storage || families.has(familyOf(r))) continue;
    families.add(familyOf(r));
    out.push(r);
  }
  return out;
}

/** The device tables of a run that have been uploaded so far (raw JSON values), and the devices still missing. */
export async function readRunTables(s3: S3Client, bucket: string, run: BenchmarkRun): Promise<{ tables: unknown[]; missing: string[] }> {
  const present = new Set(await listKeys(s3, bucket, `${BENCHMARK_PREFIX}${run.runId}/devices/`));
  const tables: unknown[] = [];
  const missing: string[] = [];
  for (const j of run.jobs) {
    if (!present.has(j.tableKey)) {
      missing.push(j.thingName);
      continue;
    }
    const value: unknown = JSON.parse(await getText(s3, bucket, j.tableKey));
    // A device writes only its own key; a table claiming another device is refused, not merged.
    const claimed = (value as { measuredOn?: { thingName?: unknown } } | null)?.measuredOn?.thingName;
    if (claimed !== j.thingName) throw new ValidationError(`s3://${bucket}/${j.tableKey} claims device ${String(claimed)}, not ${j.thingName}; not merged`);
    tables.push(value);
  }
  return { tables, missing };
}
