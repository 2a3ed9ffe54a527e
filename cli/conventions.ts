// The one rule every `fleetlm` command follows when it fails, applied to the whole command tree at once (so
// commands added later get it without edits): usage errors exit 1 and print the command's help, invalid input
// exits 2, a watched rollout exits 3 or 4 (cli/exit-codes.ts); the error is the last line of stderr, with a
// hint to `--help`; with `--json`, stderr gets one JSON object `{"error":{"code","message"}}` instead.
import { type Command, CommanderError } from 'commander';
import { FleetError, UsageError, describeError, isValidationCode, type UsageCode } from '../common/errors.ts';
import { EXIT } from './exit-codes.ts';
import { withFlagNames } from './flag-names.ts';

/** What a run learns while commander parses: the command whose action ran. */
export interface CliRunState {
  /** The (sub)command whose action started, for the `--help` hint of errors thrown inside it. */
  active?: Command;
}

/** A commander parse error together with the command it happened in (so its help can follow the error). */
class CommandLineFailure extends Error {
  constructor(
    readonly error: CommanderError,
    readonly command: Command,
  ) {
    super(error.message);
  }
}

/** The JSON object `--json` commands write to stderr when they fail (schema in cli/json-output.ts). */
export interface JsonError {
  error: { code: string; message: string; exitCode: number; hint?: string };
}

const USAGE_CODES: Readonly<Record<string, UsageCode>> = {
  'commander.unknownOption': 'USAGE_UNKNOWN_OPTION',
  'commander.unknownCommand': 'USAGE_UNKNOWN_COMMAND',
  'commander.missingMandatoryOptionValue': 'USAGE_MISSING_OPTION',
  'commander.optionMissingArgument': 'USAGE_MISSING_OPTION_VALUE',
  'commander.missingArgument': 'USAGE_MISSING_ARGUMENT',
  'commander.invalidArgument': 'USAGE_INVALID_ARGUMENT',
  'commander.excessArguments': 'USAGE_EXCESS_ARGUMENTS',
  'commander.conflictingOption': 'USAGE_CONFLICTING_OPTIONS',
  'commander.help': 'USAGE_MISSING_COMMAND',
};

/**
 * Applies the rule to `program` and every command under it; call after the commands are registered.
 * Commander's own error and help-on-error output is silenced: reportFailure prints it, in one format.
 */
export function applyConventions(program: Command, state: CliRunState): void {
  program.hook('preAction', (_root, action) => {
    state.active = action;
  });
  const visit = (cmd: Command): void => {
    cmd.showHelpAfterError(false);
    cmd.configureOutput({ outputError: () => {}, writeErr: () => {} });
    cmd.exitOverride((err) => {
      throw new CommandLineFailure(err, cmd);
    });
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
}

/** `fleetlm device register` for that command. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** True when the command line asks for JSON output (`--json` before any `--`). */
export function wantsJson(argv: readonly string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

function usageErrorOf(failure: CommandLineFailure): UsageError {
  const { error, command } = failure;
  const subcommands = command.commands.map((c) => c.name()).filter((n) => n !== 'help');
  // `fleetlm help nosuch` ends in commander's help-on-error too: it is an unknown command, not a missing one.
  const [first, asked] = command.args;
  if (error.code === 'commander.help' && first === 'help' && asked !== undefined) {
    return new UsageError(`unknown command '${asked}'`, { code: 'USAGE_UNKNOWN_COMMAND' });
  }
  const message =
    error.code === 'commander.help'
      ? `missing command${subcommands.length > 0 && subcommands.length <= 8 ? ` (one of ${subcommands.join(', ')})` : ''}`
      : // One line: commander puts its "(Did you mean --limit?)" on a line of its own.
        error.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
  // No `cause`: commander's message is the whole story, and describeError would repeat it.
  return new UsageError(message, { code: USAGE_CODES[error.code] ?? 'USAGE' });
}

/** The exit code of anything a command threw (the table in cli/exit-codes.ts). */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  // A watched rollout's outcome carries its own exit code (fleet/job-outcome.ts: 3 failed, 4 timed out).
  const own = (err as { exitCode?: unknown } | null)?.exitCode;
  if (err instanceof FleetError && typeof own === 'number') return own;
  if (err instanceof FleetError && isValidationCode(err.code)) return EXIT.invalid;
  return EXIT.failure;
}

/**
 * Prints a failure the one way (text, or one JSON object with `json`) on stderr and returns the exit code.
 * `program` is the root command, for the hint when no command's action started.
 */
export function reportFailure(thrown: unknown, opts: { state: CliRunState; program: Command; json: boolean; write?: (text: string) => void }): number {
  const write = opts.write ?? ((text: string) => void process.stderr.write(text));
  let err: unknown = thrown;
  let helpOf: Command | undefined;
  if (thrown instanceof CommandLineFailure) {
    // --help, --version: commander already printed them on stdout.
    if (thrown.error.exitCode === 0) return EXIT.ok;
    err = usageErrorOf(thrown);
    helpOf = thrown.command;
  } else if (thrown instanceof CommanderError) {
    if (thrown.exitCode === 0) return EXIT.ok;
    err = new UsageError(thrown.message.replace(/^error: /, ''), { code: USAGE_CODES[thrown.code] ?? 'USAGE' });
  } else if (opts.state.active) {
    // Library errors name their own fields; the user typed flags.
    err = withFlagNames(thrown, commandPath(opts.state.active).split(' ').slice(1).join(' '));
  }
  const exitCode = exitCodeOf(err);
  const message = describeError(err);
  // Help helps with the command line and its values; not with an unreachable hub or a failed rollout.
  const hintCommand = exitCode === EXIT.invalid || err instanceof UsageError ? (helpOf ?? opts.state.active ?? opts.program) : undefined;
  const hint = hintCommand ? `run '${commandPath(hintCommand)} --help'` : undefined;
  if (process.env.FLEETLM_DEBUG && err instanceof Error) write(`${err.stack}\n`);
  if (opts.json) {
    const code = err instanceof FleetError ? err.code : 'ERROR';
    const body: JsonError = { error: { code, message, exitCode, ...(hint ? { hint } : {}) } };
    write(`${JSON.stringify(body)}\n`);
    return exitCode;
  }
  if (helpOf) {
    // The error first (where the eye starts), the whole help, then the error again as the last line for logs.
    let help = '';
    helpOf.configureOutput({ writeErr: (text) => (help += text) });
    helpOf.outputHelp({ error: true });
    write(`fleetlm: error: ${message}\n\n${help.trimEnd()}\n\n`);
  }
  write(`fleetlm: error: ${message}${hint ? ` (${hint})` : ''}\n`);
  return exitCode;
}
