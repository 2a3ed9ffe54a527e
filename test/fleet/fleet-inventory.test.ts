// Devices at a glance (fleet/fleet-inventory.ts) on hand-made inputs: last seen from connectivity or telemetry,
// "N min ago" texts, and connectivity that cannot be read (fleet indexing off, no iot:SearchIndex) as unknown.
import { describe, expect, it } from 'vitest';
import type { IoTClient } from '@aws-sdk/client-iot';
import { TransportError } from '../../common/errors.ts';
import { parseTelemetry } from '../../contracts/telemetry.ts';
import { deviceState, formatAgo, formatOnline, readConnectivity } from '../../fleet/fleet-inventory.ts';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);

const telemetry = parseTelemetry({
  schema: 'fleetlm/telemetry@1',
  thingName: 'pi-1',
  timestamp: NOW - 90_000,
  seq: 4,
  event: 'periodic',
  model: { modelId: 'tiny', version: '1.0' },
  inference: { requests: 3, firstTokenMs: { p50: 40, p95: 80 }, tokensPerSecond: { p50: 50, p95: 60 } },
  system: { rssBytes: 100 * 2 ** 20, cpuLoad1m: 0.5, temperatureC: 51.5, powerW: 4.2, energyJ: 10, energyEstimated: false },
});

function failingIot(name: string): IoTClient {
  return { send: async () => Promise.reject(Object.assign(new Error(`${name} from the service`), { name })) } as unknown as IoTClient;
}

describe('fleet inventory', () => {
  it('takes last seen from the later of the disconnect and the latest telemetry; now when connected', () => {
    const offline = deviceState('pi-1', { connected: false, since: NOW - 600_000, disconnectReason: 'CONNECTION_LOST', groups: ['lab'] }, telemetry, null, NOW);
    expect(offline).toMatchObject({ online: false, lastSeen: NOW - 90_000, disconnectReason: 'CONNECTION_LOST', groups: ['lab'], model: 'tiny@1.0', temperatureC: 51.5, powerW: 4.2, rssMb: 100 });
    expect(formatOnline(offline, NOW)).toBe('offline, last seen 1 min ago');
    expect(deviceState('pi-1', { connected: true, since: NOW - 600_000 }, telemetry, null, NOW).lastSeen).toBe(NOW);
    const unknown = deviceState('pi-9', undefined, undefined, { jobId: 'j', status: 'QUEUED' }, NOW);
    expect(unknown).toMatchObject({ online: null, lastSeen: null, model: null, job: { jobId: 'j', status: 'QUEUED' } });
    expect(formatOnline(unknown, NOW)).toBe('unknown');
    expect(formatOnline({ online: false, lastSeen: null }, NOW)).toBe('offline, never seen');
  });

  it('says ago in seconds, minutes, hours and days', () => {
    expect([0, 30_000, 120_000, 3 * 3600_000, 49 * 3600_000].map((d) => formatAgo(NOW - d, NOW))).toEqual(['just now', '30 s ago', '2 min ago', '3 h ago', '2 d ago']);
    expect(formatAgo(null, NOW)).toBe('never');
  });

  it('treats a fleet index that is off or not readable as unknown connectivity, and other failures as errors', async () => {
    for (const name of ['IndexNotReadyException', 'ResourceNotFoundException', 'AccessDeniedException']) {
      await expect(readConnectivity(failingIot(name))).resolves.toEqual({ indexed: false, things: new Map() });
    }
    await expect(readConnectivity(failingIot('ThrottlingException'))).rejects.toBeInstanceOf(TransportError);
  });
});
