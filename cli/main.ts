// The `fleetlm` operator CLI. Each command lives in cli/commands/<name>.ts and registers itself; only the
// module of the command being run is loaded.
import { Command, CommanderError } from 'commander';
import { FleetError, describeError, isValidationCode } from '../common/errors.ts';
import { COMMANDS, type CommandEntry } from './commands/index.ts';

function baseProgram(): Command {
  return new Command('fleetlm')
    .description('Design, compress and ship small language models to IoT fleets, then watch them run.')
    .version('0.1.0')
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });
}

/** The entry whose module registers the command `argv` names (`fleetlm help <cmd>` included), if any. */
export function entryFor(argv: readonly string[]): CommandEntry | undefined {
  const args = argv.slice(2);
  let name = args.find((a) => !a.startsWith('-'));
  if (name === 'help') name = args[args.indexOf('help') + 1];
  return name === undefined ? undefined : COMMANDS.find((e) => Object.hasOwn(e.commands, name));
}

/**
 * Builds the CLI program (exported for tests): with `entry`, that module's commands are registered for
 * real; without, every command is listed by name and description only (top-level help, unknown commands).
 */
export async function buildProgram(entry?: CommandEntry): Promise<Command> {
  const program = baseProgram();
  if (entry) {
    (await entry.load()).register(program);
  } else {
    for (const e of COMMANDS) for (const [name, description] of Object.entries(e.commands)) program.command(name).description(description);
  }
  return program;
}

/** Runs the CLI; bad input exits 2, other failures exit 1 (a watched rollout 3 or 4), all with a one-line reason. */
export async function runCli(argv: string[]): Promise<number> {
  const program = (await buildProgram(entryFor(argv))).exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    // A watched rollout's outcome carries its own exit code (fleet/job-outcome.ts: 3 failed, 4 timed out).
    const own = (err as { exitCode?: unknown }).exitCode;
    const code = err instanceof FleetError && typeof own === 'number' ? own : err instanceof FleetError && isValidationCode(err.code) ? 2 : 1;
    process.stderr.write(`fleetlm: error: ${describeError(err)}\n`);
    if (process.env.FLEETLM_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return code;
  }
}

// bin/fleetlm.js imports the bundle (dist/fleetlm.mjs); tests import this module and call runCli.
const isEntry = process.argv[1] !== undefined && /fleetlm(\.m?js)?$|cli[\\/]main\.ts$/.test(process.argv[1]);
if (isEntry) {
  const code = await runCli(process.argv);
  // A command that failed half-way may leave a listener or timer behind (a server that started before another
  // failed): the error is printed, so exit now rather than hang.
  if (code !== 0) process.exit(code);
  process.exitCode = code;
}
