// The `fleetlm` operator CLI. Each command lives in cli/commands/<name>.ts and registers itself.
import { Command, CommanderError } from 'commander';
import { FleetError, describeError, isValidationCode } from '../common/errors.ts';
import { COMMANDS } from './commands/index.ts';

/** Builds the CLI program with every command registered (exported for tests). */
export function buildProgram(): Command {
  const program = new Command('fleetlm')
    .description('Design, compress and ship small language models to IoT fleets, then watch them run.')
    .version('0.1.0')
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });
  for (const register of COMMANDS) register(program);
  return program;
}

/** Runs the CLI; bad input exits 2, other failures exit 1, both with a one-line reason. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const code = err instanceof FleetError && isValidationCode(err.code) ? 2 : 1;
    process.stderr.write(`fleetlm: error: ${describeError(err)}\n`);
    if (process.env.FLEETLM_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return code;
  }
}

const isEntry = process.argv[1] !== undefined && /fleetlm(\.js)?$|cli[\\/]main\.ts$/.test(process.argv[1]);
if (isEntry) {
  process.exitCode = await runCli(process.argv);
}
