// Operator commands: publish, rollout, status, cancel, rollback, authorize-rollback, telemetry, keygen, kms-public-key.
// Each works against the local hub (`--local [dir]`) or AWS (profile file, SDK credential chain).
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import type { IoTClient } from '@aws-sdk/client-iot';
import type { S3Client } from '@aws-sdk/client-s3';
import { TransportError, ValidationError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/atomic-file.ts';
import { generateSigningKeyPair, LocalKeySigner, type ManifestSigner } from '../../contracts/manifest-signing.ts';
import {
  MAX_ROLLBACK_AUTHORIZATION_MS,
  SignedRollbackAuthorizationSchema,
  readRollbackAuthorization,
  signRollbackAuthorization,
  type SignedRollbackAuthorization,
} from '../../contracts/rollback-authorization.ts';
import { parseJsonWith } from '../../common/validate.ts';
import { KmsSigner, exportKmsPublicKeyPem } from '../../fleet/kms-signer.ts';
import {
  createIotClient,
  createKmsClient,
  createS3Client,
  describeProfile,
  loadProfile,
  type FleetProfile,
  type ProfileFlags,
  type ProfileNeeds,
} from '../../fleet/profile.ts';
import { publishBundle } from '../../fleet/publisher.ts';
import { publishAgentPackage, type PublishedAgentPackage } from '../../fleet/agent-publisher.ts';
import { createAgentRollout, createRollout, makeJobId, rollbackGroup, splitSettings, type RolloutRequest, type RolloutSettings } from '../../fleet/rollout.ts';
import { DEFAULT_ROLLOUT_POLICY, policyWarnings } from '../../fleet/rollout-policy.ts';
import { agentPlan, cancelRolloutWithCanary, modelCanaryPlan, rolloutProgress, runCanaryWith, type CanaryPlan } from '../../fleet/canary-rollout.ts';
import { parsePercentage } from '../../fleet/job-limits.ts';
import { formatProgress, TERMINAL_JOB_STATUSES, watchJob, type JobProgress } from '../../fleet/fleet-status.ts';
import { assertJobSucceeded, jobSucceeded, JobOutcomeError, WATCH_EXIT, watchTimeoutError } from '../../fleet/job-outcome.ts';
import { readTelemetry, summarise, TelemetrySkips, type TelemetrySummary } from '../../fleet/telemetry-reader.ts';
import type { Telemetry } from '../../contracts/telemetry.ts';

export interface CommonOpts extends ProfileFlags {
  json?: boolean;
  verbose?: boolean;
}

/** Adds the profile, --json and --verbose options every fleet command shares. */
export function withProfile(cmd: Command): Command {
  return cmd
    .addOption(new Option('--local [dir]', 'use the local hub whose endpoints.json is in dir (default .fleetlm/local)'))
    .option('--profile <file>', 'AWS profile file (default ~/.fleetlm/profile.json)')
    .option('--aws-profile <name>', 'named AWS profile for credentials and region (default: AWS_PROFILE, else the SDK default chain)')
    .option('--region <region>', 'AWS region (overrides the profile and AWS_REGION)')
    .option('--bucket <bucket>', 'artifact bucket (overrides the profile)')
    .option('--role-arn <arn>', 'role IoT assumes to presign artifact URLs (overrides the profile)')
    .option('--json', 'machine-readable output on stdout')
    .option('--verbose', 'print the resolved profile on stderr');
}

/** True when something accepts TCP connections at the URL's host and port. */
function answers(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) || 80 });
    socket.setTimeout(2000, () => socket.destroy());
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('close', () => resolve(false));
  });
}

/** Resolves the profile from flags, failing early when a local hub's endpoints.json is stale. */
export async function profileFrom(opts: CommonOpts, needs: ProfileNeeds = { bucket: true }): Promise<FleetProfile> {
  // Node 20 is supported here; the SDK's notice about its 2027 releases would clutter every command.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const profile = await loadProfile(opts, process.env, needs);
  if (opts.verbose) process.stderr.write(`profile: ${JSON.stringify(describeProfile(profile), null, 2)}\n`);
  // A stale endpoints.json outlives its hub; say so instead of failing later with ECONNREFUSED.
  if (profile.kind === 'local' && profile.iotEndpoint && !(await answers(profile.iotEndpoint))) {
    throw new TransportError(
      `the local hub in ${profile.source} does not answer at ${profile.iotEndpoint}: start it with \`fleetlm local up --dir ${path.dirname(profile.source)}\``,
    );
  }
  return profile;
}

/** Prints `value` as JSON with --json, else the human text. */
export function out(opts: CommonOpts, value: unknown, human: () => string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/**
 * The profile's telemetry for a command: messages of a newer major schema (from agents newer than this CLI) are
 * left out with a warning on stderr, so the operator learns why a device is missing rather than reading it wrong.
 */
export async function readTelemetryFor(profile: FleetProfile, skips = new TelemetrySkips()): Promise<Telemetry[]> {
  const messages = await readTelemetry(profile, skips);
  const note = skips.describeNewer();
  if (note) process.stderr.write(`fleetlm: warning: ${note}\n`);
  return messages;
}

function showBars(opts: CommonOpts): boolean {
  return !opts.json && process.stderr.isTTY === true;
}

function intFlag(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isInteger(n) || n < min || n > max) {
    throw new ValidationError(`${flag} must be an integer in ${min}..${max}; got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Table with padded columns; numbers right-aligned. */
export function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : typeof c === 'number' ? fmtNum(c) : c)));
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[], numeric: boolean[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const numeric = head.map((_, i) => rows.some((r) => typeof r[i] === 'number'));
  return [line(head, numeric), line(widths.map((w) => '-'.repeat(w)), numeric), ...cells.map((r) => line(r, numeric))].join('\n');
}

function fmtNum(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}

// `profile` may be absent only with --key (a local key needs no account).
export function signerFor(opts: { key?: string; kmsKey?: string }, profile: FleetProfile | undefined): ManifestSigner {
  if (opts.key && opts.kmsKey) throw new ValidationError('pass either --key or --kms-key, not both');
  if (opts.key) {
    let pem: string;
    try {
      pem = readFileSync(opts.key, 'utf8');
    } catch (err) {
      throw new ValidationError(`cannot read signing key ${opts.key}: ${(err as Error).message}`, { cause: err });
    }
    return new LocalKeySigner(pem);
  }
  const kmsKey = opts.kmsKey ?? profile?.kmsKeyId;
  if (kmsKey && profile) return new KmsSigner(createKmsClient(profile), kmsKey);
  throw new ValidationError('publishing needs a signing key: --key key.pem (local) or --kms-key ARN (or kmsKeyId in the profile)');
}

/** Rollout flags as RolloutSettings, validated against the one policy schema before anything is sent. */
function rolloutSettings(o: Record<string, string | boolean | undefined>): RolloutSettings {
  const s: RolloutSettings = {};
  if (typeof o.canary === 'string') s.canaryPercent = parsePercentage(o.canary, '--canary');
  if (typeof o.canaryTimeout === 'string') s.canaryTimeoutMinutes = intFlag(o.canaryTimeout, '--canary-timeout', 1, 10080);
  if (typeof o.maxPerMinute === 'string') s.maxPerMinute = intFlag(o.maxPerMinute, '--max-per-minute', 1, 1000);
  if (typeof o.abortThreshold === 'string') s.abortThresholdPercent = parsePercentage(o.abortThreshold, '--abort-threshold');
  if (typeof o.abortMinExecuted === 'string') s.abortMinExecuted = intFlag(o.abortMinExecuted, '--abort-min-executed', 1, 1_000_000);
  if (typeof o.timeoutMinutes === 'string') s.timeoutMinutes = intFlag(o.timeoutMinutes, '--timeout-minutes', 1, 10080);
  if (typeof o.retries === 'string') s.retries = intFlag(o.retries, '--retries', 0, 10);
  if (typeof o.presignExpires === 'string') s.presignExpiresInSec = intFlag(o.presignExpires, '--presign-expires', 60, 3600);
  if (o.continuous === true) s.targetSelection = 'CONTINUOUS';
  const hc: NonNullable<RolloutSettings['healthCheck']> = {};
  if (typeof o.healthPrompt === 'string') hc.prompt = o.healthPrompt;
  if (typeof o.maxFirstTokenMs === 'string') hc.maxFirstTokenMs = intFlag(o.maxFirstTokenMs, '--max-first-token-ms', 1, 3_600_000);
  if (typeof o.minTokensPerSecond === 'string') {
    const v = Number(o.minTokensPerSecond);
    if (!Number.isFinite(v) || v < 0) throw new ValidationError(`--min-tokens-per-second must be a number >= 0; got ${JSON.stringify(o.minTokensPerSecond)}`);
    hc.minTokensPerSecond = v;
  }
  if (Object.keys(hc).length) s.healthCheck = hc;
  // The whole policy is checked here, so a bad combination fails before any upload or job; warnings go to stderr.
  for (const w of policyWarnings(splitSettings(s).policy)) process.stderr.write(`fleetlm: warning: ${w}\n`);
  return s;
}

function addRolloutFlags(cmd: Command): Command {
  return cmd
    .option('--canary <percent>', 'a first job (<job>-canary) to this share of the devices, e.g. 5% (at least one); the rest get the job only after every canary device SUCCEEDED')
    .option('--canary-timeout <min>', `with --canary: minutes the canary may take before it counts as failed (default ${DEFAULT_ROLLOUT_POLICY.canaryTimeoutMinutes})`)
    .option('--max-per-minute <n>', `notifications per minute, 1..1000 (default ${DEFAULT_ROLLOUT_POLICY.maxPerMinute})`)
    .option('--abort-threshold <percent>', `cancel when this share of finished devices failed (default ${DEFAULT_ROLLOUT_POLICY.abortThresholdPercent}%)`)
    .option('--abort-min-executed <n>', 'apply the abort threshold only after n devices finished (default 1; with --retries, enough that one device alone cannot reach the threshold)')
    .option('--timeout-minutes <n>', `minutes a device may stay IN_PROGRESS (default ${DEFAULT_ROLLOUT_POLICY.timeoutMinutes})`)
    .option('--retries <n>', `retries of a FAILED or TIMED_OUT execution, 0..10 (default ${DEFAULT_ROLLOUT_POLICY.retries})`)
    .option('--presign-expires <sec>', `validity of presigned artifact URLs, 60..3600 (default ${DEFAULT_ROLLOUT_POLICY.presignExpiresInSec})`)
    .option('--continuous', 'also deploy to devices added to the group later')
    .option('--health-prompt <text>', 'prompt of the on-device health check')
    .option('--max-first-token-ms <ms>', 'health check: slowest acceptable first token')
    .option('--min-tokens-per-second <n>', 'health check: slowest acceptable decode speed')
    .option('--watch', 'follow the job until it is done; exit 0 only if every device succeeded (3 failed/aborted/canceled, 4 timed out)')
    .option('--watch-timeout <sec>', 'with --watch: give up after this many seconds (exit 4), naming the devices still pending');
}

/** Follows the job until done; a `--watch-timeout` that runs out throws JobOutcomeError (exit 4). */
async function follow(iot: IoTClient, jobId: string, opts: CommonOpts & { watchTimeout?: unknown }): Promise<JobProgress> {
  const tty = process.stdout.isTTY === true && !opts.json;
  let lastText = '';
  let lines = 0;
  const timeoutSec = typeof opts.watchTimeout === 'string' ? intFlag(opts.watchTimeout, '--watch-timeout', 1, 604_800) : undefined;
  return watchJob(iot, jobId, {
    timeoutMs: timeoutSec === undefined ? undefined : timeoutSec * 1000,
    intervalMs: 1000,
    onUpdate: (p) => {
      if (opts.json) return;
      const text = formatProgress(p);
      if (text === lastText) return;
      lastText = text;
      if (tty && lines > 0) process.stdout.write(`\x1b[${lines}A\x1b[J`);
      process.stdout.write(`${text}\n`);
      lines = text.split('\n').length;
    },
  }).catch(async (err: unknown) => {
    if (timeoutSec !== undefined && (err as { code?: string }).code === 'TRANSPORT_TIMEOUT') throw await watchTimeoutError(iot, jobId, timeoutSec);
    throw err;
  });
}

/** Seconds of `--watch-timeout`, if given. */
function watchTimeoutSec(o: { watchTimeout?: unknown }): number | undefined {
  return typeof o.watchTimeout === 'string' ? intFlag(o.watchTimeout, '--watch-timeout', 1, 604_800) : undefined;
}

/**
 * `rollout --canary`: the canary job first, then (only once every canary device SUCCEEDED) the rollout's job for
 * all devices. A failed or timed-out canary exits 3 (or 4 when `--watch-timeout` ran out first) and the rest of
 * the devices never get a job. Models and agent updates alike (the plan says how to make each job).
 */
async function rolloutWithCanary<R extends { jobId: string; targetCount: number }>(
  iot: IoTClient,
  plan: CanaryPlan<R>,
  o: CommonOpts & { watch?: unknown; watchTimeout?: unknown },
  extraJson: Record<string, unknown> = {},
): Promise<void> {
  const started = Date.now();
  const limitSec = watchTimeoutSec(o);
  let lastText = '';
  const r = await runCanaryWith(iot, plan, {
    timeoutMs: limitSec === undefined ? undefined : limitSec * 1000,
    onCanaryStarted: (c) => {
      if (o.json) return;
      const rest = plan.group ? `group ${plan.group}` : 'the named things';
      process.stdout.write(
        `${c.canary ? 'created' : 'following'} canary job ${c.canaryJobId}: ${plan.label} -> ${c.canaryThings.length} of ${c.targetCount} device(s) (${c.canaryThings.join(', ')}); ` +
          `${rest} gets job ${c.jobId} once every canary device SUCCEEDED\n`,
      );
    },
    onCanaryProgress: (p) => {
      if (o.json) return;
      const text = formatProgress(p);
      if (text !== lastText) process.stdout.write(`${text}\n`);
      lastText = text;
    },
  });
  const canary = { jobId: r.canaryJobId, things: r.canaryThings, outcome: r.outcome, progress: r.canaryProgress };
  if (r.outcome.state === 'failed' || !r.main) {
    if (o.json) out(o, { jobId: r.jobId, created: false, ...extraJson, canary }, () => '');
    const byWatch = r.timedOut === true && limitSec !== undefined && limitSec * 1000 < r.policy.canaryTimeoutMinutes * 60_000;
    const reason = r.outcome.state === 'failed' ? r.outcome.reason : 'canary did not succeed';
    throw new JobOutcomeError(
      byWatch ? 'OUTCOME_WATCH_TIMEOUT' : 'OUTCOME_CANARY_FAILED',
      `${reason}${r.timedOut ? ' (canceled)' : ''}; job ${r.jobId} was not created: the other ${r.targetCount - r.canaryThings.length} device(s) were not notified`,
      byWatch ? WATCH_EXIT.timedOut : WATCH_EXIT.failed,
    );
  }
  const main = r.main;
  if (!o.json) process.stdout.write(`canary succeeded on ${r.canaryThings.length} device(s); created job ${main.jobId}: ${plan.label} -> ${main.targetCount} device(s)\n`);
  if (o.watch) {
    const left = limitSec === undefined ? undefined : Math.max(1, limitSec - Math.floor((Date.now() - started) / 1000));
    const final = await follow(iot, main.jobId, { ...o, watchTimeout: left === undefined ? undefined : String(left) });
    if (o.json) out(o, { ...main, ...extraJson, canary, final }, () => '');
    assertJobSucceeded(final);
    return;
  }
  if (o.json) out(o, { ...main, ...extraJson, canary }, () => '');
}

/**
 * `status --watch` of a rollout: follows its canary while the rollout's own job does not exist yet, then the
 * job. A canary that failed ends the watch with exit 3: that job will never be created.
 */
async function followRollout(iot: IoTClient, jobId: string, o: CommonOpts & { watchTimeout?: unknown }): Promise<JobProgress> {
  const started = Date.now();
  const limitSec = watchTimeoutSec(o);
  for (;;) {
    const { main, canary } = await rolloutProgress(iot, jobId);
    if (main) {
      const left = limitSec === undefined ? undefined : Math.max(1, limitSec - Math.floor((Date.now() - started) / 1000));
      return follow(iot, jobId, { ...o, watchTimeout: left === undefined ? undefined : String(left) });
    }
    if (canary && TERMINAL_JOB_STATUSES.has(canary.status) && !jobSucceeded(canary)) {
      if (!o.json) process.stdout.write(`canary ${formatProgress(canary)}\n`);
      throw new JobOutcomeError('OUTCOME_CANARY_FAILED', `canary ${canary.jobId} ended ${canary.status}${canary.reasonCode ? ` (${canary.reasonCode})` : ''}: job ${jobId} will not be created`, WATCH_EXIT.failed);
    }
    if (limitSec !== undefined && Date.now() - started >= limitSec * 1000) {
      throw new JobOutcomeError('OUTCOME_WATCH_TIMEOUT', `job ${jobId} not created after ${limitSec} s: its canary ${canary?.jobId ?? '?'} is ${canary?.status ?? 'missing'}`, WATCH_EXIT.timedOut);
    }
    if (!o.json && canary) process.stdout.write(`canary ${formatProgress(canary)}\n`);
    await new Promise((res) => setTimeout(res, 1000));
  }
}

/** `rollout --agent-package FILE...`: publish each build (signed), then one update-agent@1 job for all of them. */
async function rolloutAgent(
  iot: IoTClient,
  profile: FleetProfile,
  o: CommonOpts & Record<string, string | boolean | undefined> & { agentPackage: string[]; group?: string; thing?: string[]; jobId?: string; key?: string; kmsKey?: string },
): Promise<void> {
  const settings = rolloutSettings(o);
  const confirmTimeoutSec = typeof o.confirmTimeout === 'string' ? intFlag(o.confirmTimeout, '--confirm-timeout', 1, 3600) : undefined;
  // Refuse what the rollout would refuse before anything is uploaded.
  if (settings.healthCheck) throw new ValidationError('health-check options apply to model rollouts only; an agent update is checked by the new agent confirming');
  if (!o.group && !o.thing?.length) throw new ValidationError('a rollout needs a target: pass --group G (or --thing T)');
  const signer = signerFor(o, profile);
  const s3 = createS3Client(profile);
  const published: PublishedAgentPackage[] = [];
  for (const file of o.agentPackage) {
    const p = await publishAgentPackage({ s3, bucket: profile.s3.bucket, signer, file });
    published.push(p);
    if (!o.json) process.stdout.write(`${p.uploaded ? 'published' : 'already published'} agent ${p.version} for ${p.platform}-${p.arch} at s3://${profile.s3.bucket}/${p.prefix}\n`);
  }
  const req = { packages: published, group: o.group, things: o.thing, settings, confirmTimeoutSec };
  if (settings.canaryPercent !== undefined) {
    const jobId = o.jobId ?? makeJobId('agent', published[0]!.version);
    await rolloutWithCanary(iot, agentPlan(iot, profile, { ...req, jobId }, o.jobId !== undefined), o, { published });
    return;
  }
  const result = await createAgentRollout(iot, profile, { ...req, jobId: o.jobId });
  if (!o.json) process.stdout.write(`created job ${result.jobId}: agent ${result.version} -> ${result.targetCount} device(s)\n`);
  const final = o.watch ? await follow(iot, result.jobId, o) : undefined;
  if (o.json) out(o, { ...result, published, final }, () => '');
  if (final) assertJobSucceeded(final);
}

/** Reads a signed rollback authorization file written by `authorize-rollback`. */
function readAuthorizationFile(file: string): SignedRollbackAuthorization {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read --authorization ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return parseJsonWith(SignedRollbackAuthorizationSchema, text, `rollback authorization ${file}`);
}

/** Registers the operator commands on the program. */
export function register(program: Command): void {
  // `publish`/`rollout` take `--version V`; without positional options the root's `--version` would swallow it.
  program.enablePositionalOptions();
  withProfile(
    program
      .command('publish')
      .description('Sign and upload a model bundle to S3 under models/{id}/{version}/ (versions are immutable)')
      .requiredOption('--model-dir <dir>', 'directory with model.onnx (+ external data, tokenizer.json + tokenizer_config.json, arch.json, evaluation.json, ...)')
      .requiredOption('--model-id <id>', 'model id, [a-z0-9-]')
      .requiredOption('--version <version>', 'version, [A-Za-z0-9._-]')
      .option('--entry <file>', 'entry ONNX file in the directory (default model.onnx)')
      .option('--key <pem>', 'EC P-256 private key file that signs the manifest (local mode)')
      .option('--kms-key <arn>', 'AWS KMS ECC_NIST_P256 key that signs the manifest (cloud)')
      .option('--max-perplexity-increase <f>', 'judge the bundle\'s quality.json under this limit (fraction of the dense perplexity) instead of its own')
      .option('--security-version <n>', 'anti-rollback: devices refuse releases of this model with a lower security version (integer)')
      .option('--expires-at <time>', 'devices refuse to install this release after this ISO 8601 time')
      .option(
        '--skip-bundle-checks',
        "FOR TESTING THE AGENTS' SAFETY NET ONLY: publish without checking that the model loads, fits its tokenizer and yields finite logits (the manifest records the skip)",
      ),
  ).action(async (o: CommonOpts & { modelDir: string; modelId: string; version: string; entry?: string; key?: string; kmsKey?: string; maxPerplexityIncrease?: string; securityVersion?: string; expiresAt?: string; skipBundleChecks?: boolean }) => {
    const maxPerplexityIncrease = o.maxPerplexityIncrease === undefined ? undefined : Number(o.maxPerplexityIncrease);
    if (maxPerplexityIncrease !== undefined && !(Number.isFinite(maxPerplexityIncrease) && maxPerplexityIncrease >= 0)) {
      throw new ValidationError(`--max-perplexity-increase must be a fraction >= 0, e.g. 0.05; got ${o.maxPerplexityIncrease}`);
    }
    const profile = await profileFrom(o);
    const signer = signerFor(o, profile);
    if (o.skipBundleChecks) {
      process.stderr.write(
        'WARNING: --skip-bundle-checks: publishing without checking that the model runs. This is for testing the agents\' safety net only; ' +
          'devices will refuse a bundle that fails the checks, and the version stays published (immutable).\n',
      );
    }
    const bar = showBars(o) ? new cliProgress.SingleBar({ format: 'upload [{bar}] {percentage}% {file}', stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
    let started = false;
    const result = await publishBundle({
      s3: createS3Client(profile),
      bucket: profile.s3.bucket,
      signer,
      modelDir: o.modelDir,
      modelId: o.modelId,
      version: o.version,
      entry: o.entry,
      maxPerplexityIncrease,
      skipBundleChecks: o.skipBundleChecks === true,
      ...(o.securityVersion !== undefined ? { securityVersion: intFlag(o.securityVersion, '--security-version', 0, 2 ** 31 - 1) } : {}),
      ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}),
      onProgress: (done, total, file) => {
        if (!bar) return;
        if (!started) bar.start(total, 0, { file });
        started = true;
        bar.update(done, { file });
      },
    });
    bar?.stop();
    out(o, result, () =>
      [
        `published ${result.modelId}@${result.version} to s3://${result.bucket}/${result.prefix}`,
        table(
          ['file', 'role', 'bytes', 'sha256'],
          result.files.map((f) => [f.name, f.role, f.size, f.sha256.slice(0, 16)]),
        ),
        `manifest sha256 ${result.manifestSha256}  signed by ${result.signature.keyId}`,
        result.check === 'skipped'
          ? 'bundle check: SKIPPED (--skip-bundle-checks; recorded in the manifest)'
          : `bundle check: loads in onnxruntime, tokenizer ${result.check.tokenizerVocabSize} ids for ${result.check.modelVocabSize} logits, finite logits, first token ${JSON.stringify(result.check.tokenText)}`,
        ...(result.ignored.length ? [`not shipped: ${result.ignored.join(', ')}`] : []),
      ].join('\n'),
    );
  });

  addRolloutFlags(
    withProfile(
      program
        .command('rollout')
        .description('Deploy a published model version, or publish and deploy an agent package (self-update), to a thing group as an IoT Job')
        .option('--model <id>', 'model id')
        .option('--version <version>', 'published model version')
        .option('--agent-package <file...>', 'agent package(s) fleetlm-agent-<version>-linux-<arch>.tar.gz: sign, publish, and update the agent (one file per arch)')
        .option('--confirm-timeout <sec>', 'agent update: seconds the new agent has to connect and report before the device rolls back (default 120)')
        .option('--key <pem>', 'agent update: EC P-256 private key that signs the agent manifest (local mode)')
        .option('--kms-key <arn>', 'agent update: AWS KMS key that signs the agent manifest (cloud)')
        .option('--group <group>', 'thing group to deploy to')
        .option('--thing <name...>', 'individual things to deploy to')
        .option('--job-id <id>', 'job id (default fleetlm-{model}-{version}-{time})'),
    ),
  ).action(async (o: CommonOpts & Record<string, string | boolean | undefined> & { model?: string; version?: string; agentPackage?: string[]; group?: string; thing?: string[]; jobId?: string; key?: string; kmsKey?: string }) => {
    const profile = await profileFrom(o);
    const iot = createIotClient(profile);
    if (o.agentPackage) {
      if (o.model || o.version) throw new ValidationError('--agent-package rolls out the agent; it cannot be combined with --model/--version');
      await rolloutAgent(iot, profile, o as CommonOpts & Record<string, string | boolean | undefined> & { agentPackage: string[]; group?: string; thing?: string[]; jobId?: string; key?: string; kmsKey?: string });
      return;
    }
    if (!o.model || !o.version) throw new ValidationError('rollout needs --model ID --version V (a published model) or --agent-package FILE (an agent update)');
    const req: RolloutRequest = { modelId: o.model, version: o.version, group: o.group, things: o.thing, jobId: o.jobId, settings: rolloutSettings(o) };
    const s3 = createS3Client(profile);
    if (req.settings?.canaryPercent !== undefined) {
      await rolloutWithCanary(iot, modelCanaryPlan(iot, s3, profile, req), o);
      return;
    }
    const result = await createRollout(iot, s3, profile, req);
    if (!o.json) process.stdout.write(`created job ${result.jobId}: ${result.modelId}@${result.version} -> ${result.targetCount} device(s)\n`);
    if (o.watch) {
      const final = await follow(iot, result.jobId, o);
      if (o.json) out(o, { ...result, final }, () => '');
      assertJobSucceeded(final);
      return;
    }
    if (o.json) out(o, result, () => '');
  });

  withProfile(
    program
      .command('status')
      .description("Per-device progress of a rollout job (and of its canary job <job>-canary, when it had one)")
      .argument('<job>', 'job id')
      .option('--watch', 'refresh until the job is done; exit 0 only if every device succeeded (3 failed/aborted/canceled or canary failed, 4 timed out)')
      .option('--watch-timeout <sec>', 'with --watch: give up after this many seconds (exit 4)'),
  ).action(async (jobId: string, o: CommonOpts & { watch?: boolean; watchTimeout?: string }) => {
    const iot = createIotClient(await profileFrom(o, { bucket: false }));
    if (o.watch) {
      const p = await followRollout(iot, jobId, o);
      if (o.json) out(o, p, () => '');
      assertJobSucceeded(p);
      return;
    }
    const { main, canary } = await rolloutProgress(iot, jobId);
    const shown = main ? { ...main, ...(canary ? { canary } : {}) } : { jobId, status: 'NOT_CREATED', counts: {}, devices: [], done: canary ? TERMINAL_JOB_STATUSES.has(canary.status) : true, canary };
    out(o, shown, () =>
      [
        ...(canary ? [`canary ${formatProgress(canary)}`] : []),
        main
          ? formatProgress(main)
          : canary && TERMINAL_JOB_STATUSES.has(canary.status) && !jobSucceeded(canary)
            ? `job ${jobId} will not be created: its canary ended ${canary.status}, so the other devices were not notified`
            : `job ${jobId} not created yet: the other devices get it once every canary device SUCCEEDED`,
      ].join('\n'),
    );
  });

  withProfile(
    program
      .command('cancel')
      .description('Cancel a rollout job, and its canary job <job>-canary when it has one')
      .argument('<job>', 'job id')
      .option('--force', 'also cancel executions already IN_PROGRESS'),
  ).action(async (jobId: string, o: CommonOpts & { force?: boolean }) => {
    const iot = createIotClient(await profileFrom(o, { bucket: false }));
    const canceled = await cancelRolloutWithCanary(iot, jobId, { force: o.force, comment: 'canceled with fleetlm cancel' });
    const { main, canary } = await rolloutProgress(iot, jobId, { details: false });
    out(o, { jobId, canceled, ...(main ? { status: main.status, counts: main.counts } : {}), ...(canary ? { canary: { jobId: canary.jobId, status: canary.status, counts: canary.counts } } : {}) }, () =>
      [canary, main]
        .filter((p): p is JobProgress => p !== undefined)
        .map((p) => `${canceled.includes(p.jobId) ? 'canceled' : 'left'} ${p.jobId}: ${p.status} ${JSON.stringify(p.counts)}`)
        .join('\n'),
    );
  });

  addRolloutFlags(
    withProfile(
      program
        .command('rollback')
        .description('Roll the group back to the last version that succeeded on it before the current one')
        .requiredOption('--group <group>', 'thing group')
        .option('--model <id>', 'only consider deployments of this model')
        .option('--key <pem>', 'fleet signing key (local mode): also sign a rollback authorization, so devices accept a lower security version')
        .option('--kms-key <arn>', 'KMS fleet signing key: as --key, in the cloud')
        .option('--authorization <file>', 'a signed rollback authorization for this group from `fleetlm authorize-rollback` (instead of --key/--kms-key)'),
    ),
  ).action(async (o: CommonOpts & Record<string, string | boolean | undefined> & { group: string; model?: string; key?: string; kmsKey?: string; authorization?: string }) => {
    if (o.authorization && (o.key || o.kmsKey)) throw new ValidationError('pass --authorization or --key/--kms-key, not both');
    if (o.canary !== undefined) throw new ValidationError('rollback deploys a version that already ran on the group to all of it at once; --canary applies to rollout');
    const profile = await profileFrom(o);
    const iot = createIotClient(profile);
    const signer = o.key || o.kmsKey ? signerFor(o, profile) : undefined;
    const authorization = o.authorization ? readAuthorizationFile(o.authorization) : undefined;
    const rb = await rollbackGroup(iot, createS3Client(profile), profile, o.group, { modelId: o.model, settings: rolloutSettings(o), signer, authorization });
    const result = rb.rollout;
    if (!o.json) {
      process.stdout.write(
        `rolling ${o.group} back from ${rb.from.modelId}@${rb.from.version} (${rb.from.jobId}, ${rb.from.status}${rb.canceled ? ', canceled' : ''}) to ${rb.to.version} (last succeeded in ${rb.to.jobId}): job ${result.jobId}\n`,
      );
    }
    const final = o.watch ? await follow(iot, result.jobId, o) : undefined;
    if (o.json) out(o, { from: rb.from, to: rb.to, canceled: rb.canceled, jobId: result.jobId, final }, () => '');
    if (final) assertJobSucceeded(final);
  });

  // Separation of duties: whoever may sign (publisher) issues the scoped permission, whoever may create jobs
  // (rollout operator) uses it with `rollback --authorization`; neither needs the other's rights.
  withProfile(
    program
      .command('authorize-rollback')
      .description('Sign a rollback authorization for one model version, scoped to thing groups and/or things (for rollback --authorization)')
      .requiredOption('--model <id>', 'model id')
      .requiredOption('--version <version>', 'the older version devices may install below their security floor')
      .option('--group <group...>', 'thing groups whose devices may use it')
      .option('--thing <name...>', 'things that may use it')
      .option('--valid-hours <h>', 'validity in hours, 1..168 (default 24)')
      .option('--key <pem>', 'fleet signing key (local mode)')
      .option('--kms-key <arn>', 'KMS fleet signing key (cloud)')
      .requiredOption('--out <file>', 'JSON file to write the signed authorization to'),
  ).action(async (o: CommonOpts & { model: string; version: string; group?: string[]; thing?: string[]; validHours?: string; key?: string; kmsKey?: string; out: string }) => {
    if (!o.group?.length && !o.thing?.length) throw new ValidationError('a rollback authorization names its devices: pass --group G and/or --thing T');
    const validHours = o.validHours === undefined ? 24 : intFlag(o.validHours, '--valid-hours', 1, MAX_ROLLBACK_AUTHORIZATION_MS / 3600_000);
    // A local key needs no account; a KMS key needs the profile's region and credentials.
    const signer = signerFor(o, o.key ? undefined : await profileFrom(o, { bucket: false }));
    const signed = await signRollbackAuthorization({ modelId: o.model, version: o.version, scope: { thingGroups: o.group ?? [], things: o.thing ?? [] } }, signer, { validForMs: validHours * 3600_000 });
    await writeFileAtomic(o.out, `${JSON.stringify(signed, null, 2)}\n`);
    const auth = readRollbackAuthorization(signed);
    out(o, { file: o.out, ...auth }, () => `wrote ${o.out}: ${auth.modelId}@${auth.version} for groups [${auth.scope.thingGroups.join(', ')}] things [${auth.scope.things.join(', ')}], valid until ${auth.expiresAt}`);
  });

  withProfile(
    program
      .command('telemetry')
      .description('Latency, tokens/s, memory and energy per device and per model version')
      .option('--since <minutes>', 'only messages from the last n minutes'),
  ).action(async (o: CommonOpts & { since?: string }) => {
    const profile = await profileFrom(o, { bucket: false });
    const skips = new TelemetrySkips();
    let messages = await readTelemetryFor(profile, skips);
    if (o.since) {
      const cutoff = Date.now() - intFlag(o.since, '--since', 1, 10_000_000) * 60_000;
      messages = messages.filter((m) => m.timestamp >= cutoff);
    }
    const byDevice = summarise(messages, 'device');
    const byVersion = summarise(messages, 'version');
    const render = (title: string, s: TelemetrySummary[]) =>
      `${title}\n${table(
        [title.startsWith('per device') ? 'device' : 'model version', 'msgs', 'devices', 'requests', 'first token ms p50', 'p95', 'tokens/s p50', 'RSS MB', 'energy J'],
        s.map((x) => [x.key, x.messages, x.devices, x.requests, x.firstTokenMsP50, x.firstTokenMsP95, x.tokensPerSecondP50, x.rssMb, `${fmtNum(x.energyJ)}${x.energyEstimated ? ' (est)' : ''}`]),
      )}`;
    const skipped = { newerSchema: skips.newerMessages, invalid: skips.invalid };
    out(o, { messages: messages.length, skipped, byDevice, byVersion }, () => `${render('per device', byDevice)}\n\n${render('per model version', byVersion)}`);
  });

  program
    .command('keygen')
    .description('Create an ECDSA P-256 key pair for signing manifests in local mode')
    .requiredOption('--out-dir <dir>', 'writes fleet-signing-key.pem and fleet-public-key.pem here')
    .option('--force', 'replace an existing key pair (devices provisioned with the old public key will refuse every later release)')
    .option('--json', 'machine-readable output')
    .action(async (o: { outDir: string; force?: boolean; json?: boolean }) => {
      const priv = path.join(o.outDir, 'fleet-signing-key.pem');
      const pub = path.join(o.outDir, 'fleet-public-key.pem');
      const existing = [priv, pub].filter((f) => existsSync(f));
      if (existing.length > 0 && !o.force) {
        throw new ValidationError(
          `${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}: every device provisioned with that public key would refuse releases signed by a new one; keep the key, or pass --force to replace it`,
          { code: 'VALIDATION_KEY_EXISTS' },
        );
      }
      const pair = generateSigningKeyPair();
      // 0600 from the first byte: the private key is never readable by others, not even briefly.
      await writeFileAtomic(priv, pair.privateKeyPem, { mode: 0o600 });
      await writeFileAtomic(pub, pair.publicKeyPem);
      out(o, { privateKey: priv, publicKey: pub, replaced: existing.length > 0 }, () => `wrote ${priv} (keep secret) and ${pub} (give to agents)${existing.length > 0 ? '; the previous key pair was replaced (--force)' : ''}`);
    });

  withProfile(
    program
      .command('kms-public-key')
      .description("Export the KMS manifest-signing key's public key as PEM for agents")
      .option('--kms-key <arn>', 'KMS key (default: kmsKeyId in the profile)')
      .requiredOption('--out <file>', 'PEM file to write'),
  ).action(async (o: CommonOpts & { kmsKey?: string; out: string }) => {
    const profile = await profileFrom(o, { bucket: false });
    const keyId = o.kmsKey ?? profile.kmsKeyId;
    if (!keyId) throw new ValidationError('pass --kms-key ARN or set kmsKeyId in the profile');
    const pem = await exportKmsPublicKeyPem(createKmsClient(profile), keyId);
    await writeFileAtomic(o.out, pem);
    out(o, { keyId, publicKey: o.out }, () => `wrote ${o.out}`);
  });
}
