// The exit codes of every `fleetlm` command, in one table: docs/operator.md prints it and
// test/cli/conventions.test.ts checks that the docs and the commands agree with it.
import { WATCH_EXIT } from '../fleet/job-outcome.ts';

/** Exit code -> what it means, the same for every command. */
export const EXIT_CODES = [
  { code: WATCH_EXIT.succeeded, meaning: 'success (a watched job COMPLETED and every device that got it SUCCEEDED)' },
  { code: WATCH_EXIT.error, meaning: 'usage error (unknown flag or command, missing required option or argument, bad choice; the help follows the error) or a runtime failure (hub or AWS unreachable)' },
  { code: WATCH_EXIT.invalid, meaning: 'invalid input: a bad flag value, a bad or missing input file, a missing or deprecated version, an unknown job' },
  { code: WATCH_EXIT.failed, meaning: 'a watched job failed: CANCELED (aborted by its abort threshold, or canceled), or COMPLETED with any device FAILED, REJECTED, TIMED_OUT or REMOVED; or, with `--canary`, the canary failed or ran past `--canary-timeout` and the rollout\'s job was never created (also without `--watch`)' },
  { code: WATCH_EXIT.timedOut, meaning: '`--watch-timeout SEC` ran out before the watched job was done (during a canary: the canary job is canceled)' },
] as const;

/** Named exit codes. */
export const EXIT = { ok: WATCH_EXIT.succeeded, usage: WATCH_EXIT.usage, failure: WATCH_EXIT.error, invalid: WATCH_EXIT.invalid, jobFailed: WATCH_EXIT.failed, watchTimeout: WATCH_EXIT.timedOut } as const;
