// `fleetlm versions` (the model registry: published versions with size, compression, quality and the devices
// running each) and `fleetlm deprecate` (mark a version so rollouts refuse it).
import type { Command } from 'commander';
import { setDeprecated, listVersions } from '../../fleet/model-registry.ts';
import { createS3Client } from '../../fleet/profile.ts';
import { latestByDevice } from '../../fleet/telemetry-reader.ts';
import { out, profileFrom, readTelemetryFor, table, withProfile, type CommonOpts } from './fleet.ts';

/** Registers `versions` and `deprecate`. */
export function register(program: Command): void {
  // `deprecate` takes `--version V`; without positional options the root's `--version` would swallow it.
  program.enablePositionalOptions();
  withProfile(
    program
      .command('versions')
      .description('Published model versions: size, compression, quality, deprecation and the devices running each')
      .option('--model <id>', 'only this model id'),
  ).action(async (o: CommonOpts & { model?: string }) => {
    const profile = await profileFrom(o);
    const [versions, telemetry] = await Promise.all([listVersions(createS3Client(profile), profile.s3.bucket, { modelId: o.model }), readTelemetryFor(profile)]);
    const running = new Map<string, string[]>();
    for (const [thing, t] of latestByDevice(telemetry)) {
      if (t.model) running.set(`${t.model.modelId}@${t.model.version}`, [...(running.get(`${t.model.modelId}@${t.model.version}`) ?? []), thing].sort());
    }
    const rows = versions.map((v) => ({ ...v, devices: running.get(`${v.modelId}@${v.version}`) ?? [] }));
    out(o, { versions: rows }, () =>
      rows.length === 0
        ? 'no published versions'
        : table(
            ['model', 'version', 'published', 'size MB', 'files', 'compression', 'quality', 'perplexity', 'devices', 'state'],
            rows.map((v) => [
              v.modelId,
              v.version,
              v.createdAt,
              v.totalBytes / 2 ** 20,
              v.files,
              v.compression ?? 'none',
              v.quality ? `${v.quality.passed === false ? 'failed' : 'passed'}${v.quality.totalChange === null ? '' : ` ${(v.quality.totalChange * 100).toFixed(1)}% ppl`}` : null,
              v.perplexity,
              v.devices.length ? v.devices.join(',') : null,
              v.deprecated ? `deprecated: ${v.deprecated.reason}` : 'active',
            ]),
          ),
    );
  });

  withProfile(
    program
      .command('deprecate')
      .description('Mark a published version deprecated so rollouts refuse it (--undo lifts the mark)')
      .requiredOption('--model <id>', 'model id')
      .requiredOption('--version <version>', 'published version')
      .option('--reason <text>', 'why, shown when a rollout is refused')
      .option('--undo', 'lift the mark'),
  ).action(async (o: CommonOpts & { model: string; version: string; reason?: string; undo?: boolean }) => {
    const profile = await profileFrom(o);
    const marker = await setDeprecated(createS3Client(profile), profile.s3.bucket, o.model, o.version, { reason: o.reason, undo: o.undo });
    out(o, { modelId: o.model, version: o.version, deprecated: marker }, () =>
      marker ? `deprecated ${o.model}@${o.version}: rollouts of it are refused (${marker.reason})` : `${o.model}@${o.version} may be rolled out again`,
    );
  });
}
