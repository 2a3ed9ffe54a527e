// `fleetlm device register`: creates a device's IoT identity and writes the agent's config.
// On AWS: thing, keys + certificate, policy and thing-principal attachments, group membership,
// and an agent.json for mutual TLS to the account's ATS endpoint. On the local hub (which has no
// certificate API) the thing and group are created the same way and the config uses plain TCP.
// https://docs.aws.amazon.com/iot/latest/developerguide/single-thing-provisioning.html
import { chmod, copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { z } from 'zod';
import {
  AddThingToThingGroupCommand,
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  CreateCertificateFromCsrCommand,
  CreateKeysAndCertificateCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  DeleteCertificateCommand,
  DescribeCertificateCommand,
  DescribeEndpointCommand,
  DetachPolicyCommand,
  DetachThingPrincipalCommand,
  ListThingPrincipalsCommand,
  ResourceAlreadyExistsException,
  UpdateCertificateCommand,
  type IoTClient,
} from '@aws-sdk/client-iot';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { TransportError, ValidationError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { issueDeviceSecret, writeDeviceSecretFile } from '../../local-hub/device-credentials.ts';
import { writeFileAtomic, writeJsonAtomic } from '../../common/atomic-file.ts';
import { parseWith } from '../../common/validate.ts';
import { AgentConfigSchema, type AgentConfig, type AgentConfigInput } from '../../edge-agent/config.ts';
import { isThingName } from '../../contracts/jobs-topics.ts';
import { createIotClient, createS3Client, describeProfile, loadProfile, requireBucket, type FleetProfile, type ProfileFlags } from '../../fleet/profile.ts';
import { PUBLIC_KEY_OBJECT } from '../../functions/shared/constants.ts';

/** Policy the fleet stack creates (`${prefix}-device`). */
export const DEFAULT_DEVICE_POLICY = 'fleetlm-device';

export interface RegisterOptions {
  thing: string;
  group?: string;
  /** agent.json path; certificate, key and public key are written beside it. */
  out: string;
  policy?: string;
  /** PEM to copy as the agent's fleet public key; default: the deployment's key from the bucket (AWS) or `<hub dir>/fleet-public-key.pem` (local). */
  fleetPublicKey?: string;
  modelDir?: string;
  stateDir?: string;
  httpPort?: number;
  /** Local hub directory, to find its default fleet public key. */
  localDir?: string;
  /**
   * AWS: a PEM certificate signing request made on the device (its key never leaves it); the certificate comes
   * from CreateCertificateFromCsr and no private key is written here.
   */
  csr?: string;
  /** With `csr`: where the device keeps its private key (agent.json's mqtt.tls.keyPath); default `<thing>.private.key` beside `out`. */
  deviceKeyPath?: string;
  /** sha256 (hex) of the fleet public key PEM: the artifacts stack's `ManifestPublicKeySha256` output. */
  fleetKeySha256?: string;
}

export interface RegisterResult {
  mode: 'aws' | 'local';
  thingName: string;
  group: string | null;
  certificateArn: string | null;
  files: { config: string; certificate: string | null; privateKey: string | null; fleetPublicKey: string; mqttPassword: string | null };
  mqtt: { host: string; port: number; tls: boolean };
  /** What local mode could not do, so nobody mistakes it for an AWS registration. */
  notes: string[];
}

async function call<T>(what: string, fn: () => Promise<T>, tolerate?: new (...args: never[]) => Error): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (tolerate && err instanceof tolerate) return undefined;
    throw new TransportError(`${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

async function ensureThing(iot: IoTClient, thing: string): Promise<void> {
  // CreateThing is idempotent for an existing thing with the same attributes; re-registering is allowed.
  await call(`CreateThing ${thing}`, () => iot.send(new CreateThingCommand({ thingName: thing })), ResourceAlreadyExistsException);
}

/**
 * The last step of a registration: a group rollout targets every member and waits for each, so a thing joins
 * its group only once its credentials and config exist. A failure here leaves a complete device outside the
 * group; registering again adds it.
 */
async function joinGroup(iot: IoTClient, thing: string, group: string): Promise<void> {
  await call(`CreateThingGroup ${group}`, () => iot.send(new CreateThingGroupCommand({ thingGroupName: group })), ResourceAlreadyExistsException);
  await call(`AddThingToThingGroup ${thing} -> ${group}`, () => iot.send(new AddThingToThingGroupCommand({ thingName: thing, thingGroupName: group })));
}

async function fleetPublicKey(profile: FleetProfile, opts: RegisterOptions, target: string): Promise<void> {
  if (opts.fleetPublicKey) {
    if (!existsSync(opts.fleetPublicKey)) throw new ValidationError(`--fleet-public-key ${opts.fleetPublicKey} does not exist`);
    if (opts.fleetKeySha256) checkFleetKeyPin(await readFile(opts.fleetPublicKey, 'utf8'), opts.fleetKeySha256, opts.fleetPublicKey);
    await copyFile(opts.fleetPublicKey, target);
    return;
  }
  if (profile.kind === 'local') {
    const candidate = path.join(opts.localDir ?? '.', 'fleet-public-key.pem');
    if (!existsSync(candidate)) {
      throw new ValidationError(
        `no fleet public key: pass --fleet-public-key PEM, or create ${candidate} with \`fleetlm keygen --out-dir ${opts.localDir ?? '.'}\``,
      );
    }
    await copyFile(candidate, target);
    return;
  }
  // Written by the artifacts stack's custom resource at deploy time.
  let pem: string;
  try {
    const obj = await createS3Client(profile).send(new GetObjectCommand({ Bucket: requireBucket(profile), Key: PUBLIC_KEY_OBJECT }));
    pem = await obj.Body!.transformToString();
  } catch (err) {
    throw new TransportError(
      `cannot read s3://${profile.s3.bucket}/${PUBLIC_KEY_OBJECT} (deploy the artifacts stack, or pass --fleet-public-key PEM)`,
      { cause: err },
    );
  }
  // Whoever can write the bucket could otherwise hand every new device their own key.
  if (!opts.fleetKeySha256) {
    throw new ValidationError(
      `refusing the fleet public key from s3://${profile.s3.bucket}/${PUBLIC_KEY_OBJECT} unchecked: pass --fleet-key-sha256 with the artifacts stack output ManifestPublicKeySha256 (or --fleet-public-key PEM)`,
    );
  }
  checkFleetKeyPin(pem, opts.fleetKeySha256, `s3://${profile.s3.bucket}/${PUBLIC_KEY_OBJECT}`);
  await writeFileAtomic(target, pem);
}

/** Throws unless sha256(`pem`) is `expected` (the stack output ManifestPublicKeySha256 hashes the PEM text). */
export function checkFleetKeyPin(pem: string, expected: string, source: string): void {
  if (!/^[0-9a-fA-F]{64}$/.test(expected)) throw new ValidationError(`--fleet-key-sha256 must be 64 hex characters; got ${JSON.stringify(expected)}`);
  const got = sha256Hex(Buffer.from(pem));
  if (got !== expected.toLowerCase()) {
    throw new ValidationError(`the fleet public key at ${source} has sha256 ${got}, not ${expected.toLowerCase()} (ManifestPublicKeySha256): refusing it`, {
      code: 'VALIDATION_FLEET_KEY',
    });
  }
}

interface CreatedCertificate {
  arn: string;
  id: string;
  /** Local files this run wrote for it (removed again when the run fails). */
  files: string[];
}

const CertificateRecordSchema = z.object({ certificateArn: z.string().min(1), certificateId: z.string().min(1) }).strict();

/**
 * The thing's certificate: the one an earlier run recorded beside the config when its files are still
 * there and it is still ACTIVE and attached (re-running register changes nothing), else a new one.
 * Policy and thing attachments are (re)applied either way; both calls are idempotent. A new certificate
 * whose attachments fail is detached, deactivated and deleted, and its key files removed, so a retry
 * never leaves ACTIVE certificates behind.
 */
async function ensureCertificate(
  iot: IoTClient,
  thing: string,
  policy: string,
  paths: { certificate: string; privateKey: string; record: string },
  csrPem?: string,
): Promise<{ arn: string; id: string; created: boolean; files: string[] }> {
  if (csrPem !== undefined) return certificateFromCsr(iot, thing, policy, paths, csrPem);
  const reused = await recordedCertificate(iot, thing, paths);
  if (reused) {
    await call(`AttachPolicy ${policy}`, () => iot.send(new AttachPolicyCommand({ policyName: policy, target: reused.certificateArn })));
    return { arn: reused.certificateArn, id: reused.certificateId, created: false, files: [] };
  }
  const keys = await call('CreateKeysAndCertificate', () => iot.send(new CreateKeysAndCertificateCommand({ setAsActive: true })));
  if (!keys?.certificateArn || !keys.certificateId || !keys.certificatePem || !keys.keyPair?.PrivateKey) throw new TransportError('CreateKeysAndCertificate returned no certificate or key');
  const created: CreatedCertificate = { arn: keys.certificateArn, id: keys.certificateId, files: [] };
  const privateKey = keys.keyPair.PrivateKey;
  return attachAndRecord(iot, thing, policy, paths, created, keys.certificatePem, async () => {
    // The private key exists only in this response; write it before anything else can fail.
    created.files.push(paths.privateKey);
    await writeFileAtomic(paths.privateKey, privateKey, { mode: 0o600 });
    await chmod(paths.privateKey, 0o600);
  });
}

/**
 * Writes the certificate, attaches the device policy and the thing, and records the certificate beside the
 * config; if any step fails, removes what this run created (certificate, attachments, files) and rethrows.
 */
async function attachAndRecord(
  iot: IoTClient,
  thing: string,
  policy: string,
  paths: { certificate: string; record: string },
  created: CreatedCertificate,
  certificatePem: string,
  first: () => Promise<void> = async () => {},
): Promise<CreatedCertificate & { created: true }> {
  try {
    await first();
    created.files.push(paths.certificate);
    await writeFileAtomic(paths.certificate, certificatePem);
    await call(`AttachPolicy ${policy}`, () => iot.send(new AttachPolicyCommand({ policyName: policy, target: created.arn })));
    await call(`AttachThingPrincipal ${thing}`, () => iot.send(new AttachThingPrincipalCommand({ thingName: thing, principal: created.arn })));
    created.files.push(paths.record);
    await writeJsonAtomic(paths.record, { certificateArn: created.arn, certificateId: created.id });
  } catch (err) {
    await removeCertificate(iot, thing, policy, created);
    throw err;
  }
  return { ...created, created: true };
}

/** A new certificate for the device's own key (CreateCertificateFromCsr): only the certificate is written here. */
async function certificateFromCsr(
  iot: IoTClient,
  thing: string,
  policy: string,
  paths: { certificate: string; record: string },
  csrPem: string,
): Promise<{ arn: string; id: string; created: boolean; files: string[] }> {
  const cert = await call('CreateCertificateFromCsr', () => iot.send(new CreateCertificateFromCsrCommand({ certificateSigningRequest: csrPem, setAsActive: true })));
  if (!cert?.certificateArn || !cert.certificateId || !cert.certificatePem) throw new TransportError('CreateCertificateFromCsr returned no certificate');
  const created: CreatedCertificate = { arn: cert.certificateArn, id: cert.certificateId, files: [] };
  return attachAndRecord(iot, thing, policy, paths, created, cert.certificatePem);
}

async function recordedCertificate(iot: IoTClient, thing: string, paths: { certificate: string; privateKey: string; record: string }) {
  if (![paths.certificate, paths.privateKey, paths.record].every((f) => existsSync(f))) return undefined;
  let record: z.output<typeof CertificateRecordSchema>;
  try {
    record = parseWith(CertificateRecordSchema, JSON.parse(await readFile(paths.record, 'utf8')), 'certificate record');
  } catch {
    return undefined;
  }
  const principals = (await call(`ListThingPrincipals ${thing}`, () => iot.send(new ListThingPrincipalsCommand({ thingName: thing }))))?.principals ?? [];
  if (!principals.includes(record.certificateArn)) return undefined;
  const described = await call(`DescribeCertificate ${record.certificateId}`, () => iot.send(new DescribeCertificateCommand({ certificateId: record.certificateId })));
  return described?.certificateDescription?.status === 'ACTIVE' ? record : undefined;
}

/** Undoes a certificate this run created: detach, deactivate, delete, remove its files. Best effort: the original error matters more. */
async function removeCertificate(iot: IoTClient, thing: string, policy: string, cert: CreatedCertificate): Promise<void> {
  const quiet = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch {
      // Not attached (the step that failed), or already gone.
    }
  };
  await quiet(() => iot.send(new DetachThingPrincipalCommand({ thingName: thing, principal: cert.arn })));
  await quiet(() => iot.send(new DetachPolicyCommand({ policyName: policy, target: cert.arn })));
  await quiet(() => iot.send(new UpdateCertificateCommand({ certificateId: cert.id, newStatus: 'INACTIVE' })));
  await quiet(() => iot.send(new DeleteCertificateCommand({ certificateId: cert.id })));
  for (const f of cert.files) await rm(f, { force: true });
}

/** Registers one device and writes its agent config (and credentials) next to `opts.out`. */
export async function registerDevice(profile: FleetProfile, iot: IoTClient, opts: RegisterOptions): Promise<RegisterResult> {
  if (!isThingName(opts.thing)) throw new ValidationError(`--thing must be 1-128 of [a-zA-Z0-9:_-]; got ${JSON.stringify(opts.thing)}`);
  if (opts.group !== undefined && !isThingName(opts.group)) throw new ValidationError(`--group must be 1-128 of [a-zA-Z0-9:_-]; got ${JSON.stringify(opts.group)}`);
  const out = path.resolve(opts.out);
  const dir = path.dirname(out);
  const files: RegisterResult['files'] = { config: out, certificate: null, privateKey: null, fleetPublicKey: path.join(dir, 'fleet-public-key.pem'), mqttPassword: null };
  const notes: string[] = [];
  await mkdir(dir, { recursive: true });
  if (opts.csr && profile.kind === 'local') throw new ValidationError('--csr applies to AWS IoT; the local hub issues a device secret instead');
  let csrPem: string | undefined;
  if (opts.csr) {
    // The device generated its key and this request; the key never passes through the operator's machine.
    csrPem = await readFile(opts.csr, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new ValidationError(`cannot read --csr ${opts.csr}: ${err.code ?? err.message}`, { cause: err });
    });
    if (!/^-----BEGIN (NEW )?CERTIFICATE REQUEST-----/m.test(csrPem)) throw new ValidationError(`--csr ${opts.csr} is not a PEM certificate signing request`);
  }
  // The fleet key is checked before anything is created, so a refused key leaves no half-registered thing.
  await fleetPublicKey(profile, opts, files.fleetPublicKey);
  await ensureThing(iot, opts.thing);

  let mqtt: AgentConfigInput['mqtt'];
  // Artifact hosts: the local hub's S3 store exactly (host:port); on AWS the agent derives the region's S3 hosts.
  let allowedHosts: string[] | undefined;
  let certificateArn: string | null = null;
  let createdCertificate: CreatedCertificate | undefined;
  if (profile.kind === 'local') {
    if (!profile.mqtt) throw new ValidationError(`local profile ${profile.source} has no MQTT endpoint`);
    // The hub keeps only a hash of the secret; the device gets it once, in a 0600 file beside agent.json.
    // Registering again rotates it (the old secret stops working at the device's next connect).
    files.mqttPassword = path.join(dir, `${opts.thing}.mqtt-password`);
    await writeDeviceSecretFile(files.mqttPassword, await issueDeviceSecret(path.dirname(profile.source), opts.thing));
    mqtt = { host: profile.mqtt.host, port: profile.mqtt.port, passwordFile: files.mqttPassword };
    if (profile.s3.endpoint) allowedHosts = [new URL(profile.s3.endpoint).host];
    notes.push(
      'local hub: no certificate was created (the hub has no CreateKeysAndCertificate); the agent connects over plain TCP on loopback with username = thing name and the device secret in mqtt.passwordFile',
    );
  } else {
    const policy = opts.policy ?? DEFAULT_DEVICE_POLICY;
    files.certificate = path.join(dir, `${opts.thing}.cert.pem`);
    files.privateKey = opts.deviceKeyPath ? path.resolve(opts.deviceKeyPath) : path.join(dir, `${opts.thing}.private.key`);
    const cert = await ensureCertificate(
      iot,
      opts.thing,
      policy,
      { certificate: files.certificate, privateKey: files.privateKey, record: path.join(dir, `${opts.thing}.certificate.json`) },
      csrPem,
    );
    if (csrPem !== undefined) notes.push(`certificate from the device's CSR: copy ${files.certificate} to the device; agent.json expects its private key at ${files.privateKey}`);
    certificateArn = cert.arn;
    createdCertificate = cert.created ? cert : undefined;
    try {
      const endpoint = await call('DescribeEndpoint iot:Data-ATS', () => iot.send(new DescribeEndpointCommand({ endpointType: 'iot:Data-ATS' })));
      if (!endpoint?.endpointAddress) throw new TransportError('DescribeEndpoint returned no address');
      // No caPath: the ATS endpoint chains to Amazon Root CA 1, which Node's bundled CA list includes.
      mqtt = { host: endpoint.endpointAddress, port: 8883, tls: { certPath: files.certificate, keyPath: files.privateKey } };
    } catch (err) {
      if (createdCertificate) await removeCertificate(iot, opts.thing, policy, createdCertificate);
      throw err;
    }
  }
  let config: AgentConfig;
  try {
    config = parseWith(
      AgentConfigSchema,
      {
        thingName: opts.thing,
        mqtt,
        modelDir: path.resolve(opts.modelDir ?? path.join(dir, 'models')),
        stateDir: path.resolve(opts.stateDir ?? path.join(dir, 'state')),
        fleetPublicKeyPath: files.fleetPublicKey,
        // The agent accepts a signed rollback scoped to a group only if it knows it is in that group.
        ...(opts.group ? { thingGroups: [opts.group] } : {}),
        ...(allowedHosts ? { download: { allowedHosts } } : {}),
        ...(opts.httpPort !== undefined ? { http: { host: '127.0.0.1', port: opts.httpPort, maxConcurrent: 4 } } : {}),
      } satisfies AgentConfigInput,
      'agent config',
    );
    await writeJsonAtomic(out, config);
  } catch (err) {
    // Nothing half-written: a certificate this run created is undone (see ensureCertificate).
    if (createdCertificate) await removeCertificate(iot, opts.thing, opts.policy ?? DEFAULT_DEVICE_POLICY, createdCertificate);
    throw err;
  }
  // Last: a thing in its group is a rollout target, so only a complete device joins (a failed run leaves none there).
  if (opts.group) await joinGroup(iot, opts.thing, opts.group);
  return {
    mode: profile.kind,
    thingName: opts.thing,
    group: opts.group ?? null,
    certificateArn,
    files,
    mqtt: { host: config.mqtt.host, port: config.mqtt.port, tls: Boolean(config.mqtt.tls) },
    notes,
  };
}

interface CliOpts extends ProfileFlags {
  thing: string;
  group?: string;
  out: string;
  policy?: string;
  fleetPublicKey?: string;
  modelDir?: string;
  stateDir?: string;
  httpPort?: string;
  csr?: string;
  deviceKeyPath?: string;
  fleetKeySha256?: string;
  json?: boolean;
  verbose?: boolean;
}

/** Registers this command on the program. */
export function register(program: Command): void {
  const device = program.command('device').description('register devices with the fleet');
  device
    .command('register')
    .description('create a thing (certificate, policy, group) and write its agent config')
    .requiredOption('--thing <name>', 'thing name (also the MQTT client id)')
    .option('--group <group>', 'thing group to add it to (e.g. fleetlm-rpi5)')
    .requiredOption('--out <file>', 'agent config to write; credentials go beside it')
    .option('--policy <name>', `IoT policy to attach (default ${DEFAULT_DEVICE_POLICY})`)
    .option('--fleet-public-key <pem>', 'manifest public key for the agent (default: from the deployment)')
    .option('--model-dir <dir>', 'agent model directory (default: models/ beside --out)')
    .option('--state-dir <dir>', 'agent state directory (default: state/ beside --out)')
    .option('--http-port <port>', 'agent local API port (default 8080)')
    .option('--csr <file>', 'AWS: certificate signing request made on the device (CreateCertificateFromCsr; no key is created here)')
    .option('--device-key-path <path>', "with --csr: the device's private key path for agent.json (default <thing>.private.key beside --out)")
    .option('--fleet-key-sha256 <hex>', 'AWS: expected sha256 of the fleet public key (stack output ManifestPublicKeySha256; env FLEETLM_FLEET_KEY_SHA256)')
    .addOption(new Option('--local [dir]', 'use the local hub whose endpoints.json is in dir (default .fleetlm/local)'))
    .option('--profile <file>', 'AWS profile file (default ~/.fleetlm/profile.json)')
    .option('--aws-profile <name>', 'named AWS profile for credentials and region (default: AWS_PROFILE, else the SDK default chain)')
    .option('--region <region>', 'AWS region (overrides the profile and AWS_REGION)')
    .option('--bucket <bucket>', 'artifact bucket (overrides the profile)')
    .option('--json', 'machine-readable output on stdout')
    .option('--verbose', 'print the resolved profile on stderr')
    .action(async (o: CliOpts) => {
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      // The bucket is only read for the fleet public key when --fleet-public-key is not given.
      const profile = await loadProfile(o, process.env, { bucket: !o.fleetPublicKey });
      if (o.verbose) process.stderr.write(`profile: ${JSON.stringify(describeProfile(profile), null, 2)}\n`);
      let httpPort: number | undefined;
      if (o.httpPort !== undefined) {
        httpPort = Number(o.httpPort);
        if (!/^\d+$/.test(o.httpPort) || httpPort > 65535) throw new ValidationError(`--http-port must be an integer in 0..65535; got ${JSON.stringify(o.httpPort)}`);
      }
      const localDir = profile.kind === 'local' ? path.dirname(profile.source) : undefined;
      const result = await registerDevice(profile, createIotClient(profile), {
        thing: o.thing,
        group: o.group,
        out: o.out,
        policy: o.policy,
        fleetPublicKey: o.fleetPublicKey,
        modelDir: o.modelDir,
        stateDir: o.stateDir,
        httpPort,
        localDir,
        csr: o.csr,
        deviceKeyPath: o.deviceKeyPath,
        fleetKeySha256: o.fleetKeySha256 ?? process.env.FLEETLM_FLEET_KEY_SHA256,
      });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      const lines = [
        `registered ${result.thingName}${result.group ? ` in ${result.group}` : ''} (${result.mode})`,
        result.certificateArn ? `certificate ${result.certificateArn}` : null,
        `agent config ${result.files.config}`,
        result.files.certificate
          ? o.csr
            ? `certificate ${result.files.certificate} (from the device's CSR; its key stays on the device at ${result.files.privateKey})`
            : `certificate ${result.files.certificate}, private key ${result.files.privateKey} (mode 600)`
          : null,
        result.files.mqttPassword ? `device secret ${result.files.mqttPassword} (mode 600)` : null,
        `fleet public key ${result.files.fleetPublicKey}`,
        `mqtt ${result.mqtt.host}:${result.mqtt.port}${result.mqtt.tls ? ' (mutual TLS)' : ' (plain TCP, loopback only)'}`,
        ...result.notes.map((n) => `note: ${n}`),
        `start it with: node bin/fleetlm-agent.js --config ${result.files.config}`,
      ].filter((l): l is string => l !== null);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
