// `fleetlm-agent --config agent.json`: loads and validates the config, starts the agent, and shuts it
// down cleanly on SIGTERM/SIGINT (systemd stops it with SIGTERM).
import { Command, CommanderError } from 'commander';
import { FleetError, ValidationError, describeError } from '../common/errors.ts';
import { Agent } from './agent.ts';
import { loadAgentConfig, type AgentConfig } from './config.ts';
import { createLogger } from './log.ts';
import { MqttConnection } from './mqtt-connection.ts';
import { OnnxModelRuntime, checkExecutionProviders } from './onnx-model-runtime.ts';
import { readLaunchContext } from './self-update/launch-context.ts';
import { AGENT_VERSION } from './version.ts';

/** Exit status that asks the supervisor to start the agent again (EX_TEMPFAIL): an agent update switched versions. */
const EXIT_RESTART = 75;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Parses argv, runs the agent until a signal; resolves with the exit code. */
export async function runAgent(argv: string[]): Promise<number> {
  // The agent's own benchmark worker (benchmark-runner.ts forks the agent entry with this flag).
  if (argv[2] === '--benchmark-worker') return (await import('./benchmark-worker.ts')).runBenchmarkWorker();
  const program = new Command('fleetlm-agent')
    .description('FleetLM device agent: takes IoT Jobs, installs models safely, serves them on 127.0.0.1, reports telemetry.')
    .version(AGENT_VERSION)
    .option('-c, --config <path>', 'JSON config file (env FLEETLM_AGENT_* and --set override it)')
    .option('--set <key=value>', 'override one config key, e.g. --set http.port=8081 (repeatable)', collect, [])
    .option('-v, --verbose', 'print the effective config to stderr and log at debug level')
    .option('--print-config', 'print the effective config as JSON and exit')
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });
  let opts: { config?: string; set: string[]; verbose?: boolean; printConfig?: boolean };
  try {
    program.parse(argv);
    opts = program.opts();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  let config: AgentConfig;
  try {
    config = loadAgentConfig({ configPath: opts.config, env: process.env, overrides: opts.set });
  } catch (err) {
    process.stderr.write(`fleetlm-agent: error: ${err instanceof ValidationError ? err.message : describeError(err)}\n`);
    return 2;
  }
  // The API token is a secret: printed configs show that one is set, not what it is.
  const printable = (c: AgentConfig) => (c.http.apiToken === undefined ? c : { ...c, http: { ...c.http, apiToken: '(set)' } });
  if (opts.printConfig) {
    process.stdout.write(`${JSON.stringify(printable(config), null, 2)}\n`);
    return 0;
  }
  if (opts.verbose) {
    config = { ...config, logLevel: 'debug' };
    process.stderr.write(`fleetlm-agent: effective config ${JSON.stringify(printable(config), null, 2)}\n`);
  }
  try {
    await checkExecutionProviders(config.runtime.executionProviders);
  } catch (err) {
    process.stderr.write(`fleetlm-agent: error: runtime.executionProviders: ${describeError(err)}\n`);
    return 2;
  }
  const log = createLogger(config.logLevel);
  const transport = new MqttConnection({ clientId: config.thingName, log, ...config.mqtt });
  const killOn = config.testHooks.killOnPhase;
  const killAtStep = config.testHooks.killAtUpdateStep;
  const launch = readLaunchContext(process.env);
  let requestRestart: (reason: string) => void = () => {};
  const restart = new Promise<string>((resolve) => (requestRestart = resolve));
  const agent = new Agent({
    launch,
    requestRestart: (reason) => requestRestart(reason),
    onUpdateStep:
      killAtStep && launch
        ? (step) => {
            if (step === killAtStep) {
              log.warn('test hook: killing the agent and its launcher', { step });
              process.kill(0, 'SIGKILL');
            }
          }
        : undefined,
    config,
    transport,
    runtime: new OnnxModelRuntime(config.runtime.threads, config.runtime.allowSpinning, config.runtime.executionProviders),
    log,
    onPhase: killOn
      ? (phase) => {
          if (phase === killOn) {
            log.warn('test hook: killing the agent', { phase });
            process.kill(process.pid, 'SIGKILL');
          }
        }
      : undefined,
  });
  try {
    await agent.start();
  } catch (err) {
    log.error('agent failed to start', { error: describeError(err) });
    await agent.stop().catch(() => {});
    return err instanceof FleetError && err.code.startsWith('VALIDATION') ? 2 : 1;
  }
  // Handlers before the 'agent started' line: a supervisor may signal as soon as it reads it.
  const stopRequested = new Promise<NodeJS.Signals | 'restart'>((resolve) => {
    // `on`, not `once`: a second SIGTERM (systemd signals the whole cgroup and the launcher passes its own
    // on) must not kill the agent halfway through its clean stop.
    process.on('SIGTERM', () => resolve('SIGTERM'));
    process.on('SIGINT', () => resolve('SIGINT'));
    void restart.then(() => resolve('restart'));
  });
  // `version` is the build's; `agentVersion` the versions/<version> directory the launcher started (self-update's identity).
  log.info('agent started', { thingName: config.thingName, httpPort: agent.httpPort, version: AGENT_VERSION, agentVersion: launch?.version ?? null });
  const signal = await stopRequested;
  log.info('stopping', { signal });
  await agent.stop();
  return signal === 'restart' ? EXIT_RESTART : 0;
}

process.exitCode = await runAgent(process.argv);
// Exit once shutdown is done, whatever handles (sockets, timers of a model session) remain.
process.exit();
