// Durable store for `fleetlm/{thing}/telemetry` (JSON lines, grouped fsync; invalid messages kept apart
// and counted) and `queryTelemetry`, which the CLI reads it back with. The sink validates the fields it knows
// and stores the message as the device sent it, unknown fields included: the store outlives this hub's version,
// and a newer CLI reading it must find what a newer agent reported. For the same reason a message of a newer
// major schema is stored whole (checked only against its topic's thing): this hub cannot read it, but a CLI can,
// or can at least say that it cannot (`fleetlm telemetry` names such messages and their devices).
import { createReadStream, existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { TelemetryReadSchema, readTelemetryMessage, type Telemetry } from '../contracts/telemetry.ts';

/** Valid messages, one envelope a line. */
export const TELEMETRY_FILE = 'telemetry.jsonl';
/** Where rejected messages are kept (outside telemetryDir, so readers of valid data never see them). */
export const REJECTED_FILE = 'telemetry-rejected.jsonl';

export interface TelemetryRecord {
  /** Hub clock, ms since the epoch. */
  receivedAt: number;
  /** Thing name from the topic (the broker has checked it is the sender's client id). */
  thingName: string;
  telemetry: Telemetry;
}

export interface TelemetryFilter {
  thingName?: string;
  /** Inclusive bounds on the device timestamp (ms since the epoch). */
  since?: number;
  until?: number;
  event?: Telemetry['event'];
  modelId?: string;
  /** Keep only the newest `limit` records (after filtering). */
  limit?: number;
}

export interface TelemetrySink {
  dir: string;
  /** Stores one message from `thingName` (returns once queued; `flush` waits for the fsync). */
  accept(thingName: string, payload: Buffer): void;
  flush(): Promise<void>;
  /** Messages stored (newerSchema of them of a newer major schema, stored unread) and rejected. */
  stats(): { stored: number; rejected: number; newerSchema: number };
  close(): Promise<void>;
}

/** Appends lines to a file with grouped write + fsync. */
class Appender {
  private queue: string[] = [];
  private running: Promise<void> | null = null;
  private handle: fs.FileHandle | null = null;
  constructor(private readonly file: string, private readonly onError: (err: unknown) => void) {}

  push(line: string): void {
    this.queue.push(line);
    if (!this.running) this.running = this.loop();
  }

  private async loop(): Promise<void> {
    try {
      this.handle ??= await fs.open(this.file, 'a');
      while (this.queue.length > 0) {
        const batch = this.queue.join('');
        this.queue = [];
        await this.handle.appendFile(batch);
        await this.handle.sync();
      }
    } catch (err) {
      this.onError(err);
    } finally {
      this.running = null;
    }
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle?.close();
    this.handle = null;
  }
}

/** Opens the sink under `telemetryDir` (valid) and `rejectedFile`. */
export async function openTelemetrySink(
  telemetryDir: string,
  rejectedFile: string,
  onError: (err: unknown) => void = () => {},
): Promise<TelemetrySink> {
  await fs.mkdir(telemetryDir, { recursive: true });
  const good = new Appender(path.join(telemetryDir, TELEMETRY_FILE), onError);
  const bad = new Appender(rejectedFile, onError);
  let stored = 0;
  let rejected = 0;
  let newerSchema = 0;
  const store = (record: { receivedAt: number; thingName: string; telemetry: unknown }): void => {
    stored += 1;
    good.push(`${JSON.stringify(record)}\n`);
  };
  return {
    dir: telemetryDir,
    accept(thingName, payload) {
      const receivedAt = Date.now();
      const text = payload.toString('utf8');
      let reason: string | undefined;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        reason = `not valid JSON: ${(err as Error).message}`;
      }
      if (reason === undefined) {
        const parsed = readTelemetryMessage(value, 'keep');
        const claimed = parsed.kind === 'ok' ? parsed.message.thingName : parsed.kind === 'newer' ? parsed.thingName : null;
        if (parsed.kind === 'invalid') reason = parsed.reason;
        else if (claimed !== null && claimed !== thingName) {
          reason = `thingName "${claimed}" does not match the topic's thing "${thingName}"`;
        } else if (parsed.kind === 'newer') {
          newerSchema += 1;
          store({ receivedAt, thingName, telemetry: value });
          return;
        } else {
          const record: TelemetryRecord = { receivedAt, thingName, telemetry: parsed.message };
          store(record);
          return;
        }
      }
      rejected += 1;
      bad.push(`${JSON.stringify({ receivedAt, thingName, reason, payload: text.slice(0, 64 * 1024) })}\n`);
    },
    async flush() {
      await Promise.all([good.flush(), bad.flush()]);
    },
    stats: () => ({ stored, rejected, newerSchema }),
    async close() {
      await Promise.all([good.close(), bad.close()]);
    },
  };
}

// Read back with the reader schema: callers get the fields this version knows (records of a newer major schema,
// stored unread, are not returned: fleet/telemetry-reader.ts counts and reports them).
const RecordSchema = z.object({ receivedAt: z.number(), thingName: z.string(), telemetry: TelemetryReadSchema });

/** Reads stored telemetry from a hub's telemetry directory, oldest first, filtered. */
export async function queryTelemetry(dir: string, filter: TelemetryFilter = {}): Promise<TelemetryRecord[]> {
  const file = path.join(dir, TELEMETRY_FILE);
  if (!existsSync(file)) return [];
  const out: TelemetryRecord[] = [];
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue; // a torn last line after a crash
    }
    const parsed = RecordSchema.safeParse(value);
    if (!parsed.success) continue;
    const r = parsed.data;
    const t = r.telemetry;
    if (filter.thingName !== undefined && r.thingName !== filter.thingName) continue;
    if (filter.since !== undefined && t.timestamp < filter.since) continue;
    if (filter.until !== undefined && t.timestamp > filter.until) continue;
    if (filter.event !== undefined && t.event !== filter.event) continue;
    if (filter.modelId !== undefined && t.model?.modelId !== filter.modelId) continue;
    out.push(r);
  }
  out.sort((a, b) => a.telemetry.timestamp - b.telemetry.timestamp || a.receivedAt - b.receivedAt);
  return filter.limit !== undefined ? out.slice(Math.max(0, out.length - filter.limit)) : out;
}
