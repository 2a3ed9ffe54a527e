// `fleetlm-agent` on a device: the self-update launcher (bundled as launcher/fleetlm-agent-launcher.mjs and
// installed outside versions/, e.g. <agentHome>/launcher.mjs). It decides which version to start (see
// launcher-core.ts), runs versions/<version>/bin/fleetlm-agent with the same arguments, and watches a new
// agent's trial: no confirmation in time, or an exit first, and it rolls back. It exits when the agent
// exits, so the supervisor (systemd Restart=always) starts it, and it decides, again.
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../../common/errors.ts';
import { createLogger } from '../log.ts';
import { AgentHome } from './agent-home.ts';
import { ENV_AGENT_HOME, ENV_AGENT_VERSION } from './launch-context.ts';
import { lastWords, planLaunch, rollBack } from './launcher-core.ts';
import { readUpdateRecord, type UpdateRecord } from './update-record.ts';

/** Test hook: the launcher SIGKILLs its process group (itself and the agent, like a power cut) at this point. */
const ENV_TEST_KILL_AT = 'FLEETLM_LAUNCHER_TEST_KILL_AT';
const POLL_MS = 250;
const KILL_GRACE_MS = 5000;
const STDERR_TAIL = 1500;

const log = createLogger('info');

function killHook(point: string): void {
  if (process.env[ENV_TEST_KILL_AT] === point) {
    log.warn('test hook: killing the launcher and the agent', { point });
    process.kill(0, 'SIGKILL');
  }
}

function homeDir(): string {
  const fromEnv = process.env[ENV_AGENT_HOME];
  if (fromEnv) return path.resolve(fromEnv);
  // Installed as <agentHome>/launcher.mjs (/usr/bin/fleetlm-agent links to it; Node resolves the link).
  return path.dirname(realpathSync(fileURLToPath(import.meta.url)));
}

/** Flags that only print something: they run `current` as it is and never touch an update under way. */
const INFO_FLAGS = new Set(['--version', '-V', '--help', '-h', '--print-config']);

async function main(): Promise<number> {
  const home = new AgentHome(homeDir());
  const infoOnly = process.argv.slice(2).some((a) => INFO_FLAGS.has(a));
  const current = infoOnly ? await home.currentVersion() : null;
  const plan = infoOnly && current ? { version: current, trial: null } : await planLaunch(home, log, { beforeTrialStart: () => killHook('trial-recorded') });
  const entry = home.entryOf(plan.version);
  const child = spawn(process.execPath, [entry, ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, [ENV_AGENT_HOME]: home.root, [ENV_AGENT_VERSION]: plan.version },
  });
  let tail = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-STDERR_TAIL);
  });

  let stopping = false;
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      stopping = true;
      child.kill(sig);
    });
  }

  let trial: UpdateRecord | null = plan.trial;
  let deadlineHit = false;
  const timers: NodeJS.Timeout[] = [];
  const endTrial = () => {
    trial = null;
    for (const t of timers) {
      clearTimeout(t);
      clearInterval(t);
    }
  };
  if (trial) {
    const t = trial;
    timers.push(
      setInterval(() => {
        void readUpdateRecord(home.root).then(
          (r) => {
            if (!r || r.jobId !== t.jobId || r.state === 'confirmed') {
              log.info('the new agent confirmed', { jobId: t.jobId, version: t.to });
              endTrial();
            }
          },
          () => {},
        );
      }, POLL_MS),
      setTimeout(() => {
        void readUpdateRecord(home.root).then((r) => {
          if (!trial || (r && r.jobId === t.jobId && r.state === 'confirmed')) return;
          deadlineHit = true;
          log.warn('the new agent did not confirm in time; stopping it', { jobId: t.jobId, version: t.to, confirmTimeoutMs: t.confirmTimeoutMs });
          child.kill('SIGTERM');
          setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
        });
      }, t.confirmTimeoutMs),
    );
  }

  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('exit', (c, s) => resolve([c, s]));
    child.on('error', (err) => {
      log.error('cannot start the agent', { entry, error: describeError(err) });
      resolve([127, null]);
    });
  });
  const onTrial = trial as UpdateRecord | null;
  endTrial();
  if (onTrial) {
    // The child is gone, so the record can no longer change under us: read it once more.
    const r = await readUpdateRecord(home.root).catch(() => null);
    if (r && r.jobId === onTrial.jobId && r.state === 'starting') {
      if (deadlineHit) {
        killHook('before-rollback');
        await rollBack(home, r, `agent ${r.to} did not connect and report within ${Math.round(r.confirmTimeoutMs / 1000)} s; rolled back to ${r.from}`, log);
        return 1;
      }
      if (!stopping) {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const said = lastWords(tail);
        killHook('before-rollback');
        await rollBack(home, r, `agent ${r.to} ${how} before it confirmed${said ? ` (last output: ${said})` : ''}; rolled back to ${r.from}`, log);
        return 1;
      }
      // Stopped from outside during the trial: the next start rolls back (the attempt is spent).
    }
  }
  return code ?? 128 + 9;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log.error('launcher failed', { error: describeError(err) });
    process.exit(1);
  },
);
