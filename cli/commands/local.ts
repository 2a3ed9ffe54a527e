// `fleetlm local`: run the local fleet hub (MQTT + IoT Jobs + IoT control plane + S3 + telemetry)
// in the foreground, or print the endpoints of one. Settings: defaults < FLEETLM_LOCAL_* env < flags.
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { TransportError, ValidationError, describeError } from '../../common/errors.ts';
import { parseJsonWith } from '../../common/validate.ts';
import { flagOf, parseFlags } from '../flag-names.ts';
import { startHub, type HubEndpoints } from '../../local-hub/hub.ts';

const DEFAULT_DIR = '.fleetlm/local';

const Port = z.coerce.number().int().min(0).max(65535);
const UpSettingsSchema = z
  .object({
    dir: z.string().min(1),
    mqttPort: Port.optional(),
    httpPort: Port.optional(),
    s3Port: Port.optional(),
    minuteMs: z.coerce.number().int().min(10).optional(),
    brokerUrl: z.string().regex(/^mqtts?:\/\/[^/]+$/, 'must be mqtt://host:port or mqtts://host:port').optional(),
    brokerUsername: z.string().min(1).optional(),
    brokerPassword: z.string().min(1).optional(),
    allowUnregistered: z.boolean(),
    json: z.boolean(),
    verbose: z.boolean(),
  })
  .strict();
type UpSettings = z.output<typeof UpSettingsSchema>;

const EndpointsFileSchema = z
  .object({
    region: z.string(),
    mqtt: z.object({ host: z.string(), port: z.number().int(), url: z.string() }),
    iotEndpoint: z.string().url(),
    s3: z.object({ endpoint: z.string().url(), bucket: z.string(), forcePathStyle: z.literal(true) }),
    credentials: z.object({ accessKeyId: z.string(), secretAccessKey: z.string() }),
    telemetryDir: z.string(),
  })
  .strict();

interface UpFlags {
  dir?: string;
  mqttPort?: string;
  httpPort?: string;
  s3Port?: string;
  minuteMs?: string;
  brokerUrl?: string;
  brokerUsername?: string;
  brokerPassword?: string;
  allowUnregistered?: boolean;
  json?: boolean;
  verbose?: boolean;
}

function localEnvName(key: string): string {
  return `FLEETLM_LOCAL_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Resolves `local up` settings: defaults < FLEETLM_LOCAL_* environment < flags. */
export function resolveUpSettings(flags: UpFlags, env: NodeJS.ProcessEnv = process.env): UpSettings {
  return parseFlags(
    UpSettingsSchema,
    {
      dir: flags.dir ?? env.FLEETLM_LOCAL_DIR ?? DEFAULT_DIR,
      mqttPort: flags.mqttPort ?? env.FLEETLM_LOCAL_MQTT_PORT,
      httpPort: flags.httpPort ?? env.FLEETLM_LOCAL_HTTP_PORT,
      s3Port: flags.s3Port ?? env.FLEETLM_LOCAL_S3_PORT,
      minuteMs: flags.minuteMs ?? env.FLEETLM_LOCAL_MINUTE_MS,
      brokerUrl: flags.brokerUrl ?? env.FLEETLM_LOCAL_BROKER_URL,
      brokerUsername: flags.brokerUsername ?? env.FLEETLM_LOCAL_BROKER_USERNAME,
      brokerPassword: flags.brokerPassword ?? env.FLEETLM_LOCAL_BROKER_PASSWORD,
      allowUnregistered: flags.allowUnregistered ?? false,
      json: flags.json ?? false,
      verbose: flags.verbose ?? false,
    },
    '`fleetlm local up` settings',
    // The environment sets these too.
    Object.fromEntries(['dir', 'mqttPort', 'httpPort', 's3Port', 'minuteMs', 'brokerUrl', 'brokerUsername', 'brokerPassword'].map((k) => [k, `${flagOf(k)} (or ${localEnvName(k)})`])),
  );
}

function describeEndpoints(e: HubEndpoints): string {
  return [
    `MQTT            ${e.mqtt.url}`,
    `IoT endpoint    ${e.iotEndpoint}`,
    `S3              ${e.s3.endpoint} (bucket ${e.s3.bucket}, path-style)`,
    `Region          ${e.region}`,
    `Credentials     ${e.credentials.accessKeyId} (secret in the hub directory's operator-credentials.json and endpoints.json, mode 600)`,
    `Telemetry dir   ${e.telemetryDir}`,
  ].join('\n');
}

/**
 * The ports a hub in `dir` last listened on (its endpoints.json), so a restart keeps the agent configs and
 * operator profiles written against it valid. A missing or unreadable file gives none (free ports).
 */
export function previousPorts(dir: string): { mqttPort?: number; httpPort?: number; s3Port?: number } {
  const file = path.resolve(dir, 'endpoints.json');
  if (!existsSync(file)) return {};
  try {
    const e = EndpointsFileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
    return { mqttPort: e.mqtt.port, httpPort: Number(new URL(e.iotEndpoint).port), s3Port: Number(new URL(e.s3.endpoint).port) };
  } catch {
    return {};
  }
}

async function up(flags: UpFlags): Promise<void> {
  const s = resolveUpSettings(flags);
  if (s.verbose) process.stderr.write(`fleetlm local up settings: ${JSON.stringify({ ...s, brokerPassword: s.brokerPassword && '***' })}\n`);
  const prev = previousPorts(s.dir);
  // An external broker's port is not the hub's to keep.
  const ports = { mqttPort: s.mqttPort ?? (s.brokerUrl ? undefined : prev.mqttPort), httpPort: s.httpPort ?? prev.httpPort, s3Port: s.s3Port ?? prev.s3Port };
  const reused = (['mqttPort', 'httpPort', 's3Port'] as const).filter((k) => s[k] === undefined && ports[k] !== undefined);
  if (reused.length > 0 && s.verbose) process.stderr.write(`reusing ${reused.join(', ')} from ${path.resolve(s.dir, 'endpoints.json')}\n`);
  const hub = await startHub({
    dir: s.dir,
    ...ports,
    clock: s.minuteMs === undefined ? undefined : { minuteMs: s.minuteMs },
    allowUnregisteredThings: s.allowUnregistered,
    externalBroker: s.brokerUrl === undefined ? undefined : { url: s.brokerUrl, username: s.brokerUsername, password: s.brokerPassword },
    log: (line) => process.stderr.write(`${line}\n`),
  }).catch((err: unknown) => {
    if (reused.length === 0) throw err;
    throw new TransportError(
      `${describeError(err)}; the hub reuses the ports in ${path.resolve(s.dir, 'endpoints.json')} so the devices and profiles set up against it keep working: stop what holds the port, or pass --mqtt-port/--http-port/--s3-port (0 for a free one)`,
      { cause: err },
    );
  });
  // Handlers first: whoever reads the endpoints may signal at once, and an unhandled SIGINT kills the hub unstopped.
  const stopped = new Promise<void>((resolve) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  if (s.json) process.stdout.write(`${JSON.stringify(hub.endpoints, null, 2)}\n`);
  else {
    process.stdout.write(`${describeEndpoints(hub.endpoints)}\nEndpoints written to ${hub.endpointsFile}\n`);
    process.stdout.write(`Press Ctrl-C to stop.\n`);
  }
  await stopped;
  await hub.stop();
  if (!s.json) process.stderr.write('local hub stopped\n');
}

function endpoints(flags: { dir?: string; json?: boolean }): void {
  const dir = flags.dir ?? process.env.FLEETLM_LOCAL_DIR ?? DEFAULT_DIR;
  const file = path.resolve(dir, 'endpoints.json');
  if (!existsSync(file)) {
    throw new ValidationError(`no endpoints at ${file}: start a hub with \`fleetlm local up --dir ${dir}\``);
  }
  const e = parseJsonWith(EndpointsFileSchema, readFileSync(file, 'utf8'), `endpoints file ${file}`);
  process.stdout.write(flags.json ? `${JSON.stringify(e, null, 2)}\n` : `${describeEndpoints(e)}\n`);
}

/** Registers this command on the program. */
export function register(program: Command): void {
  const local = program.command('local').description('Run the local fleet hub (AWS IoT + Jobs + S3 on loopback).');
  local
    .command('up')
    .description('Start the hub in the foreground until Ctrl-C; writes DIR/endpoints.json and prints it.')
    .option('--dir <dir>', `state directory (default ${DEFAULT_DIR}, env FLEETLM_LOCAL_DIR)`)
    .option('--mqtt-port <port>', 'MQTT port on 127.0.0.1 (default: a free port)')
    .option('--http-port <port>', 'IoT control-plane port (default: a free port)')
    .option('--s3-port <port>', 'S3 port (default: a free port)')
    .option('--minute-ms <ms>', 'test/demo knob: real milliseconds per job "minute" (default 60000)')
    .option('--allow-unregistered', 'accept MQTT client ids that are not registered things')
    .option('--broker-url <url>', 'join this broker (e.g. mosquitto for MQTT 5/TLS) instead of the embedded one')
    .option('--broker-username <name>', 'username for --broker-url')
    .option('--broker-password <password>', 'password for --broker-url (env FLEETLM_LOCAL_BROKER_PASSWORD)')
    .option('--json', 'print endpoints as JSON')
    .option('--verbose', 'print resolved settings')
    .action((flags: UpFlags) => up(flags));
  local
    .command('endpoints')
    .description('Print the endpoints of a hub started with `fleetlm local up`.')
    .option('--dir <dir>', `state directory (default ${DEFAULT_DIR})`)
    .option('--json', 'print JSON')
    .action((flags: { dir?: string; json?: boolean }) => endpoints(flags));
}
