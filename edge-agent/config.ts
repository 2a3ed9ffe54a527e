// Agent configuration: defaults in code < JSON file < FLEETLM_AGENT_* environment < command-line flags,
// validated once with zod. Test hooks (download throttle, sysfs root) are ordinary config keys.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith, parseWith } from '../common/validate.ts';
import { isThingName } from '../contracts/jobs-topics.ts';
import { PHASES } from './install-state-machine.ts';
import { isLoopback } from './loopback.ts';
import { UPDATE_STEPS } from './self-update/agent-updater.ts';
import { isHostPattern } from './url-policy.ts';

const Port = z.number().int().min(0).max(65535);
const PositiveMs = z.number().int().positive();

/** Download retry policy (edge-agent/downloader.ts RetryPolicy): failures in a row, backoff, and a deadline. */
const DEFAULT_RETRY = { maxAttempts: 50, initialDelayMs: 1000, maxDelayMs: 60_000, deadlineMs: 30 * 60_000 };
const RetryPolicySchema = z
  .object({
    /** Failed attempts in a row (no byte received) before the download fails with TRANSPORT. */
    maxAttempts: z.number().int().min(1).max(10_000).default(DEFAULT_RETRY.maxAttempts),
    /** First backoff; doubles per failure (jittered to 50-100%) up to maxDelayMs. */
    initialDelayMs: PositiveMs.default(DEFAULT_RETRY.initialDelayMs),
    maxDelayMs: PositiveMs.default(DEFAULT_RETRY.maxDelayMs),
    /** Longest time failing in a row, from the last byte received, before giving up. */
    deadlineMs: PositiveMs.default(DEFAULT_RETRY.deadlineMs),
  })
  .strict()
  .refine((r) => r.initialDelayMs <= r.maxDelayMs, { message: 'initialDelayMs must be <= maxDelayMs', path: ['initialDelayMs'] });

/**
 * Configs written before the retry policy (`fleetlm device` writes every default) carry `download.retries`
 * and `download.retryBaseMs`. They still load: the old defaults (5, 500) are dropped so the new policy
 * applies, and other values become `retry.maxAttempts` (retries + 1) and `retry.initialDelayMs`.
 */
function migrateLegacyRetry(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const { retries, retryBaseMs, ...rest } = raw as Record<string, unknown>;
  if (retries === undefined && retryBaseMs === undefined) return raw;
  const oldDefaults = (retries === undefined || retries === 5) && (retryBaseMs === undefined || retryBaseMs === 500);
  if (oldDefaults || rest.retry !== undefined) return rest;
  const retry: Record<string, unknown> = {};
  if (typeof retries === 'number') retry.maxAttempts = retries + 1;
  if (retryBaseMs !== undefined) retry.initialDelayMs = retryBaseMs;
  return { ...rest, retry };
}

export const AgentConfigSchema = z
  .object({
    thingName: z.string().refine(isThingName, 'must be 1-128 of [a-zA-Z0-9:_-]'),
    /**
     * Thing groups this device is in (written by `fleetlm device register --group`): a signed rollback scoped to a
     * group is accepted only by devices that list it here (contracts/rollback-authorization.ts).
     */
    thingGroups: z.array(z.string().refine(isThingName, 'must be 1-128 of [a-zA-Z0-9:_-]')).max(20).default([]),
    mqtt: z
      .object({
        host: z.string().min(1),
        port: Port.default(8883),
        /** Mutual TLS to AWS IoT Core; absent = plain TCP, allowed only for loopback brokers. */
        tls: z
          .object({
            certPath: z.string().min(1),
            keyPath: z.string().min(1),
            caPath: z.string().min(1).optional(),
          })
          .strict()
          .optional(),
        /**
         * Local hub: file (0600) holding this device's secret from `fleetlm device register --local`; the agent
         * logs in with username = thingName and this password. AWS IoT uses mqtt.tls instead.
         */
        passwordFile: z.string().min(1).optional(),
        keepAliveSec: z.number().int().min(5).max(1200).default(30),
        reconnectMinMs: PositiveMs.default(1000),
        reconnectMaxMs: PositiveMs.default(60_000),
        /** Seconds an MQTT request (jobs API round trip) may take before it is treated as lost. */
        requestTimeoutMs: PositiveMs.default(15_000),
      })
      .strict(),
    modelDir: z.string().min(1),
    stateDir: z.string().min(1),
    fleetPublicKeyPath: z.string().min(1),
    http: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: Port.default(8080),
        maxConcurrent: z.number().int().positive().default(4),
        /** Bearer token for the local API (edge-agent/api-guard.ts); needed to bind a non-loopback host. */
        apiToken: z.string().min(16, 'must be at least 16 characters').optional(),
        /** File holding the token (first line); preferred over apiToken so the config can stay world-readable. */
        apiTokenFile: z.string().min(1).optional(),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 8080, maxConcurrent: 4 }),
    download: z
      .preprocess(migrateLegacyRetry, z.object({
        maxArtifactBytes: z.number().int().positive().default(4 * 1024 ** 3),
        /** Free space that must remain on the model volume after every artifact is downloaded. */
        reserveFreeBytes: z.number().int().nonnegative().default(64 * 1024 ** 2),
        /** Retries for artifact and signature downloads; defaults ride out minutes of cellular dropout. */
        retry: RetryPolicySchema.default(DEFAULT_RETRY),
        /** Idle time on an HTTP response before the attempt is abandoned and retried. */
        idleTimeoutMs: PositiveMs.default(30_000),
        /** Test and bandwidth hook: caps download speed; 0 = unlimited. */
        throttleBytesPerSec: z.number().int().nonnegative().default(0),
        /**
         * Hosts job documents may download from (`host`, `host:port`, `*.domain`); unset = derived from
         * mqtt.host (edge-agent/url-policy.ts defaultAllowedHosts). https only, plain http to loopback only.
         */
        allowedHosts: z.array(z.string().refine(isHostPattern, 'must be host, host:port or *.domain')).max(64).optional(),
      })
      .strict())
      .default({
        maxArtifactBytes: 4 * 1024 ** 3,
        reserveFreeBytes: 64 * 1024 ** 2,
        retry: DEFAULT_RETRY,
        idleTimeoutMs: 30_000,
        throttleBytesPerSec: 0,
      }),
    /** IoT Jobs step timer: https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html (UpdateJobExecution). */
    jobs: z
      .object({
        /** Sent with start-next and every IN_PROGRESS update; the service times the execution out if no update comes in time. */
        stepTimeoutInMinutes: z.number().int().min(1).max(10080).default(10),
        /** Least time between heartbeat updates during long phases (download, health check); must be well under the step timeout. */
        heartbeatMs: PositiveMs.default(60_000),
        /** Crashes of the agent in one install phase of one job before the job is rolled back (AGENT_CRASH_LOOP). */
        crashLoopLimit: z.number().int().min(1).max(100).default(3),
      })
      .strict()
      .default({ stepTimeoutInMinutes: 10, heartbeatMs: 60_000, crashLoopLimit: 3 }),
    models: z
      .object({ keepVersions: z.number().int().min(1).max(20).default(2) })
      .strict()
      .default({ keepVersions: 2 }),
    runtime: z
      .object({
        /** onnxruntime intra-op threads; 0 = every core. */
        threads: z.number().int().nonnegative().default(0),
        allowSpinning: z.boolean().default(false),
        /**
         * onnxruntime execution providers in order of preference (docs/agent.md, "Execution providers"),
         * e.g. ["tensorrt", "cuda", "cpu"] on a Jetson with a GPU build; checked against the installed
         * onnxruntime at start-up.
         */
        executionProviders: z
          .array(z.string().regex(/^[a-z][a-z0-9_-]*$/, 'must be a provider name such as cpu, cuda, tensorrt'))
          .min(1)
          .refine((l) => new Set(l).size === l.length, 'must not repeat a provider')
          .default(['cpu']),
      })
      .strict()
      .default({ threads: 0, allowSpinning: false, executionProviders: ['cpu'] }),
    healthCheck: z
      .object({
        /** Ceiling on a whole health check (load + generate). */
        timeoutMs: PositiveMs.default(120_000),
      })
      .strict()
      .default({ timeoutMs: 120_000 }),
    telemetry: z
      .object({
        intervalMs: PositiveMs.default(60_000),
        /** Messages kept on disk while offline; the oldest are dropped beyond this. */
        bufferMaxMessages: z.number().int().positive().default(1000),
        /** Watts per fully busy CPU core, for energy estimates where no power rail can be read. */
        cpuWatts: z.number().positive().default(2.5),
        /** Test hook: where /sys lives (thermal zones, INA3221 rails). */
        sysfsRoot: z.string().default('/sys'),
      })
      .strict()
      .default({ intervalMs: 60_000, bufferMaxMessages: 1000, cpuWatts: 2.5, sysfsRoot: '/sys' }),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /**
     * Fault injection for tests: the process kills itself (SIGKILL) whenever this install phase starts running
     * (also on re-entry after a restart); under the self-update launcher, killAtUpdateStep SIGKILLs the process
     * group (agent and launcher, like a power cut) right after that step of an agent update's install.
     */
    testHooks: z
      .object({ killOnPhase: z.enum(PHASES).optional(), killAtUpdateStep: z.enum(UPDATE_STEPS).optional() })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (!c.mqtt.tls && !isLoopback(c.mqtt.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['mqtt', 'tls'],
        message: `is required for non-loopback host ${c.mqtt.host} (plain TCP is allowed only for 127.0.0.1, ::1, localhost)`,
      });
    }
    if (!isLoopback(c.http.host) && c.http.apiToken === undefined && c.http.apiTokenFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['http', 'apiToken'],
        message: `or http.apiTokenFile is required to bind non-loopback host ${c.http.host} (the local API would be open to the network)`,
      });
    }
    if (c.jobs.heartbeatMs * 2 > c.jobs.stepTimeoutInMinutes * 60_000) {
      ctx.addIssue({
        code: 'custom',
        path: ['jobs', 'heartbeatMs'],
        message: `must be at most half of jobs.stepTimeoutInMinutes (${c.jobs.stepTimeoutInMinutes} min = ${c.jobs.stepTimeoutInMinutes * 60_000} ms), got ${c.jobs.heartbeatMs}`,
      });
    }
    if (c.mqtt.reconnectMinMs > c.mqtt.reconnectMaxMs) {
      ctx.addIssue({ code: 'custom', path: ['mqtt', 'reconnectMinMs'], message: 'must be <= reconnectMaxMs' });
    }
  });

export type AgentConfig = z.output<typeof AgentConfigSchema>;
export type AgentConfigInput = z.input<typeof AgentConfigSchema>;

export { isLoopback };

/** `list`: comma-separated in the environment and `--set`. */
type Kind = 'string' | 'number' | 'boolean' | 'list';
/** Every leaf key settable from the environment or `--set`, with its type. */
export const CONFIG_KEYS: Readonly<Record<string, Kind>> = {
  thingName: 'string',
  thingGroups: 'list',
  'mqtt.host': 'string',
  'mqtt.port': 'number',
  'mqtt.tls.certPath': 'string',
  'mqtt.tls.keyPath': 'string',
  'mqtt.tls.caPath': 'string',
  'mqtt.passwordFile': 'string',
  'mqtt.keepAliveSec': 'number',
  'mqtt.reconnectMinMs': 'number',
  'mqtt.reconnectMaxMs': 'number',
  'mqtt.requestTimeoutMs': 'number',
  modelDir: 'string',
  stateDir: 'string',
  fleetPublicKeyPath: 'string',
  'http.host': 'string',
  'http.port': 'number',
  'http.maxConcurrent': 'number',
  'http.apiToken': 'string',
  'http.apiTokenFile': 'string',
  'download.maxArtifactBytes': 'number',
  'download.reserveFreeBytes': 'number',
  'download.retry.maxAttempts': 'number',
  'download.retry.initialDelayMs': 'number',
  'download.retry.maxDelayMs': 'number',
  'download.retry.deadlineMs': 'number',
  'download.idleTimeoutMs': 'number',
  'download.throttleBytesPerSec': 'number',
  'download.allowedHosts': 'list',
  'jobs.stepTimeoutInMinutes': 'number',
  'jobs.heartbeatMs': 'number',
  'jobs.crashLoopLimit': 'number',
  'models.keepVersions': 'number',
  'runtime.threads': 'number',
  'runtime.allowSpinning': 'boolean',
  'runtime.executionProviders': 'list',
  'healthCheck.timeoutMs': 'number',
  'telemetry.intervalMs': 'number',
  'telemetry.bufferMaxMessages': 'number',
  'telemetry.cpuWatts': 'number',
  'telemetry.sysfsRoot': 'string',
  logLevel: 'string',
  'testHooks.killOnPhase': 'string',
  'testHooks.killAtUpdateStep': 'string',
};

/** `mqtt.tls.certPath` -> `FLEETLM_AGENT_MQTT_TLS_CERT_PATH`. */
export function envNameFor(key: string): string {
  return `FLEETLM_AGENT_${key
    .split('.')
    .map((s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
    .join('_')}`;
}

function coerce(key: string, raw: string, source: string): string | number | boolean | string[] {
  const kind = CONFIG_KEYS[key];
  if (kind === undefined) {
    throw new ValidationError(`unknown config key ${key} in ${source}; allowed: ${Object.keys(CONFIG_KEYS).join(', ')}`);
  }
  if (kind === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ValidationError(`${source}: ${key} must be a number, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (kind === 'list') return raw.split(',').map((x) => x.trim());
  if (kind === 'boolean') {
    if (raw !== 'true' && raw !== 'false') throw new ValidationError(`${source}: ${key} must be true or false, got ${JSON.stringify(raw)}`);
    return raw === 'true';
  }
  return raw;
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function resolvePaths(raw: Record<string, unknown>, baseDir: string): void {
  const abs = (v: unknown) => (typeof v === 'string' && v.length > 0 ? path.resolve(baseDir, v) : v);
  for (const key of ['modelDir', 'stateDir', 'fleetPublicKeyPath']) if (raw[key] !== undefined) raw[key] = abs(raw[key]);
  const mqtt = raw.mqtt as Record<string, unknown> | undefined;
  const httpCfg = raw.http as Record<string, unknown> | undefined;
  if (httpCfg?.apiTokenFile !== undefined) httpCfg.apiTokenFile = abs(httpCfg.apiTokenFile);
  const tls = mqtt?.tls as Record<string, unknown> | undefined;
  if (mqtt?.passwordFile !== undefined) mqtt.passwordFile = abs(mqtt.passwordFile);
  if (tls) for (const key of ['certPath', 'keyPath', 'caPath']) if (tls[key] !== undefined) tls[key] = abs(tls[key]);
}

export interface ConfigSources {
  /** Path of the JSON config file (relative paths inside it resolve against its directory). */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** `key.path=value` overrides from `--set`, applied last. */
  overrides?: readonly string[];
}

/** Merges the config layers and validates the result once. */
export function loadAgentConfig(sources: ConfigSources): AgentConfig {
  let raw: Record<string, unknown> = {};
  if (sources.configPath) {
    let text: string;
    try {
      text = readFileSync(sources.configPath, 'utf8');
    } catch (err) {
      throw new ValidationError(`cannot read config file ${sources.configPath}: ${(err as Error).message}`, { cause: err });
    }
    raw = parseJsonWith(z.record(z.string(), z.unknown()), text, `agent config file ${sources.configPath}`);
    resolvePaths(raw, path.dirname(path.resolve(sources.configPath)));
  }
  const env = sources.env ?? {};
  const layered: Record<string, unknown> = {};
  for (const key of Object.keys(CONFIG_KEYS)) {
    const value = env[envNameFor(key)];
    if (value !== undefined) setPath(layered, key, coerce(key, value, `environment ${envNameFor(key)}`));
  }
  for (const item of sources.overrides ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ValidationError(`--set expects key.path=value, got ${JSON.stringify(item)}`);
    const key = item.slice(0, eq);
    setPath(layered, key, coerce(key, item.slice(eq + 1), '--set'));
  }
  resolvePaths(layered, process.cwd());
  const merged = deepMerge(raw, layered);
  return parseWith(AgentConfigSchema, merged, 'agent config');
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      typeof v === 'object' && v !== null && !Array.isArray(v) && typeof b === 'object' && b !== null && !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
