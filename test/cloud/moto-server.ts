// Starts moto (an independent emulation of the AWS APIs, https://docs.getmoto.org/en/latest/docs/server_mode.html)
// in server mode on a free loopback port for the AWS-path integration tests, and stops it afterwards.
// A missing moto is a failure with instructions, never a silent skip: CI's image has it.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface MotoServer {
  /** http://127.0.0.1:PORT, what AWS_ENDPOINT_URL or a client's `endpoint` takes. */
  endpoint: string;
  stop(): Promise<void>;
}

/** Python that runs moto: $FLEETLM_MOTO_PYTHON, else python3 on PATH. */
export const MOTO_PYTHON = process.env.FLEETLM_MOTO_PYTHON ?? 'python3';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Spawns `python3 -m moto.server -H 127.0.0.1 -p PORT` and resolves once its API answers. */
export async function startMoto(timeoutMs = 30_000): Promise<MotoServer> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(MOTO_PYTHON, ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    // Flask logs every request to stderr; keep only the start, where import errors show.
    if (stderr.length < 4000) stderr += d.toString();
  });
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (spawnError || child.exitCode !== null) break;
    if (await answers(`${endpoint}/moto-api/`)) return { endpoint, stop: () => stopChild(child) };
    await new Promise((r) => setTimeout(r, 200));
  }
  await stopChild(child);
  throw new Error(
    `moto server did not start with \`${MOTO_PYTHON} -m moto.server\` (${spawnError?.message ?? `exit ${child.exitCode ?? 'none'}`}): ` +
      `the AWS-path tests need moto 5 with its server extras (pip install "moto[server]>=5"), or set FLEETLM_MOTO_PYTHON. ${stderr.slice(0, 1500)}`,
  );
}

/**
 * Points the AWS SDK (and so the CLI run in-process) at `moto` by AWS's own conventions only, and clears what
 * would point it elsewhere: a named profile, the local hub, FleetLM's bucket/key/fleet-key overrides.
 */
export function pointAwsAtMoto(moto: MotoServer, region: string): void {
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: moto.endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  });
  for (const k of ['AWS_PROFILE', 'AWS_DEFAULT_REGION', 'FLEETLM_LOCAL_DIR', 'FLEETLM_BUCKET', 'FLEETLM_KMS_KEY', 'FLEETLM_FLEET_KEY_SHA256']) delete process.env[k];
}
