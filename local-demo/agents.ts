// Device processes for the local demo and tests: one `fleetlm-agent --config agent.json` per thing,
// each with its own directory (config, models, state, log). Children are tracked so that every
// exit path, Ctrl-C included, can kill them.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TransportError } from '../common/errors.ts';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { writeDeviceSecretFile } from '../local-hub/device-credentials.ts';
import type { AgentConfigInput } from '../edge-agent/config.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const AGENT_BIN = path.join(REPO_ROOT, 'bin', 'fleetlm-agent.js');

/** A running agent process and what it serves. */
export interface AgentProcess {
  thingName: string;
  dir: string;
  configPath: string;
  httpUrl: string;
  logPath: string;
  child: ChildProcess;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
}

export interface AgentSpec {
  thingName: string;
  /** Directory for this device (created). */
  dir: string;
  mqtt: { host: string; port: number };
  /** The device's MQTT secret from the hub (LocalHub.issueDeviceSecret); written 0600 beside agent.json. */
  mqttPassword: string;
  fleetPublicKeyPath: string;
  telemetryIntervalMs?: number;
  /** Extra config merged over the defaults (download limits, health-check timeout, ...). */
  extra?: Partial<AgentConfigInput>;
}

/** Asks the OS for a free loopback TCP port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Writes `dir/agent.json` for a device on the local hub (plain TCP on loopback). */
export async function writeAgentConfig(spec: AgentSpec, httpPort: number): Promise<string> {
  await fs.mkdir(spec.dir, { recursive: true });
  await writeDeviceSecretFile(path.join(spec.dir, 'mqtt-password'), spec.mqttPassword);
  const config: AgentConfigInput = {
    thingName: spec.thingName,
    mqtt: { host: spec.mqtt.host, port: spec.mqtt.port, passwordFile: 'mqtt-password', reconnectMinMs: 200, reconnectMaxMs: 5000 },
    modelDir: 'models',
    stateDir: 'state',
    fleetPublicKeyPath: path.relative(spec.dir, spec.fleetPublicKeyPath) || spec.fleetPublicKeyPath,
    http: { host: '127.0.0.1', port: httpPort, maxConcurrent: 4 },
    telemetry: { intervalMs: spec.telemetryIntervalMs ?? 5000, bufferMaxMessages: 1000, cpuWatts: 2.5, sysfsRoot: '/sys' },
    // Several devices share this machine's cores; one onnxruntime thread each keeps them from fighting.
    runtime: { threads: 1, allowSpinning: false },
    logLevel: 'info',
    ...spec.extra,
  };
  const file = path.join(spec.dir, 'agent.json');
  await writeJsonAtomic(file, config);
  return file;
}

const running = new Set<AgentProcess>();

/** Starts one agent process; its stdout and stderr go to `dir/agent.log`. */
export async function startAgent(spec: AgentSpec): Promise<AgentProcess> {
  const httpPort = await freePort();
  const configPath = await writeAgentConfig(spec, httpPort);
  const logPath = path.join(spec.dir, 'agent.log');
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(process.execPath, [AGENT_BIN, '--config', configPath], {
    cwd: spec.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FLEETLM_DEBUG: process.env.FLEETLM_DEBUG ?? '' },
  });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const agent: AgentProcess = { thingName: spec.thingName, dir: spec.dir, configPath, httpUrl: `http://127.0.0.1:${httpPort}`, logPath, child, exited };
  running.add(agent);
  void exited.then(() => {
    running.delete(agent);
    log.end();
  });
  return agent;
}

/** Waits until the agent's HTTP API answers /healthz (any status), or fails with its log tail. */
export async function waitForAgentApi(agent: AgentProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void agent.exited.then((c) => (exitCode = c));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) break;
    try {
      await fetch(`${agent.httpUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const tail = (await fs.readFile(agent.logPath, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
  throw new TransportError(
    `agent ${agent.thingName} ${exitCode !== undefined ? `exited with code ${exitCode}` : `did not answer on ${agent.httpUrl} within ${timeoutMs} ms`}; log tail:\n${tail}`,
  );
}

/** Stops an agent: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopAgent(agent: AgentProcess, graceMs = 3000): Promise<void> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
  agent.child.kill('SIGTERM');
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), graceMs);
  await agent.exited;
  clearTimeout(timer);
}

/** Stops every agent this process started. */
export async function stopAllAgents(graceMs = 3000): Promise<void> {
  await Promise.all([...running].map((a) => stopAgent(a, graceMs)));
}

/** Synchronous last resort for process exit: SIGKILL every agent still running. */
export function killAllAgentsSync(): void {
  for (const a of running) {
    if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
  }
}

export interface Completion {
  thingName: string;
  text: string;
  model?: { modelId: string; version: string };
  firstTokenMs?: number;
  tokensPerSecond?: number;
  tokens?: number;
}

/** Asks an agent's local API for a completion (POST /v1/generate). */
export async function requestCompletion(agent: { thingName: string; httpUrl: string }, prompt: string, maxTokens = 24): Promise<Completion> {
  const res = await fetch(`${agent.httpUrl}/v1/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, maxTokens, temperature: 0.8, topP: 0.95 }),
    signal: AbortSignal.timeout(60_000),
  });
  const body = (await res.json()) as {
    text?: string;
    error?: string;
    model?: { modelId: string; version: string };
    timing?: { firstTokenMs?: number; tokensPerSecond?: number; tokens?: number };
  };
  if (!res.ok) throw new TransportError(`agent ${agent.thingName} answered ${res.status} to /v1/generate: ${body.error ?? ''}`);
  return {
    thingName: agent.thingName,
    text: body.text ?? '',
    model: body.model,
    firstTokenMs: body.timing?.firstTokenMs,
    tokensPerSecond: body.timing?.tokensPerSecond,
    tokens: body.timing?.tokens,
  };
}
