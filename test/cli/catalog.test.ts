// The lazy command catalog (cli/commands/index.ts) lists each command with the description its module
// registers, and `fleetlm <cmd>` loads only that command's module.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../cli/commands/index.ts';
import { buildProgram, entryFor } from '../../cli/main.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';

describe('CLI command catalog', () => {
  it('names exactly the top-level commands each module registers, with their descriptions', async () => {
    for (const entry of COMMANDS) {
      const program = new Command('fleetlm');
      (await entry.load()).register(program);
      const registered = Object.fromEntries(program.commands.map((c) => [c.name(), c.description()]));
      expect(registered).toEqual(entry.commands);
    }
  });

  it('has no command name twice', () => {
    const names = COMMANDS.flatMap((e) => Object.keys(e.commands));
    expect(new Set(names).size).toBe(names.length);
  });

  it('routes argv to the module of the named command, `help <cmd>` included, and lists all for top-level help', async () => {
    expect(entryFor(['node', 'fleetlm', 'rollout', '--group', 'g'])?.commands).toHaveProperty('rollout');
    expect(entryFor(['node', 'fleetlm', 'help', 'agent'])?.commands).toHaveProperty('agent');
    expect(entryFor(['node', 'fleetlm', '--help'])).toBeUndefined();
    expect(entryFor(['node', 'fleetlm', 'no-such-command'])).toBeUndefined();
    const top = await buildProgram();
    expect(top.commands.map((c) => c.name())).toEqual(COMMANDS.flatMap((e) => Object.keys(e.commands)));
    const r = await runCliCaptured(['no-such-command']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown command 'no-such-command'/);
  });
});
