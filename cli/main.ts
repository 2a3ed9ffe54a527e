// The `fleetlm` operator CLI. Each command lives in cli/commands/<name>.ts and registers itself; only the
// module of the command being run is loaded.
import { Command } from 'commander';
import { COMMANDS, type CommandEntry } from './commands/index.ts';
import { applyConventions, reportFailure, wantsJson, type CliRunState } from './conventions.ts';

function baseProgram(): Command {
  return new Command('fleetlm')
    .description('Design, compress and ship small language models to IoT fleets, then watch them run.')
    .version('0.1.0');
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

/**
 * Runs the CLI and returns its exit code, the same rule for every command (cli/conventions.ts, the table in
 * cli/exit-codes.ts): usage errors 1 with the command's help, invalid input 2, a watched rollout 3 or 4.
 */
export async function runCli(argv: string[]): Promise<number> {
  const program = await buildProgram(entryFor(argv));
  const state: CliRunState = {};
  applyConventions(program, state);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    return reportFailure(err, { state, program, json: wantsJson(argv) });
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
