// Reading device telemetry back for the operator: the local hub's durable store (a directory of
// JSON-lines files) or, in the cloud, the DynamoDB table of latest state the IoT rule writes.
// Summaries per device and per model version feed `fleetlm devices` and `fleetlm telemetry`. Messages are read
// with the reader schema: fields a newer agent added are dropped, messages of a newer major schema are counted
// in TelemetrySkips for the operator (never misread), malformed ones are skipped and counted.
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { ScanCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readTelemetryMessage, type Telemetry, type TelemetryReadResult } from '../contracts/telemetry.ts';
import { createDynamoClient, type FleetProfile } from './profile.ts';

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full)));
    else if (/\.(jsonl|ndjson|json|log)$/.test(entry.name)) out.push(full);
  }
  return out;
}

/** What a read left out: messages of a newer major schema (per schema id, the devices that sent them) and invalid ones. */
export class TelemetrySkips {
  readonly newer = new Map<string, Set<string>>();
  newerMessages = 0;
  invalid = 0;

  /** Counts one message that was not read. */
  note(r: Exclude<TelemetryReadResult, { kind: 'ok' }>): void {
    if (r.kind === 'invalid') {
      this.invalid += 1;
      return;
    }
    this.newerMessages += 1;
    let devices = this.newer.get(r.schema);
    if (!devices) this.newer.set(r.schema, (devices = new Set()));
    if (r.thingName) devices.add(r.thingName);
  }

  /** One line for the operator when messages of a newer schema were left out, else null. */
  describeNewer(): string | null {
    if (this.newerMessages === 0) return null;
    const devices = [...new Set([...this.newer.values()].flatMap((d) => [...d]))].sort();
    const shown = devices.length > 5 ? `${devices.slice(0, 5).join(', ')} and ${devices.length - 5} more` : devices.join(', ');
    return (
      `${this.newerMessages} telemetry message${this.newerMessages === 1 ? '' : 's'}${devices.length ? ` from ${shown}` : ''} ${this.newerMessages === 1 ? 'uses' : 'use'} ${[...this.newer.keys()].sort().join(', ')}, ` +
      `newer than the fleetlm/telemetry@1 this fleetlm reads; ${this.newerMessages === 1 ? 'it is' : 'they are'} left out: upgrade fleetlm`
    );
  }
}

/** Pulls telemetry out of a stored record: either the message itself or an envelope around it. */
function extract(value: unknown): TelemetryReadResult {
  const direct = readTelemetryMessage(value);
  if (direct.kind !== 'invalid') return direct;
  if (value && typeof value === 'object') {
    for (const key of ['payload', 'message', 'telemetry', 'data']) {
      const inner = (value as Record<string, unknown>)[key];
      if (inner === undefined) continue;
      const r = readTelemetryMessage(typeof inner === 'string' ? safeJson(inner) : inner);
      if (r.kind !== 'invalid') return r;
    }
  }
  return direct;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Every valid telemetry message in a local hub's telemetry directory; what is left out is counted in `skips`. */
export async function readTelemetryDir(dir: string, skips = new TelemetrySkips()): Promise<Telemetry[]> {
  if (!existsSync(dir)) return [];
  const out: Telemetry[] = [];
  for (const file of await listFiles(dir)) {
    const text = await fs.readFile(file, 'utf8');
    const trimmed = text.trim();
    if (trimmed.startsWith('[')) {
      const arr = safeJson(trimmed);
      if (Array.isArray(arr)) for (const v of arr) take(out, extract(v), skips);
      continue;
    }
    for (const line of text.split('\n')) {
      if (line.trim()) take(out, extract(safeJson(line)), skips);
    }
  }
  return out.sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq);
}

function take(out: Telemetry[], r: TelemetryReadResult, skips: TelemetrySkips): void {
  if (r.kind === 'ok') out.push(r.message);
  else skips.note(r);
}

/** Latest telemetry per device from the DynamoDB table (attribute `payload` holds the message JSON, or the item is the message). */
export async function readTelemetryTable(ddb: DynamoDBClient, table: string, skips = new TelemetrySkips()): Promise<Telemetry[]> {
  const out: Telemetry[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await ddb.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    for (const item of page.Items ?? []) {
      const payload = item.payload?.S ?? item.telemetry?.S;
      // The cloud IoT rule stores the message's own fields plus `receivedAt` (see infra/stacks/fleet-stack.ts).
      const { receivedAt: _receivedAt, ...fields } = unmarshallLoose(item);
      take(out, extract(payload ? safeJson(payload) : fields), skips);
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

function unmarshallLoose(item: Record<string, unknown>): Record<string, unknown> {
  const conv = (v: unknown): unknown => {
    const a = v as Record<string, unknown>;
    if ('S' in a) return a.S;
    if ('N' in a) return Number(a.N);
    if ('BOOL' in a) return a.BOOL;
    if ('NULL' in a) return null;
    if ('M' in a) return Object.fromEntries(Object.entries(a.M as Record<string, unknown>).map(([k, x]) => [k, conv(x)]));
    if ('L' in a) return (a.L as unknown[]).map(conv);
    return undefined;
  };
  return Object.fromEntries(Object.entries(item).map(([k, v]) => [k, conv(v)]));
}

/** All telemetry the profile can see; what is left out is counted in `skips`. */
export async function readTelemetry(profile: FleetProfile, skips = new TelemetrySkips()): Promise<Telemetry[]> {
  if (profile.telemetry.kind === 'dir') return readTelemetryDir(profile.telemetry.dir, skips);
  if (profile.telemetry.kind === 'dynamodb') return readTelemetryTable(createDynamoClient(profile), profile.telemetry.table, skips);
  return [];
}

/** Latest message per device. */
export function latestByDevice(messages: readonly Telemetry[]): Map<string, Telemetry> {
  const latest = new Map<string, Telemetry>();
  for (const m of messages) {
    const prev = latest.get(m.thingName);
    if (!prev || m.timestamp > prev.timestamp || (m.timestamp === prev.timestamp && m.seq > prev.seq)) latest.set(m.thingName, m);
  }
  return latest;
}

export interface TelemetrySummary {
  key: string;
  messages: number;
  devices: number;
  requests: number;
  firstTokenMsP50: number | null;
  firstTokenMsP95: number | null;
  tokensPerSecondP50: number | null;
  rssMb: number | null;
  /** Energy used while in this group: the increase of each device's cumulative counter, summed. */
  energyJ: number;
  energyEstimated: boolean;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Energy each message accounts for: agents report energy cumulatively since they started, so a
 * message's share is the increase since the same device's previous message (or its whole value
 * after a restart, when the counter went back).
 */
export function energyDeltas(messages: readonly Telemetry[]): Map<Telemetry, number> {
  const byDevice = new Map<string, Telemetry[]>();
  for (const m of messages) {
    let list = byDevice.get(m.thingName);
    if (!list) byDevice.set(m.thingName, (list = []));
    list.push(m);
  }
  const out = new Map<Telemetry, number>();
  for (const list of byDevice.values()) {
    list.sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq);
    let prev: Telemetry | undefined;
    for (const m of list) {
      const e = m.system.energyJ;
      out.set(m, prev && e >= prev.system.energyJ ? e - prev.system.energyJ : e);
      prev = m;
    }
  }
  return out;
}

/** Summaries grouped by device or by model version (medians of the devices' reported percentiles). */
export function summarise(messages: readonly Telemetry[], by: 'device' | 'version'): TelemetrySummary[] {
  const deltas = energyDeltas(messages);
  const groups = new Map<string, Telemetry[]>();
  for (const m of messages) {
    const key = by === 'device' ? m.thingName : m.model ? `${m.model.modelId}@${m.model.version}` : '(none)';
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(m);
  }
  return [...groups.entries()]
    .map(([key, g]) => {
      const latest = latestByDevice(g);
      const withFt = g.filter((m) => m.inference.firstTokenMs);
      const withTps = g.filter((m) => m.inference.tokensPerSecond);
      const last = [...latest.values()];
      return {
        key,
        messages: g.length,
        devices: latest.size,
        requests: last.reduce((s, m) => s + m.inference.requests, 0),
        firstTokenMsP50: median(withFt.map((m) => m.inference.firstTokenMs!.p50)),
        firstTokenMsP95: median(withFt.map((m) => m.inference.firstTokenMs!.p95)),
        tokensPerSecondP50: median(withTps.map((m) => m.inference.tokensPerSecond!.p50)),
        rssMb: median(last.map((m) => m.system.rssBytes / 2 ** 20)),
        energyJ: g.reduce((s, m) => s + (deltas.get(m) ?? 0), 0),
        energyEstimated: g.some((m) => m.system.energyEstimated),
      };
    })
    .sort((a, b) => a.key.localeCompare(b.key));
}
