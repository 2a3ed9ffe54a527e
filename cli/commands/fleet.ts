// Operator commands: publish, rollout, status, cancel, rollback, devices, telemetry, keygen.
// Each works against the local hub (`--local [dir]`) or AWS (profile file, SDK credential chain).
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import type { IoTClient } from '@aws-sdk/client-iot';
import { TransportError, ValidationError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/atomic-file.ts';
import { generateSigningKeyPair, LocalKeySigner, type ManifestSigner } from '../../contracts/manifest-signing.ts';
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
import {
  DEFAULT_ROLLOUT,
  cancelRollout,
  createAgentRollout,
  createRollout,
  parsePercent,
  rollbackGroup,
  type RolloutSettings,
} from '../../fleet/rollout.ts';
import { parsePercentage } from '../../fleet/job-limits.ts';
import { formatProgress, getJobProgress, watchJob, type JobProgress } from '../../fleet/fleet-status.ts';
import { assertJobSucceeded, watchTimeoutError } from '../../fleet/job-outcome.ts';
import { readTelemetry, summarise, type TelemetrySummary } from '../../fleet/telemetry-reader.ts';

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

export function signerFor(opts: { key?: string; kmsKey?: string }, profile: FleetProfile): ManifestSigner {
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
  const kmsKey = opts.kmsKey ?? profile.kmsKeyId;
  if (kmsKey) return new KmsSigner(createKmsClient(profile), kmsKey);
  throw new ValidationError('publishing needs a signing key: --key key.pem (local) or --kms-key ARN (or kmsKeyId in the profile)');
}

function rolloutSettings(o: Record<string, string | boolean | undefined>): Partial<RolloutSettings> {
  const s: Partial<RolloutSettings> = {};
  if (typeof o.canary === 'string') s.canary = parsePercent(o.canary, '--canary');
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
  return s;
}

function addRolloutFlags(cmd: Command): Command {
  return cmd
    .option('--canary <percent>', 'first wave as a share of the group, e.g. 5%; the rest follow once it succeeds')
    .option('--max-per-minute <n>', `notifications per minute, 1..1000 (default ${DEFAULT_ROLLOUT.maxPerMinute})`)
    .option('--abort-threshold <percent>', `cancel when this share of finished devices failed (default ${DEFAULT_ROLLOUT.abortThresholdPercent}%)`)
    .option('--abort-min-executed <n>', 'apply the abort threshold only after n devices finished (default: canary size or 1)')
    .option('--timeout-minutes <n>', `minutes a device may stay IN_PROGRESS (default ${DEFAULT_ROLLOUT.timeoutMinutes})`)
    .option('--retries <n>', `retries of a FAILED or TIMED_OUT execution, 0..10 (default ${DEFAULT_ROLLOUT.retries})`)
    .option('--presign-expires <sec>', `validity of presigned artifact URLs, 60..3600 (default ${DEFAULT_ROLLOUT.presignExpiresInSec})`)
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
  const result = await createAgentRollout(iot, profile, { packages: published, group: o.group, things: o.thing, jobId: o.jobId, settings, confirmTimeoutSec });
  if (!o.json) process.stdout.write(`created job ${result.jobId}: agent ${result.version} -> ${result.targetCount} device(s)\n`);
  const final = o.watch ? await follow(iot, result.jobId, o) : undefined;
  if (o.json) out(o, { ...result, published, final }, () => '');
  if (final) assertJobSucceeded(final);
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
      .option('--expires-at <time>', 'devices refuse to install this release after this ISO 8601 time'),
  ).action(async (o: CommonOpts & { modelDir: string; modelId: string; version: string; entry?: string; key?: string; kmsKey?: string; maxPerplexityIncrease?: string; securityVersion?: string; expiresAt?: string }) => {
    const maxPerplexityIncrease = o.maxPerplexityIncrease === undefined ? undefined : Number(o.maxPerplexityIncrease);
    if (maxPerplexityIncrease !== undefined && !(Number.isFinite(maxPerplexityIncrease) && maxPerplexityIncrease >= 0)) {
      throw new ValidationError(`--max-perplexity-increase must be a fraction >= 0, e.g. 0.05; got ${o.maxPerplexityIncrease}`);
    }
    const profile = await profileFrom(o);
    const signer = signerFor(o, profile);
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
    const result = await createRollout(iot, createS3Client(profile), profile, {
      modelId: o.model,
      version: o.version,
      group: o.group,
      things: o.thing,
      jobId: o.jobId,
      settings: rolloutSettings(o),
    });
    if (!o.json) process.stdout.write(`created job ${result.jobId}: ${result.modelId}@${result.version} -> ${result.targetCount} device(s)\n`);
    if (o.watch) {
      const final = await follow(iot, result.jobId, o);
      if (o.json) out(o, { ...result, final }, () => '');
      assertJobSucceeded(final);
      return;
    }
    if (o.json) out(o, result, () => '');
  });

  withProfile(program.command('status').description('Per-device progress of a rollout job').argument('<job>', 'job id').option('--watch', 'refresh until the job is done; exit 0 only if every device succeeded (3 failed/aborted/canceled, 4 timed out)').option('--watch-timeout <sec>', 'with --watch: give up after this many seconds (exit 4)')).action(
    async (jobId: string, o: CommonOpts & { watch?: boolean; watchTimeout?: string }) => {
      const iot = createIotClient(await profileFrom(o, { bucket: false }));
      const p = o.watch ? await follow(iot, jobId, o) : await getJobProgress(iot, jobId, { details: true });
      if (o.json) out(o, p, () => '');
      else if (!o.watch) process.stdout.write(`${formatProgress(p)}\n`);
      if (o.watch) assertJobSucceeded(p);
    },
  );

  withProfile(
    program.command('cancel').description('Cancel a rollout job').argument('<job>', 'job id').option('--force', 'also cancel executions already IN_PROGRESS'),
  ).action(async (jobId: string, o: CommonOpts & { force?: boolean }) => {
    const iot = createIotClient(await profileFrom(o, { bucket: false }));
    await cancelRollout(iot, jobId, { force: o.force, comment: 'canceled with fleetlm cancel' });
    const p = await getJobProgress(iot, jobId);
    out(o, p, () => `canceled ${jobId}: ${p.status} ${JSON.stringify(p.counts)}`);
  });

  addRolloutFlags(
    withProfile(
      program
        .command('rollback')
        .description('Roll the group back to the last version that succeeded on it before the current one')
        .requiredOption('--group <group>', 'thing group')
        .option('--model <id>', 'only consider deployments of this model')
        .option('--key <pem>', 'fleet signing key (local mode): also sign a rollback authorization, so devices accept a lower security version')
        .option('--kms-key <arn>', 'KMS fleet signing key: as --key, in the cloud'),
    ),
  ).action(async (o: CommonOpts & Record<string, string | boolean | undefined> & { group: string; model?: string; key?: string; kmsKey?: string }) => {
    const profile = await profileFrom(o);
    const iot = createIotClient(profile);
    const signer = o.key || o.kmsKey ? signerFor(o, profile) : undefined;
    const rb = await rollbackGroup(iot, createS3Client(profile), profile, o.group, { modelId: o.model, settings: rolloutSettings(o), signer });
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

  withProfile(
    program
      .command('telemetry')
      .description('Latency, tokens/s, memory and energy per device and per model version')
      .option('--since <minutes>', 'only messages from the last n minutes'),
  ).action(async (o: CommonOpts & { since?: string }) => {
    const profile = await profileFrom(o, { bucket: false });
    let messages = await readTelemetry(profile);
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
    out(o, { messages: messages.length, byDevice, byVersion }, () => `${render('per device', byDevice)}\n\n${render('per model version', byVersion)}`);
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
