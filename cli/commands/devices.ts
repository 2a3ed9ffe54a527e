// `fleetlm devices`: the fleet at a glance, one line per device (online state from fleet indexing's
// connectivity, last seen, groups, model version, current job, temperature, power and speed from telemetry).
import type { Command } from 'commander';
import { formatAgo, readFleet } from '../../fleet/fleet-inventory.ts';
import { createIotClient } from '../../fleet/profile.ts';
import { latestByDevice } from '../../fleet/telemetry-reader.ts';
import { out, profileFrom, readTelemetryFor, table, withProfile, type CommonOpts } from './fleet.ts';

/** Registers `devices`. */
export function register(program: Command): void {
  withProfile(
    program
      .command('devices')
      .description('Devices at a glance: online state, last seen, group, model version, job, temperature, power, speed')
      .option('--group <group>', 'only this thing group'),
  ).action(async (o: CommonOpts & { group?: string }) => {
    const profile = await profileFrom(o, { bucket: false });
    const latest = latestByDevice(await readTelemetryFor(profile));
    const now = Date.now();
    const fleet = await readFleet(createIotClient(profile), latest, { group: o.group, now });
    const state = (online: boolean | null) => (online === null ? 'unknown' : online ? 'online' : 'offline');
    out(o, { indexed: fleet.indexed, devices: fleet.devices }, () =>
      [
        table(
          ['device', 'state', 'last seen', 'groups', 'model', 'job', 'temp C', 'power W', 'tokens/s', 'first token ms', 'RSS MB'],
          fleet.devices.map((d) => [
            d.thingName,
            state(d.online),
            d.online ? 'now' : formatAgo(d.lastSeen, now),
            d.groups.join(',') || null,
            d.model,
            d.job ? `${d.job.jobId} (${d.job.status})` : null,
            d.temperatureC,
            d.powerW,
            d.tokensPerSecondP50,
            d.firstTokenMsP50,
            d.rssMb,
          ]),
        ),
        ...(fleet.indexed
          ? []
          : ['online state unknown: fleet indexing with thing connectivity is off or not readable (aws iot update-indexing-configuration; iot:SearchIndex)']),
      ].join('\n'),
    );
  });
}
