// `fleetlm console`: serves the operator web console on loopback over the same operator APIs as the other
// commands (local hub with --local, or an AWS profile), until interrupted.
import type { Command } from 'commander';
import { createConsoleApi } from '../../console/console-api.ts';
import { startConsoleServer } from '../../console/server.ts';
import { describeError, ValidationError } from '../../common/errors.ts';
import { profileFrom, withProfile, type CommonOpts } from './fleet.ts';

/** Registers `console`. */
export function register(program: Command): void {
  withProfile(
    program
      .command('console')
      .description('Serve the operator web console (devices, jobs, telemetry charts, model registry) on 127.0.0.1')
      .option('--port <port>', 'TCP port on 127.0.0.1 (default: a free one)')
      .option('--actions', 'enable cancel and roll back in the page (each asks for confirmation)'),
  ).action(async (o: CommonOpts & { port?: string; actions?: boolean }) => {
    const port = o.port === undefined ? undefined : Number(o.port);
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
      throw new ValidationError(`--port must be an integer in 0..65535; got ${JSON.stringify(o.port)}`);
    }
    const profile = await profileFrom(o);
    const server = await startConsoleServer({
      api: createConsoleApi(profile),
      port,
      actions: o.actions === true,
      onError: (err) => process.stderr.write(`console: ${describeError(err)}\n`),
    });
    process.stdout.write(
      o.json
        ? `${JSON.stringify({ url: server.url, port: server.port, actions: o.actions === true, profile: profile.source })}\n`
        : `FleetLM console on ${server.url} (${profile.kind}: ${profile.source}; actions ${o.actions ? 'on' : 'off'}). Ctrl-C stops it.\n`,
    );
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
  });
}
