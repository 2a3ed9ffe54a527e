// What the web console shows and does, as plain functions over the operator library (fleet/): the same
// calls `fleetlm devices`, `status`, `telemetry`, `versions`, `cancel` and `rollback` make, so the console
// works wherever the CLI does (local hub or an AWS profile).
import type { IoTClient } from '@aws-sdk/client-iot';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Telemetry } from '../contracts/telemetry.ts';
import { readFleet, type DeviceState } from '../fleet/fleet-inventory.ts';
import { getJobProgress, type JobProgress } from '../fleet/fleet-status.ts';
import { listDeployments, type JobHistoryEntry } from '../fleet/job-history.ts';
import { listVersions, type VersionSummary } from '../fleet/model-registry.ts';
import { createIotClient, createS3Client, type FleetProfile } from '../fleet/profile.ts';
import { rollbackGroup } from '../fleet/rollout.ts';
import { cancelRolloutWithCanary } from '../fleet/canary-rollout.ts';
import { latestByDevice, readTelemetry } from '../fleet/telemetry-reader.ts';

/** One telemetry point of a device, as the charts plot it (null where the device did not measure). */
export interface TelemetryPoint {
  t: number;
  tokensPerSecond: number | null;
  firstTokenMs: number | null;
  rssMb: number;
  temperatureC: number | null;
  powerW: number | null;
}

export interface VersionWithDevices extends VersionSummary {
  /** Devices whose latest telemetry reports this version loaded. */
  devices: string[];
}

export interface ConsoleApi {
  profile: { kind: FleetProfile['kind']; source: string; region: string };
  devices(): Promise<{ indexed: boolean; devices: DeviceState[] }>;
  jobs(limit?: number): Promise<JobHistoryEntry[]>;
  job(jobId: string): Promise<JobProgress>;
  telemetry(thingName: string, limit?: number): Promise<TelemetryPoint[]>;
  versions(): Promise<VersionWithDevices[]>;
  cancel(jobId: string): Promise<JobProgress>;
  rollback(group: string): Promise<{ jobId: string; from: string; to: string }>;
}

/** Telemetry messages to points, oldest first, the newest `limit`. */
export function toSeries(messages: readonly Telemetry[], thingName: string, limit = 500): TelemetryPoint[] {
  return messages
    .filter((m) => m.thingName === thingName)
    .sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq)
    .slice(-limit)
    .map((m) => ({
      t: m.timestamp,
      tokensPerSecond: m.inference.tokensPerSecond?.p50 ?? null,
      firstTokenMs: m.inference.firstTokenMs?.p50 ?? null,
      rssMb: m.system.rssBytes / 2 ** 20,
      temperatureC: m.system.temperatureC,
      powerW: m.system.powerW,
    }));
}

/** The console's operations against one profile. */
export function createConsoleApi(profile: FleetProfile, clients: { iot?: IoTClient; s3?: S3Client } = {}): ConsoleApi {
  const iot = clients.iot ?? createIotClient(profile);
  const s3 = clients.s3 ?? createS3Client(profile);
  return {
    profile: { kind: profile.kind, source: profile.source, region: profile.region },
    devices: async () => readFleet(iot, latestByDevice(await readTelemetry(profile))),
    jobs: (limit = 25) => listDeployments(iot, { limit }),
    job: (jobId) => getJobProgress(iot, jobId, { details: true }),
    telemetry: async (thingName, limit) => toSeries(await readTelemetry(profile), thingName, limit),
    versions: async () => {
      const [versions, telemetry] = await Promise.all([listVersions(s3, profile.s3.bucket), readTelemetry(profile)]);
      const running = new Map<string, string[]>();
      for (const [thing, t] of latestByDevice(telemetry)) {
        if (!t.model) continue;
        const key = `${t.model.modelId}@${t.model.version}`;
        running.set(key, [...(running.get(key) ?? []), thing].sort());
      }
      return versions.map((v) => ({ ...v, devices: running.get(`${v.modelId}@${v.version}`) ?? [] }));
    },
    cancel: async (jobId) => {
      // A rollout's canary job (<id>-canary) is canceled with it, as `fleetlm cancel` does.
      const canceled = await cancelRolloutWithCanary(iot, jobId, { comment: 'canceled from the fleetlm console' });
      return getJobProgress(iot, canceled.includes(jobId) ? jobId : canceled[0]!);
    },
    rollback: async (group) => {
      const rb = await rollbackGroup(iot, s3, profile, group);
      return { jobId: rb.rollout.jobId, from: `${rb.from.modelId}@${rb.from.version}`, to: `${rb.to.modelId}@${rb.to.version}` };
    },
  };
}
