// Helpers for end-to-end agent tests: a real local hub, real S3 uploads, real IoT Jobs, and the agent
// as a child process (node bin/fleetlm-agent.js). Faults are injected only through config and env.
export { sleep, eventually } from '../helpers/wait.ts';
export { tempDir } from '../helpers/temp-dir.ts';
import { sleep, eventually } from '../helpers/wait.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { CreateJobCommand, CreateThingCommand, DescribeJobExecutionCommand, IoTClient } from '@aws-sdk/client-iot';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { writeDeviceSecretFile } from '../../local-hub/device-credentials.ts';
import { parseArchSpec, type ArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { LocalKeySigner, generateSigningKeyPair, signManifestBytes } from '../../contracts/manifest-signing.ts';
import type { DeployModelDocumentInput } from '../../contracts/job-document.ts';
import type { ManifestInput } from '../../contracts/manifest.ts';

export const REPO = path.resolve(import.meta.dirname, '../..');

/** GPT-2 vocabulary (so the GPT-2 tokenizer fits) with a tiny body: fast to build and to run. */
export const TEST_SPEC: ArchSpec = parseArchSpec({
  name: 'agent-test',
  vocabSize: 50257,
  contextLength: 64,
  blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }],
  tiedHead: true,
});




export interface BuiltModel {
  dir: string;
  files: Array<{ name: string; path: string }>;
}

/** Builds the test model (random weights, `seed`) into a fresh directory. */
export async function buildTestModel(seed: number, spec: ArchSpec = TEST_SPEC): Promise<BuiltModel> {
  const dir = await tempDir('fleetlm-agent-model-');
  const r = await buildModelFile(spec, { outPath: path.join(dir, 'model.onnx'), seed });
  const files = [{ name: 'model.onnx', path: r.modelPath }];
  if (r.externalDataPath) files.push({ name: path.basename(r.externalDataPath), path: r.externalDataPath });
  return { dir, files };
}

export class TestFleet {
  readonly iot: IoTClient;
  readonly s3: S3Client;
  readonly keys = generateSigningKeyPair();
  readonly publicKeyPath: string;
  private constructor(
    public hub: LocalHub,
    readonly hubDir: string,
    readonly workDir: string,
  ) {
    this.iot = new IoTClient({ region: hub.endpoints.region, endpoint: hub.endpoints.iotEndpoint, credentials: hub.endpoints.credentials, maxAttempts: 1 });
    this.s3 = new S3Client({ region: hub.endpoints.region, endpoint: hub.endpoints.s3.endpoint, forcePathStyle: true, credentials: hub.endpoints.credentials });
    this.publicKeyPath = path.join(workDir, 'fleet-public.pem');
  }

  /** `minuteMs` scales the hub's minutes (step timers, rollout rates) for tests of timeouts. */
  static async start(opts: { minuteMs?: number } = {}): Promise<TestFleet> {
    const hubDir = await tempDir('fleetlm-agent-hub-');
    const workDir = await tempDir('fleetlm-agent-work-');
    const hub = await startHub({ dir: hubDir, clock: { minuteMs: opts.minuteMs ?? 60_000 } });
    const fleet = new TestFleet(hub, hubDir, workDir);
    await fs.writeFile(fleet.publicKeyPath, fleet.keys.publicKeyPem);
    return fleet;
  }

  /** Stops the hub and starts it again on the same ports and state (a broker restart). */
  async restartHub(downMs = 0): Promise<void> {
    const ep = this.hub.endpoints;
    await this.hub.stop();
    if (downMs > 0) await sleep(downMs);
    this.hub = await startHub({
      dir: this.hubDir,
      mqttPort: ep.mqtt.port,
      httpPort: Number(new URL(ep.iotEndpoint).port),
      s3Port: Number(new URL(ep.s3.endpoint).port),
    });
  }

  /** Stops the hub for `downMs`, running `during` while it is down, then brings it back. */
  async hubDown(during: () => Promise<void>): Promise<void> {
    const ep = this.hub.endpoints;
    await this.hub.stop();
    // Hold the hub's ports while it is down: freed, another test file's server could take one and answer
    // the agent's retries (or hang them until the idle timeout). These reset every connection, as a down host's
    // port refuses it.
    const ports = [ep.mqtt.port, Number(new URL(ep.iotEndpoint).port), Number(new URL(ep.s3.endpoint).port)];
    const holders = await Promise.all(ports.map((port) => holdPort(port)));
    try {
      await during();
    } finally {
      // Back up even when `during` failed: the next test in the file needs the hub.
      await Promise.all(holders.map((h) => new Promise<void>((resolve) => (h ? h.close(() => resolve()) : resolve()))));
      this.hub = await startHub({
        dir: this.hubDir,
        mqttPort: ep.mqtt.port,
        httpPort: Number(new URL(ep.iotEndpoint).port),
        s3Port: Number(new URL(ep.s3.endpoint).port),
      });
    }
  }

  /** Device secrets issued by the hub, by thing name (agents log in with them). */
  readonly secrets = new Map<string, string>();

  /** Creates the thing and issues its MQTT device secret. */
  async createThing(name: string): Promise<string> {
    const r = await this.iot.send(new CreateThingCommand({ thingName: name }));
    await this.deviceSecret(name);
    return r.thingArn!;
  }

  /** Writes the thing's device secret as `dir/mqtt-password` (0600) and returns the path, for in-process agents. */
  /** Writes `dir`/agent.json for `thingName` (with its device secret beside it) as the tests' agents use it. */
  async writeAgentConfig(thingName: string, dir: string): Promise<string> {
    const configPath = path.join(dir, 'agent.json');
    await fs.writeFile(
      configPath,
      JSON.stringify({
        thingName,
        mqtt: { host: this.hub.endpoints.mqtt.host, port: this.hub.endpoints.mqtt.port, passwordFile: await this.passwordFile(thingName, dir), reconnectMinMs: 200, reconnectMaxMs: 1000, requestTimeoutMs: 5000 },
        modelDir: 'models',
        stateDir: 'state',
        fleetPublicKeyPath: this.publicKeyPath,
        http: { port: 0 },
        download: { retry: { initialDelayMs: 100, maxDelayMs: 1000, maxAttempts: 20, deadlineMs: 30_000 }, idleTimeoutMs: 5000 },
        runtime: { threads: 1 },
        telemetry: { intervalMs: 60_000 },
        logLevel: 'debug',
      }),
    );
    return configPath;
  }

  async passwordFile(name: string, dir: string): Promise<string> {
    const file = path.join(dir, 'mqtt-password');
    await writeDeviceSecretFile(file, await this.deviceSecret(name));
    return file;
  }

  /** The thing's device secret, issued on first use. */
  async deviceSecret(name: string): Promise<string> {
    let secret = this.secrets.get(name);
    if (secret === undefined) {
      secret = await this.hub.issueDeviceSecret(name);
      this.secrets.set(name, secret);
    }
    return secret;
  }

  private placeholder(key: string): string {
    return `\${aws:iot:s3-presigned-url:${this.hub.endpoints.s3.endpoint}/${this.hub.endpoints.s3.bucket}/${key}}`;
  }

  /**
   * Uploads a model version and returns its deploy-model@1 document. `corrupt` uploads different bytes
   * than the manifest describes for that file; `signWith` signs with another key.
   */
  async publish(
    modelId: string,
    version: string,
    model: BuiltModel,
    opts: {
      corrupt?: string;
      signWithPem?: string;
      healthCheck?: DeployModelDocumentInput['healthCheck'];
      tokenizer?: ManifestInput['tokenizer'];
      /** Anti-rollback fields of the manifest. */
      securityVersion?: number;
      expiresAt?: string;
    } = {},
  ): Promise<DeployModelDocumentInput> {
    const prefix = `models/${modelId}/${version}/`;
    const bucket = this.hub.endpoints.s3.bucket;
    const artifacts: DeployModelDocumentInput['artifacts'] = [];
    const files: ManifestInput['files'] = [];
    for (const f of model.files) {
      const bytes = await fs.readFile(f.path);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      let upload = bytes;
      if (opts.corrupt === f.name) {
        upload = Buffer.from(bytes);
        upload[upload.length >> 1] = upload[upload.length >> 1]! ^ 0xff;
      }
      await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + f.name, Body: upload }));
      artifacts.push({ name: f.name, url: this.placeholder(prefix + f.name), sha256, size: bytes.length });
      const role = f.name.endsWith('.onnx') ? 'model' : /^tokenizer(_config)?\.json$/.test(f.name) ? 'tokenizer' : 'model-data';
      files.push({ name: f.name, sha256, size: bytes.length, role });
    }
    const manifest: ManifestInput = {
      format: 'fleetlm/manifest@1',
      modelId,
      version,
      createdAt: new Date().toISOString(),
      entry: 'model.onnx',
      files,
      tokenizer: opts.tokenizer ?? { kind: 'gpt2-bpe' },
      generation: {},
      ...(opts.securityVersion !== undefined ? { securityVersion: opts.securityVersion } : {}),
      ...(opts.expiresAt !== undefined ? { expiresAt: opts.expiresAt } : {}),
    };
    const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    const sig = await signManifestBytes(manifestBytes, new LocalKeySigner(opts.signWithPem ?? this.keys.privateKeyPem));
    await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}manifest.sig.json`, Body: JSON.stringify(sig) }));
    await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}manifest.json`, Body: manifestBytes }));
    return {
      schema: 'fleetlm/deploy-model@1',
      modelId,
      version,
      manifest: {
        url: this.placeholder(`${prefix}manifest.json`),
        sha256: createHash('sha256').update(manifestBytes).digest('hex'),
        size: manifestBytes.length,
      },
      signature: { url: this.placeholder(`${prefix}manifest.sig.json`) },
      artifacts,
      ...(opts.healthCheck ? { healthCheck: opts.healthCheck } : {}),
    };
  }

  async createJob(jobId: string, thingArn: string, document: unknown): Promise<void> {
    await this.iot.send(
      new CreateJobCommand({
        jobId,
        targets: [thingArn],
        document: typeof document === 'string' ? document : JSON.stringify(document),
        presignedUrlConfig: { roleArn: 'arn:aws:iam::123456789012:role/fleetlm-presign', expiresInSec: 3600 },
      }),
    );
  }

  async execution(jobId: string, thingName: string) {
    const r = await this.iot.send(new DescribeJobExecutionCommand({ jobId, thingName }));
    return r.execution!;
  }

  /** Waits for the execution to reach a terminal status and returns it. */
  async waitTerminal(jobId: string, thingName: string, timeoutMs = 45_000) {
    return eventually(
      async () => {
        const e = await this.execution(jobId, thingName);
        return e.status && !['QUEUED', 'IN_PROGRESS'].includes(e.status) ? e : undefined;
      },
      timeoutMs,
      `job ${jobId} to finish on ${thingName}`,
      150,
    );
  }

  async stop(): Promise<void> {
    this.iot.destroy();
    this.s3.destroy();
    await this.hub.stop();
  }
}

export interface LogLine {
  msg: string;
  [k: string]: unknown;
}

/** The agent as a child process, with its JSON log lines collected. */
export class AgentProcess {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  private exited: Promise<number | null>;
  httpPort = 0;

  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      this.stderr.push(line);
      if (process.env.FLEETLM_TEST_AGENT_LOG) process.stderr.write(`[agent ${proc.pid}] ${line}\n`);
      try {
        const parsed = JSON.parse(line) as LogLine;
        this.logs.push(parsed);
        if (parsed.msg === 'local API listening') this.httpPort = Number(parsed.port);
      } catch {
        // Not a log line (e.g. --verbose config dump).
      }
    });
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  }

  /**
   * Writes agent.json for `thingName` under `dir` and starts the agent; `entry` is the script node runs
   * (default: the checkout's bin/fleetlm-agent.js; the package tests pass an unpacked package's bin).
   */
  static async start(
    fleet: TestFleet,
    thingName: string,
    dir: string,
    env: Record<string, string> = {},
    entry = path.join(REPO, 'bin/fleetlm-agent.js'),
  ): Promise<AgentProcess> {
    const configPath = await fleet.writeAgentConfig(thingName, dir);
    const proc = spawn(process.execPath, [entry, '--config', configPath], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const agent = new AgentProcess(proc);
    await agent.waitLog((l) => l.msg === 'agent started', 30_000);
    return agent;
  }

  /** Waits for a log line matching `match` (already seen ones count). */
  async waitLog(match: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    return eventually(
      async () => {
        const found = this.logs.find(match);
        if (found) return found;
        // A process killed by a signal has signalCode set and exitCode null.
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
          // Lines that are not JSON log lines (a crash banner, a native backtrace) come first: they say why.
          const raw = this.stderr.filter((l) => !l.startsWith('{'));
          throw new Error(`agent exited (${this.proc.exitCode ?? this.proc.signalCode}): ${raw.slice(0, 20).join('\n')}\n--- last lines ---\n${this.stderr.slice(-10).join('\n')}`);
        }
        return undefined;
      },
      timeoutMs,
      'agent log line',
      50,
    );
  }

  count(match: (l: LogLine) => boolean): number {
    return this.logs.filter(match).length;
  }

  async generate(prompt: string, extra: Record<string, unknown> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, maxTokens: 4, temperature: 0, ...extra }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** SIGKILL: no cleanup, like a power cut. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
    await this.exited;
  }

  async waitExit(): Promise<number | null> {
    return this.exited;
  }

  /** SIGTERM and wait for a clean exit. */
  async stop(): Promise<number | null> {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** Listens on loopback `port`, resetting every connection; null when the port could not be had. */
function holdPort(port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => socket.resetAndDestroy());
    server.once('error', () => resolve(null));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
