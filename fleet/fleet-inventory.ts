// The operator's view of the fleet at a glance: per device its connectivity (fleet indexing's
// `connectivity`, answered by AWS IoT and the local hub alike), groups, the job it is running and its latest
// telemetry. https://docs.aws.amazon.com/iot/latest/developerguide/managing-fleet-index.html
import {
  ListJobExecutionsForThingCommand,
  ListThingsCommand,
  ListThingsInThingGroupCommand,
  SearchIndexCommand,
  type IoTClient,
} from '@aws-sdk/client-iot';
import type { Telemetry } from '../contracts/telemetry.ts';
import { TransportError } from '../common/errors.ts';

/** Connectivity of one thing; `connected` null when the fleet index does not answer (not enabled). */
export interface Connectivity {
  connected: boolean | null;
  /** Epoch ms of the last connect or disconnect, when known. */
  since?: number;
  disconnectReason?: string;
  groups?: string[];
}

/** One device as `fleetlm devices` and the console show it. */
export interface DeviceState {
  thingName: string;
  /** true online, false offline, null unknown (fleet indexing with connectivity is not enabled). */
  online: boolean | null;
  /** Epoch ms the device was last known alive: now when connected, else its last disconnect or telemetry. */
  lastSeen: number | null;
  disconnectReason: string | null;
  groups: string[];
  model: string | null;
  /** The job the device is running (IN_PROGRESS) or will run next (QUEUED). */
  job: { jobId: string; status: string } | null;
  temperatureC: number | null;
  powerW: number | null;
  tokensPerSecondP50: number | null;
  firstTokenMsP50: number | null;
  rssMb: number | null;
  requests: number | null;
  energyJ: number | null;
  energyEstimated: boolean | null;
}

/**
 * Whether the fleet index is missing, not configured, or not readable with these credentials (no
 * iot:SearchIndex): connectivity is then unknown, which must not break the commands that only add it.
 */
function indexUnavailable(err: unknown): boolean {
  const name = (err as { name?: string }).name ?? '';
  return ['IndexNotReadyException', 'ResourceNotFoundException', 'InvalidRequestException', 'UnknownOperationException', 'AccessDeniedException', 'UnauthorizedException'].includes(name);
}

/**
 * Connectivity of every thing the fleet index answers for `queryString` (default all things); an empty map
 * with `indexed: false` when fleet indexing (with thing connectivity) is not enabled.
 */
export async function readConnectivity(iot: IoTClient, queryString = 'thingName:*'): Promise<{ indexed: boolean; things: Map<string, Connectivity> }> {
  const things = new Map<string, Connectivity>();
  let nextToken: string | undefined;
  try {
    do {
      const page = await iot.send(new SearchIndexCommand({ indexName: 'AWS_Things', queryString, nextToken, maxResults: 250 }));
      for (const doc of page.things ?? []) {
        if (!doc.thingName) continue;
        const c = doc.connectivity;
        things.set(doc.thingName, {
          connected: c?.connected ?? null,
          since: c?.timestamp === undefined ? undefined : Number(c.timestamp),
          disconnectReason: c?.disconnectReason,
          groups: doc.thingGroupNames,
        });
      }
      nextToken = page.nextToken;
    } while (nextToken);
  } catch (err) {
    if (indexUnavailable(err)) return { indexed: false, things: new Map() };
    throw new TransportError(`SearchIndex failed: ${(err as Error).message}`, { cause: err });
  }
  return { indexed: true, things };
}

/** Thing names, all or one group's, sorted. */
export async function listThingNames(iot: IoTClient, group?: string): Promise<string[]> {
  const names: string[] = [];
  let nextToken: string | undefined;
  do {
    if (group) {
      const page = await iot.send(new ListThingsInThingGroupCommand({ thingGroupName: group, nextToken, maxResults: 250 }));
      names.push(...(page.things ?? []));
      nextToken = page.nextToken;
    } else {
      const page = await iot.send(new ListThingsCommand({ nextToken, maxResults: 250 }));
      names.push(...(page.things ?? []).map((t) => t.thingName!).filter(Boolean));
      nextToken = page.nextToken;
    }
  } while (nextToken);
  return names.sort();
}

/** The job a thing is running, else the one it will run next. */
async function currentJob(iot: IoTClient, thingName: string): Promise<DeviceState['job']> {
  for (const status of ['IN_PROGRESS', 'QUEUED'] as const) {
    const page = await iot.send(new ListJobExecutionsForThingCommand({ thingName, status, maxResults: 1 }));
    const first = page.executionSummaries?.[0];
    if (first?.jobId) return { jobId: first.jobId, status };
  }
  return null;
}

/** Assembles DeviceStates from connectivity and latest telemetry (pure; `now` for the connected case). */
export function deviceState(
  thingName: string,
  c: Connectivity | undefined,
  t: Telemetry | undefined,
  job: DeviceState['job'],
  now: number,
): DeviceState {
  const online = c ? c.connected : null;
  const heard = [online === true ? now : undefined, online === false ? c?.since : undefined, t?.timestamp].filter((x): x is number => x !== undefined);
  return {
    thingName,
    online,
    lastSeen: heard.length ? Math.max(...heard) : null,
    disconnectReason: online === false ? (c?.disconnectReason ?? null) : null,
    groups: c?.groups ?? [],
    model: t?.model ? `${t.model.modelId}@${t.model.version}` : null,
    job,
    temperatureC: t?.system.temperatureC ?? null,
    powerW: t?.system.powerW ?? null,
    tokensPerSecondP50: t?.inference.tokensPerSecond?.p50 ?? null,
    firstTokenMsP50: t?.inference.firstTokenMs?.p50 ?? null,
    rssMb: t ? t.system.rssBytes / 2 ** 20 : null,
    requests: t?.inference.requests ?? null,
    energyJ: t?.system.energyJ ?? null,
    energyEstimated: t?.system.energyEstimated ?? null,
  };
}

/** Every device (or one group's) with connectivity, groups, current job and latest telemetry. */
export async function readFleet(
  iot: IoTClient,
  latestTelemetry: ReadonlyMap<string, Telemetry>,
  opts: { group?: string; now?: number } = {},
): Promise<{ indexed: boolean; devices: DeviceState[] }> {
  const [names, conn] = await Promise.all([listThingNames(iot, opts.group), readConnectivity(iot)]);
  const now = opts.now ?? Date.now();
  const devices: DeviceState[] = [];
  // A few at a time: ListJobExecutionsForThing is throttled per account on AWS.
  for (let i = 0; i < names.length; i += 8) {
    const batch = names.slice(i, i + 8);
    const jobs = await Promise.all(batch.map((n) => currentJob(iot, n)));
    batch.forEach((n, k) => devices.push(deviceState(n, conn.things.get(n), latestTelemetry.get(n), jobs[k]!, now)));
  }
  return { indexed: conn.indexed, devices };
}

/** "just now", "45 s ago", "2 min ago", "3 h ago", "5 d ago". */
export function formatAgo(then: number | null, now: number = Date.now()): string {
  if (then === null) return 'never';
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** "online", "offline (last seen 2 min ago)", or "unknown" when connectivity is not indexed. */
export function formatOnline(d: Pick<DeviceState, 'online' | 'lastSeen'>, now: number = Date.now()): string {
  if (d.online === null) return 'unknown';
  if (d.online) return 'online';
  return d.lastSeen === null ? 'offline, never seen' : `offline, last seen ${formatAgo(d.lastSeen, now)}`;
}
