// `fleetlm generate`: not implemented yet.
import type { Command } from 'commander';

/** Registers this command on the program. */
export function register(_program: Command): void {}
