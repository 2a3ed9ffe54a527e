// The one-command local demo: hub, three device processes, search -> build -> compress ->
// evaluate -> publish (signed) -> IoT Job rollout -> completions -> fleet report, then a broken
// version that trips the abort threshold, and a rollback. Everything it starts is stopped on
// every exit path, Ctrl-C included.
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { IoTClient } from '@aws-sdk/client-iot';
import type { S3Client } from '@aws-sdk/client-s3';
import { startHub, type LocalHub } from '../local-hub/hub.ts';
import { writeFileAtomic } from '../common/atomic-file.ts';
import { describeError, TransportError, ValidationError } from '../common/errors.ts';
import { generateSigningKeyPair, LocalKeySigner } from '../contracts/manifest-signing.ts';
import { createIotClient, createS3Client, localProfile, type FleetProfile } from '../fleet/profile.ts';
import { publishBundle, type PublishResult } from '../fleet/publisher.ts';
import { createRollout, rollbackGroup, type RolloutSettings } from '../fleet/rollout.ts';
import { runCanaryRollout } from '../fleet/canary-rollout.ts';
import { watchJob, type JobProgress } from '../fleet/fleet-status.ts';
import { latestByDevice, readTelemetryDir } from '../fleet/telemetry-reader.ts';
import type { Telemetry } from '../contracts/telemetry.ts';
import type { CheckRow } from '../fleet/latency-check.ts';
import { storageOfManifest } from '../fleet/latency-check.ts';
import { benchmarkFleet, demoGridFor, describeBenchmark, latencyReport, type FleetBenchmark } from './fleet-latency.ts';
import {
  killAllAgentsSync,
  requestCompletion,
  startAgent,
  stopAllAgents,
  waitForAgentApi,
  type AgentProcess,
  type Completion,
} from './agents.ts';
import {
  buildModel,
  chooseQuantization,
  compressModel,
  demoModel,
  DEMO_MODEL_DIR,
  DEMO_TRAIN_COMMAND,
  demoSearchCommand,
  designArchitecture,
  evaluateModels,
  writeBundleMetadata,
  type DesignResult,
  type TrainedModel,
} from './model-pipeline.ts';
import { loadArchSpec } from '../models/onnx/build-model-file.ts';
import { DEFAULT_OBJECTIVE } from '../models/search/search.ts';
import { TOKENIZER_FILE } from '../models/runtime/index.ts';
import { provisionThings } from './provision.ts';
import { DEFAULT_MAX_PERPLEXITY_INCREASE, formatQuality, type QualityStep } from '../models/quality/quality-gate.ts';
import { StageClock, formatTimings, type DemoLog, type StageTiming } from './stages.ts';

/** The demo's manifest-signing key in its directory (publish to the demo's devices with `--key`). */
export const DEMO_SIGNING_KEY_FILE = 'fleet-signing-key.pem';

export interface DemoOptions {
  /** Working directory; a fresh temp directory by default (removed at the end unless `keep`). */
  dir?: string;
  keep?: boolean;
  devices: number;
  group: string;
  modelId: string;
  deviceClass: string;
  seed: number;
  searchIterations: number;
  searchPopulation: number;
  maxParams: number;
  contextLength: number;
  compressionRatio: number;
  evalChars: number;
  /** The quality gate: the shipped model's perplexity may exceed the dense model's by at most this fraction. */
  maxPerplexityIncrease: number;
  /** Quantize the weights after the embedding compression (int4, else int8, whichever passes the gate first). */
  quantize: boolean;
  /**
   * What ships: 'trained' (default) the committed trained demo model (`demoModelDir`), after the
   * search has shown the design for the device class; 'searched' the searched design with seeded
   * random weights and GPT-2's tokenizer.
   */
  ship?: 'trained' | 'searched';
  /** Directory of the trained demo model (default assets/demo-model). */
  demoModelDir?: string;
  /** A trained model given explicitly (--arch/--weights): shipped as is, no search. */
  trained?: TrainedModel;
  /** Also roll out a broken version and roll back. */
  broken: boolean;
  /** Benchmark the devices first (benchmark@1 jobs) and search against the merged measured table. */
  benchmark?: boolean;
  /** Milliseconds to wait for a job to finish. */
  jobTimeoutMs: number;
  telemetryIntervalMs: number;
  prompt: string;
  log: DemoLog;
  signal?: AbortSignal;
  /** Called after the last stage, before anything is stopped (tests check the live system here). */
  inspect?: (live: DemoLive) => Promise<void>;
}

/** The running system, as `inspect` sees it. */
export interface DemoLive {
  endpoints: LocalHub['endpoints'];
  group: string;
  things: readonly string[];
  agents: ReadonlyArray<{ thingName: string; httpUrl: string }>;
  result: DemoResult;
}

export const DEFAULT_DEMO: Omit<DemoOptions, 'log'> = {
  devices: 3,
  group: 'demo-fleet',
  modelId: 'merino-demo',
  deviceClass: 'rpi4',
  seed: 1,
  searchIterations: 100_000,
  searchPopulation: 512,
  maxParams: 6_000_000,
  contextLength: 128,
  compressionRatio: 2,
  evalChars: 4000,
  maxPerplexityIncrease: DEFAULT_MAX_PERPLEXITY_INCREASE,
  quantize: true,
  broken: true,
  benchmark: true,
  jobTimeoutMs: 120_000,
  telemetryIntervalMs: 2000,
  prompt: 'Call me Ishmael. Some years ago',
  ship: 'trained',
};

/** One row of the fleet report. */
export interface DeviceReport {
  device: string;
  version: string | null;
  status: string;
  firstTokenMs: number | null;
  tokensPerSecond: number | null;
  rssMb: number | null;
  energyJ: number | null;
  energyEstimated: boolean;
  completion: string | null;
}

export interface DemoResult {
  dir: string;
  timings: StageTiming[];
  totalMs: number;
  published: PublishResult[];
  goodJob: JobProgress;
  completions: Completion[];
  report: DeviceReport[];
  /** How publish's bundle check refused the corrupt v2 before it was published with the checks skipped. */
  brokenRefusal?: { code: string; message: string };
  brokenJob?: JobProgress;
  afterBroken?: Completion[];
  rollbackJob?: JobProgress;
  finalReport?: DeviceReport[];
  evaluation: { perplexityDense: number; perplexityCompressed: number; tokens: number; text: string };
  /** The quality gate over every step (quality.json in the bundle) and the quantization that shipped, if any. */
  quality: { passed: boolean; totalChange: number; maxPerplexityIncrease: number; steps: QualityStep[]; quantization: string | null };
  /** What shipped: the trained model's files, or the searched design with random weights. */
  shipped: { kind: 'trained'; archPath: string; weightsPath: string; tokenizerPath?: string } | { kind: 'searched' };
  /** Compression method used and why (auto's comparison for a trained model). */
  compression: { method: string; ratio: number; why: string };
  endpoints: LocalHub['endpoints'];
  /** The fleet benchmark (run, merged table) and predicted vs reported decode latency of v1. */
  latency?: { runId: string; tableUrl: string; devices: string[]; outliers: string[]; searchLatencyModel: string | null; check: CheckRow[] };
}

/**
 * Makes a copy of a model directory whose ONNX file is corrupt. Publish's bundle check refuses it; the demo
 * then publishes it with the check skipped, to show what the devices do when a bad model reaches them anyway.
 */
async function corruptBundle(srcDir: string, dstDir: string): Promise<void> {
  await fs.mkdir(dstDir, { recursive: true });
  for (const name of await fs.readdir(srcDir)) {
    const from = path.join(srcDir, name);
    if (!(await fs.stat(from)).isFile()) continue;
    if (name === 'model.onnx') {
      const bytes = await fs.readFile(from);
      // Keep the protobuf header, cut the rest: a validly signed file that no runtime can load.
      await writeFileAtomic(path.join(dstDir, name), bytes.subarray(0, Math.min(bytes.length, 4096)));
    } else {
      await fs.copyFile(from, path.join(dstDir, name));
    }
  }
  await writeFileAtomic(path.join(dstDir, 'lineage.json'), JSON.stringify({ sourceModel: 'deliberately corrupted copy for the rollback demo' }));
}

async function waitForJob(iot: IoTClient, jobId: string, opts: DemoOptions, label: string): Promise<JobProgress> {
  let last = '';
  return watchJob(iot, jobId, {
    intervalMs: 500,
    timeoutMs: opts.jobTimeoutMs,
    signal: opts.signal,
    onUpdate: (p) => {
      const line = `    ${label}: ${p.status} ${p.devices.map((d) => `${d.thingName}=${d.status}${d.statusDetails.step ? `(${d.statusDetails.step})` : ''}`).join(' ')}`;
      if (line !== last) opts.log(line);
      last = line;
    },
  });
}

/** Waits until every device's latest telemetry names `version` (or the deadline passes). */
async function waitForTelemetry(dir: string, things: readonly string[], version: string, timeoutMs: number): Promise<Map<string, Telemetry>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const latest = latestByDevice(await readTelemetryDir(dir));
    if (things.every((t) => latest.get(t)?.model?.version === version) || Date.now() > deadline) return latest;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function buildReport(things: readonly string[], progress: JobProgress, telemetry: Map<string, Telemetry>, completions: readonly Completion[]): DeviceReport[] {
  return things.map((t) => {
    const tel = telemetry.get(t);
    const c = completions.find((x) => x.thingName === t);
    return {
      device: t,
      version: c?.model?.version ?? tel?.model?.version ?? null,
      status: progress.devices.find((d) => d.thingName === t)?.status ?? 'NOT_TARGETED',
      firstTokenMs: c?.firstTokenMs ?? tel?.inference.firstTokenMs?.p50 ?? null,
      tokensPerSecond: c?.tokensPerSecond ?? tel?.inference.tokensPerSecond?.p50 ?? null,
      rssMb: tel ? tel.system.rssBytes / 2 ** 20 : null,
      energyJ: tel?.system.energyJ ?? null,
      energyEstimated: tel?.system.energyEstimated ?? false,
      completion: c?.text ?? null,
    };
  });
}

const num = (v: number | null, digits = 1) => (v === null ? '-' : v.toFixed(digits));

/** The fleet report as a table. */
export function formatReport(rows: readonly DeviceReport[]): string {
  const head = ['device', 'version', 'status', 'first token ms', 'tokens/s', 'RSS MB', 'energy J'];
  const cells = rows.map((r) => [r.device, r.version ?? '-', r.status, num(r.firstTokenMs), num(r.tokensPerSecond), num(r.rssMb, 0), `${num(r.energyJ, 2)}${r.energyEstimated ? ' (est)' : ''}`]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i >= 3 ? x.padStart(w[i]!) : x.padEnd(w[i]!))).join('  ');
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)].join('\n');
}

/** Runs the whole demo; always stops the hub and agents before returning or throwing. */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'fleetlm-demo-'));
  const clock = new StageClock(opts.log);
  const log = opts.log;
  let hub: LocalHub | undefined;
  const agents: AgentProcess[] = [];
  const things = Array.from({ length: opts.devices }, (_, i) => `demo-device-${i + 1}`);
  const aborted = () => {
    if (opts.signal?.aborted) throw new TransportError('demo interrupted', { code: 'TRANSPORT_INTERRUPTED' });
  };
  try {
    let profile!: FleetProfile;
    let iot!: IoTClient;
    let s3!: S3Client;
    hub = await clock.stage('start local hub', async () => {
      const h = await startHub({ dir: path.join(dir, 'hub') });
      profile = localProfile(h.endpoints, 'demo hub');
      iot = createIotClient(profile);
      s3 = createS3Client(profile);
      return h;
    }, (h) => `MQTT ${h.endpoints.mqtt.url}, IoT ${h.endpoints.iotEndpoint}, S3 ${h.endpoints.s3.endpoint}`);
    aborted();

    const keys = generateSigningKeyPair();
    const pubKeyPath = path.join(dir, 'fleet-public-key.pem');
    await writeFileAtomic(pubKeyPath, keys.publicKeyPem);
    // Saved (0600) so that, with --stay, new versions can be published to the demo's devices with --key.
    await writeFileAtomic(path.join(dir, DEMO_SIGNING_KEY_FILE), keys.privateKeyPem, { mode: 0o600 });
    const signer = new LocalKeySigner(keys.privateKeyPem);

    await clock.stage(`provision ${opts.devices} devices`, async () => {
      await provisionThings(iot, opts.group, things);
      for (const t of things) {
        agents.push(
          await startAgent({
            thingName: t,
            dir: path.join(dir, 'devices', t),
            mqtt: { host: profile.mqtt!.host, port: profile.mqtt!.port },
            mqttPassword: await hub!.issueDeviceSecret(t),
            fleetPublicKeyPath: pubKeyPath,
            telemetryIntervalMs: opts.telemetryIntervalMs,
          }),
        );
      }
      await Promise.all(agents.map((a) => waitForAgentApi(a, 60_000)));
    }, () => `${things.join(', ')} in group ${opts.group}, agents answering on ${agents.map((a) => a.httpUrl.replace('http://127.0.0.1:', ':')).join(' ')}`);
    aborted();

    // The search always runs for the device class (unless a trained architecture was given); by
    // default the design it finds is shown, and the trained demo model is what ships. The search
    // designs for the shipped tokenizer's vocabulary, so the two designs can be compared.
    const trained: TrainedModel | undefined = opts.trained ?? ((opts.ship ?? 'trained') === 'trained' ? await demoModel(opts.demoModelDir ?? DEMO_MODEL_DIR) : undefined);
    const committedSpec = trained && !opts.trained ? await loadArchSpec(trained.archPath) : undefined;

    // The fleet measures first: each device times the layers of the model to ship (or a small default
    // grid); the merged table replaces the roofline in the search and prices the shipped model.
    let bench: FleetBenchmark | undefined;
    if (opts.benchmark ?? true) {
      const grid = demoGridFor(trained ? (committedSpec ?? (await loadArchSpec(trained.archPath))) : undefined);
      bench = await clock.stage('benchmark devices (layer latency)', () =>
        benchmarkFleet({ iot, s3, profile, group: opts.group, things, deviceClass: opts.deviceClass, storage: opts.quantize ? 'int4' : 'fp32', grid, signer, jobTimeoutMs: opts.jobTimeoutMs, log }), describeBenchmark);
      aborted();
    }
    const searchOptions = {
      deviceClass: opts.deviceClass,
      seed: opts.seed,
      iterations: opts.searchIterations,
      population: opts.searchPopulation,
      maxParams: opts.maxParams,
      contextLength: committedSpec?.contextLength ?? opts.contextLength,
      ...(committedSpec ? { vocabSize: committedSpec.vocabSize } : {}),
    };
    const design = await clock.stage(opts.trained ? `architecture (${opts.trained.archPath})` : `search (${opts.deviceClass}, objective ${DEFAULT_OBJECTIVE})`, () =>
      designArchitecture({ ...searchOptions, archPath: opts.trained?.archPath, latencyTable: bench?.merged.table }), (d) => {
        const dev = d.summary.device as { latencyModel?: string } | null | undefined;
        const ms = d.summary.latencyMs as number | null | undefined;
        const latency = dev?.latencyModel ? `, ${typeof ms === 'number' ? `${ms.toFixed(2)} ms/token ` : ''}by the ${dev.latencyModel === 'measured' ? 'fleet-measured table' : 'roofline'}` : '';
        return `${JSON.stringify(d.spec.blocks.map((b) => `${b.layers}x(E=${b.width},R=${b.ffnRatio},H=${b.heads})`))}${latency}`;
      });
    aborted();
    const madeBy = design.summary.search as { objective?: string; device?: { id?: string } | null; seed?: number } | undefined;
    if (madeBy) log(`    the architecture is a search result: objective ${madeBy.objective}, device ${madeBy.device?.id ?? 'none'}, seed ${madeBy.seed}`);
    let shippedDesign: DesignResult = design;
    if (trained && committedSpec) {
      const searchedParams = (design.summary as { params?: number }).params;
      const searchCommand = demoSearchCommand(searchOptions);
      // The committed model is "the searched design" only if its provenance says a search made it and it is that design.
      const sameDesign = JSON.stringify(committedSpec.blocks) === JSON.stringify(design.spec.blocks) && committedSpec.vocabSize === design.spec.vocabSize && committedSpec.contextLength === design.spec.contextLength;
      const fromSearch = trained.provenance?.design === 'search' && sameDesign;
      shippedDesign = {
        spec: committedSpec,
        summary: {
          source: path.relative(process.cwd(), trained.archPath) || trained.archPath,
          trainedBy: trained.provenance?.train ?? DEMO_TRAIN_COMMAND,
          designedBy: fromSearch ? trained.provenance!.detail : `hand-picked: ${trained.provenance?.detail ?? 'no provenance.json'}`,
          shippedIsSearchedDesign: fromSearch,
          searchedDesign: { deviceClass: opts.deviceClass, command: searchCommand, spec: design.spec, ...(searchedParams !== undefined ? { params: searchedParams } : {}) },
        },
      };
      log(
        fromSearch
          ? `    the trained demo model is this design: \`${trained.provenance!.detail}\`, trained by \`${trained.provenance!.train}\``
          : `    the trained demo model is NOT this design: it is ${trained.provenance?.design === 'search' ? `the design of another search (\`${trained.provenance.detail}\`)` : (trained.provenance?.detail ?? 'a hand-picked design')}. To ship this one trained: ` +
              `\`${searchCommand} --out demo-search.json\`, then \`fleetlm train --arch demo-search.json ...\` and \`fleetlm demo --arch demo-search.json --weights ...\` (docs/training.md)`,
      );
    }
    const workDir = path.join(dir, 'build');
    const built = await clock.stage(trained ? 'build ONNX (trained weights)' : 'build ONNX (searched design, random weights)', async () => {
      const b = await buildModel(shippedDesign.spec, workDir, opts.seed, trained?.weightsPath);
      if (trained && !opts.trained) {
        const ppl = trained.trainValidationPerplexity !== undefined ? `, validation perplexity ${trained.trainValidationPerplexity} at the end of training` : '';
        const what = shippedDesign.summary.shippedIsSearchedDesign ? 'the searched design' : trained.provenance?.design === 'search' ? 'another search\'s design, not this one' : 'a hand-picked design, not the searched one';
        log(`    shipping the trained demo model (${what}): ${(b.build.parameters / 1e6).toFixed(1)}M params${ppl}, trained by \`${trained.provenance?.train ?? DEMO_TRAIN_COMMAND}\` — see docs/training.md (--searched ships the searched design with random weights instead)`);
      }
      return b;
    }, (b) => `${b.build.parameters.toLocaleString('en-US')} parameters, ${(b.build.modelBytes / 2 ** 20).toFixed(1)} MB`);
    aborted();
    const bundleDir = path.join(dir, 'bundle-v1');
    await fs.mkdir(bundleDir, { recursive: true });
    // A trained model: let auto compare the methods at the same ratio (on the demo model SVD wins, docs/training.md).
    const method = trained ? 'auto' : 'tt-row';
    const compressed = await clock.stage(`compress embedding (${method})`, () => compressModel(built.modelPath, path.join(bundleDir, 'model.onnx'), opts.compressionRatio, method), (c) => {
      const r = c.report as { method?: string; ratio?: number; relativeError?: number; meanCosine?: number; denseFileBytes?: number; compressedFileBytes?: number };
      return `${r.method} at ${r.ratio?.toFixed(2)}x, relative error ${r.relativeError?.toFixed(3)}, mean row cosine ${r.meanCosine?.toFixed(3)}; file ${((r.denseFileBytes ?? 0) / 2 ** 20).toFixed(1)} -> ${((r.compressedFileBytes ?? 0) / 2 ** 20).toFixed(1)} MB`;
    });
    const compressionWhy = String((compressed.report as { why?: unknown }).why ?? '');
    if (method === 'auto') log(`    ${compressionWhy.split('; ').slice(0, 1).join('')}`);
    aborted();
    // The tokenizer ships in the bundle (role 'tokenizer'); the agent loads it from the installed version.
    if (trained?.tokenizerPath) await fs.copyFile(trained.tokenizerPath, path.join(bundleDir, TOKENIZER_FILE));
    const evaluation = await clock.stage('evaluate', () => evaluateModels(built.modelPath, compressed.modelPath, opts.evalChars, shippedDesign.spec.contextLength, trained?.tokenizerPath), (e) =>
      `perplexity on ${e.tokens} tokens of ${e.text}: dense ${e.before.perplexity.toFixed(1)}, compressed ${e.after.perplexity.toFixed(1)}`);
    const quantization = opts.quantize
      ? await clock.stage('quantize weights + quality gate', async () => {
          const q = await chooseQuantization({
            compressedPath: compressed.modelPath,
            workDir,
            evaluation,
            compressionStep: `embedding ${String((compressed.report as { method?: unknown }).method)} ${Number((compressed.report as { ratio?: unknown }).ratio).toFixed(2)}x`,
            maxIncrease: opts.maxPerplexityIncrease,
            maxChars: opts.evalChars,
            window: shippedDesign.spec.contextLength,
            tokenizerPath: trained?.tokenizerPath,
          });
          // Ship the quantized model in place of the float one (the bundle's entry stays model.onnx).
          if (q.chosen) await fs.copyFile(q.chosen.modelPath, compressed.modelPath);
          return q;
        }, (q) => `${formatQuality(q.quality).split('\n').join('\n    ')}\n    ships ${q.chosen ? `int${q.chosen.config.bits} block ${q.chosen.config.blockSize}` : 'float weights (no quantization within the limit)'}`)
      : undefined;
    await writeBundleMetadata(bundleDir, shippedDesign, built.build, compressed, evaluation, opts.seed, quantization);
    aborted();

    const published: PublishResult[] = [];
    const v1 = await clock.stage('publish v1 (signed)', () => publishBundle({ s3, bucket: profile.s3.bucket, signer, modelDir: bundleDir, modelId: opts.modelId, version: '1.0.0' }), (p) =>
      `s3://${p.bucket}/${p.prefix} (${p.files.length} files, ${(p.totalBytes / 2 ** 20).toFixed(1)} MB), manifest ${p.manifestSha256.slice(0, 12)}… signed by ${p.signature.keyId}`);
    published.push(v1);
    aborted();

    const settings: RolloutSettings = { timeoutMinutes: 5, abortThresholdPercent: 20, healthCheck: { prompt: opts.prompt, maxTokens: 8, maxFirstTokenMs: 10_000 } };
    const goodJob = await clock.stage('rollout v1 (IoT Job)', async () => {
      const r = await createRollout(iot, s3, profile, { modelId: opts.modelId, version: '1.0.0', group: opts.group, settings });
      log(`    job ${r.jobId} -> ${r.targetCount} devices`);
      return waitForJob(iot, r.jobId, opts, r.jobId);
    }, (p) => `${p.status} ${JSON.stringify(p.counts)}`);
    if ((goodJob.counts.SUCCEEDED ?? 0) !== things.length) {
      throw new TransportError(`rollout of v1 did not succeed on every device: ${JSON.stringify(goodJob.counts)}; see ${dir}/devices/*/agent.log`);
    }
    aborted();

    const completions = await clock.stage('completions', () => Promise.all(agents.map((a) => requestCompletion(a, opts.prompt, 24))), (cs) => `${cs.length} devices answered`);
    for (const c of completions) log(`    ${c.thingName} (${c.model?.version ?? '?'}): ${JSON.stringify(opts.prompt + c.text)}`);
    const telemetry = await clock.stage('telemetry', () => waitForTelemetry(hub!.endpoints.telemetryDir, things, '1.0.0', 15_000), (t) => `${t.size} devices reporting`);
    const report = buildReport(things, goodJob, telemetry, completions);
    log(`\nFleet report (${opts.modelId}@1.0.0)\n${formatReport(report)}\n`);
    let latencyCheckRows: CheckRow[] = [];
    if (bench) {
      const chosen = quantization?.chosen?.config;
      const storage = chosen ? storageOfManifest({ quantization: { bits: chosen.bits, blockSize: chosen.blockSize } }) : null;
      // The completions above ran on all devices at once, on cores the demo's devices share: a few more,
      // one device at a time, give each device's own decode speed (what separate hardware reports).
      // Sixteen each: the window's median is then a warm figure, as on a device that has served for a while
      // (the first requests of a freshly loaded model run cold code paths).
      for (const a of agents) for (let i = 0; i < 16; i++) await requestCompletion(a, opts.prompt, 24);
      // Decode speed reaches telemetry with the next periodic message after the completions; an older
      // message still carries the speeds of the concurrent completions above.
      const since = Date.now();
      const deadline = since + Math.max(10_000, 3 * opts.telemetryIntervalMs);
      let withSpeed = [...telemetry.values()];
      while (Date.now() < deadline) {
        withSpeed = [...latestByDevice(await readTelemetryDir(hub.endpoints.telemetryDir)).values()];
        if (things.every((t) => withSpeed.some((m) => m.thingName === t && m.timestamp >= since && m.model?.version === '1.0.0' && (m.inference.tokensPerSecond?.p50 ?? 0) > 0))) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const stale = things.filter((t) => !withSpeed.some((m) => m.thingName === t && m.timestamp >= since));
      if (stale.length > 0) log(`    no telemetry since the last completions from ${stale.join(', ')}: their figures include the concurrent completions`);
      const lr = latencyReport({ telemetry: withSpeed, modelId: opts.modelId, version: '1.0.0', spec: shippedDesign.spec, storage, things, deviceClass: opts.deviceClass, table: bench.merged.table });
      latencyCheckRows = lr.rows;
      log(`Predicted vs measured decode latency (fleetlm latency --check)\n${lr.text}\n`);
    }

    const result: DemoResult = {
      dir,
      timings: clock.timings,
      totalMs: 0,
      published,
      goodJob,
      completions,
      report,
      evaluation: { perplexityDense: evaluation.before.perplexity, perplexityCompressed: evaluation.after.perplexity, tokens: evaluation.tokens, text: evaluation.text },
      quality: quantization
        ? {
            passed: quantization.quality.passed,
            totalChange: quantization.quality.totalChange,
            maxPerplexityIncrease: quantization.quality.maxPerplexityIncrease,
            steps: quantization.quality.steps,
            quantization: quantization.chosen ? `int${quantization.chosen.config.bits} block ${quantization.chosen.config.blockSize}` : null,
          }
        : { passed: true, totalChange: (evaluation.after.perplexity - evaluation.before.perplexity) / evaluation.before.perplexity, maxPerplexityIncrease: opts.maxPerplexityIncrease, steps: [], quantization: null },
      shipped: trained ? { kind: 'trained', archPath: trained.archPath, weightsPath: trained.weightsPath, ...(trained.tokenizerPath ? { tokenizerPath: trained.tokenizerPath } : {}) } : { kind: 'searched' },
      compression: { method: String((compressed.report as { method?: unknown }).method), ratio: Number((compressed.report as { ratio?: unknown }).ratio), why: compressionWhy },
      endpoints: hub.endpoints,
      ...(bench
        ? {
            latency: {
              runId: bench.run.runId,
              tableUrl: bench.tableUrl,
              devices: bench.merged.devices,
              outliers: bench.merged.outliers.map((x) => `${x.thingName}: ${x.reason}`),
              searchLatencyModel: (design.summary.device as { latencyModel?: string } | null | undefined)?.latencyModel ?? null,
              check: latencyCheckRows,
            },
          }
        : {}),
    };

    if (opts.broken) {
      const brokenDir = path.join(dir, 'bundle-v2-broken');
      await corruptBundle(bundleDir, brokenDir);
      const v2Publish = { s3, bucket: profile.s3.bucket, signer, modelDir: brokenDir, modelId: opts.modelId, version: '2.0.0-broken' };
      // First line of defence: publish runs the model before signing, and refuses this one.
      result.brokenRefusal = await clock.stage('publish v2 (corrupt ONNX): the bundle check refuses it', async () => {
        const err = await publishBundle(v2Publish).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (!(err instanceof ValidationError) || !err.code.startsWith('VALIDATION_BUNDLE_')) {
          throw new TransportError(`publish was expected to refuse the corrupt v2 with a bundle-check error; it ${err === undefined ? 'published it' : `failed otherwise: ${describeError(err)}`}`);
        }
        return { code: err.code, message: err.message };
      }, (r) => `${r.code}: ${r.message.replaceAll(brokenDir, '.../bundle-v2-broken')}`);
      // Second line: a bad model that reaches the devices anyway (here forced with the check skipped, as
      // `--skip-bundle-checks` does, which exists for exactly this test) fails the canary's health check.
      const v2 = await clock.stage('publish v2 with --skip-bundle-checks (safety-net test only)', () =>
        publishBundle({ ...v2Publish, skipBundleChecks: true }), (p) => `s3://${p.bucket}/${p.prefix} (validly signed; its manifest records the skipped check)`);
      published.push(v2);
      result.brokenJob = await clock.stage('rollout v2 with canary + abort threshold', async () => {
        // A real canary: one device gets job <id>-canary; the other devices get job <id> only if it SUCCEEDED.
        const r = await runCanaryRollout(iot, s3, profile, {
          modelId: opts.modelId,
          version: '2.0.0-broken',
          group: opts.group,
          settings: { ...settings, canaryPercent: Number((100 / things.length).toFixed(2)), abortThresholdPercent: 20 },
        }, {
          intervalMs: 250,
          timeoutMs: opts.jobTimeoutMs,
          onCanaryStarted: (c) => log(`    canary job ${c.canaryJobId} -> ${c.canaryThings.join(', ')}; job ${c.jobId} for the other ${c.targetCount - c.canaryThings.length} device(s) only if it succeeds`),
        });
        log(`    ${r.outcome.state === 'succeeded' ? `canary succeeded: job ${r.main?.jobId} created` : `canary failed: job ${r.jobId} never created, the other devices were not notified`}`);
        return r.canaryProgress;
      }, (p) => `${p.status}${p.reasonCode ? ` (${p.reasonCode})` : ''} ${JSON.stringify(p.counts)}`);
      for (const d of result.brokenJob.devices) if (d.statusDetails.reason) log(`    ${d.thingName}: ${d.status}: ${d.statusDetails.reason}`);
      result.afterBroken = await clock.stage('devices still serve v1', () => Promise.all(agents.map((a) => requestCompletion(a, opts.prompt, 8))), (cs) =>
        cs.map((c) => `${c.thingName}=${c.model?.version ?? '?'}`).join(' '));
      result.rollbackJob = await clock.stage('rollback (last good version from job history)', async () => {
        const rb = await rollbackGroup(iot, s3, profile, opts.group, { settings });
        log(`    rolling back from ${rb.from.version} (${rb.from.jobId}) to ${rb.to.version} (${rb.to.jobId}): job ${rb.rollout.jobId}`);
        return waitForJob(iot, rb.rollout.jobId, opts, rb.rollout.jobId);
      }, (p) => `${p.status} ${JSON.stringify(p.counts)}`);
      const finalCompletions = await clock.stage('completions after rollback', () => Promise.all(agents.map((a) => requestCompletion(a, opts.prompt, 24))), (cs) =>
        cs.map((c) => `${c.thingName}=${c.model?.version ?? '?'}`).join(' '));
      const finalTelemetry = latestByDevice(await readTelemetryDir(hub.endpoints.telemetryDir));
      result.finalReport = buildReport(things, result.rollbackJob, finalTelemetry, finalCompletions);
      log(`\nFleet report after rollback\n${formatReport(result.finalReport)}\n`);
    }
    result.totalMs = clock.elapsedMs();
    await opts.inspect?.({ endpoints: hub.endpoints, group: opts.group, things, agents, result });
    log(`Stage timings\n${formatTimings(clock.timings, result.totalMs)}`);
    return result;
  } finally {
    await stopAllAgents(3000).catch(() => killAllAgentsSync());
    await hub?.stop().catch(() => {});
    if (!opts.keep && !opts.dir) rmSync(dir, { recursive: true, force: true });
  }
}
