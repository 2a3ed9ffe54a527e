// Telemetry on fleetlm/{thing}/telemetry (QoS 1), periodic and on events. Every message is first written
// to a bounded on-disk outbox (oldest dropped with a counter), then published in order while connected,
// so nothing measured offline is lost unless the outbox overflows.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { describeError } from '../common/errors.ts';
import { telemetryTopic } from '../contracts/jobs-topics.ts';
import { TELEMETRY_SCHEMA, TelemetryForwardSchema, TelemetryWriteSchema, type RecoveryNote, type Telemetry } from '../contracts/telemetry.ts';

export type { RecoveryNote };
import type { InferenceStats } from './inference-stats.ts';
import type { Logger } from './log.ts';
import type { ModelRef } from './model-store.ts';
import type { MqttTransport } from './mqtt-connection.ts';

export type TelemetryEvent = Telemetry['event'];

async function readNumber(file: string): Promise<number | null> {
  try {
    const n = Number((await fs.readFile(file, 'utf8')).trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

async function listDir(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => [] as string[]);
}

/** Hottest thermal zone in °C (sysfs reports millidegrees), or null where there are none. */
export async function readTemperatureC(sysfsRoot: string): Promise<number | null> {
  const base = path.join(sysfsRoot, 'class', 'thermal');
  let best: number | null = null;
  for (const zone of await listDir(base)) {
    if (!zone.startsWith('thermal_zone')) continue;
    const milli = await readNumber(path.join(base, zone, 'temp'));
    // Some Jetson zones report -256000 or similar when a sensor is off.
    if (milli === null || milli < -40_000 || milli > 150_000) continue;
    const c = milli / 1000;
    if (best === null || c > best) best = c;
  }
  return best;
}

interface Rail {
  label: string;
  watts: number;
}

/**
 * Board power in watts from Jetson INA3221 monitors, or null where none is present. Reads the hwmon
 * driver (L4T 34+: in{N}_input mV x curr{N}_input mA) and the older ina3221x IIO driver
 * (in_power{N}_input mW). A rail labelled as the board input (VDD_IN, POM_5V_IN) is the total;
 * otherwise the rails are summed.
 */
export async function readInaPowerW(sysfsRoot: string): Promise<number | null> {
  const rails: Rail[] = [];
  const hwmonDriver = path.join(sysfsRoot, 'bus', 'i2c', 'drivers', 'ina3221');
  for (const dev of await listDir(hwmonDriver)) {
    const hwmonDir = path.join(hwmonDriver, dev, 'hwmon');
    for (const hw of await listDir(hwmonDir)) {
      for (let ch = 1; ch <= 3; ch++) {
        const mv = await readNumber(path.join(hwmonDir, hw, `in${ch}_input`));
        const ma = await readNumber(path.join(hwmonDir, hw, `curr${ch}_input`));
        if (mv === null || ma === null) continue;
        const label = (await fs.readFile(path.join(hwmonDir, hw, `in${ch}_label`), 'utf8').catch(() => `in${ch}`)).trim();
        rails.push({ label, watts: (mv * ma) / 1e6 });
      }
    }
  }
  const iioDriver = path.join(sysfsRoot, 'bus', 'i2c', 'drivers', 'ina3221x');
  for (const dev of await listDir(iioDriver)) {
    for (const iio of (await listDir(path.join(iioDriver, dev))).filter((n) => n.startsWith('iio:device'))) {
      for (let ch = 0; ch < 3; ch++) {
        const mw = await readNumber(path.join(iioDriver, dev, iio, `in_power${ch}_input`));
        if (mw === null) continue;
        const label = (await fs.readFile(path.join(iioDriver, dev, iio, `rail_name_${ch}`), 'utf8').catch(() => `rail${ch}`)).trim();
        rails.push({ label, watts: mw / 1000 });
      }
    }
  }
  if (rails.length === 0) return null;
  const input = rails.find((r) => /(^|_)IN$/i.test(r.label));
  return input ? input.watts : rails.reduce((s, r) => s + r.watts, 0);
}

const MetaSchema = z.object({ nextSeq: z.number().int().nonnegative(), dropped: z.number().int().nonnegative() }).strict();

/** Bounded on-disk FIFO of telemetry messages, one file per message named by sequence number. */
export class TelemetryOutbox {
  private meta = { nextSeq: 0, dropped: 0 };

  private constructor(
    private readonly dir: string,
    private readonly maxMessages: number,
  ) {}

  /** Opens (or creates) the outbox under `dir`. */
  static async open(dir: string, maxMessages: number): Promise<TelemetryOutbox> {
    const box = new TelemetryOutbox(dir, maxMessages);
    await fs.mkdir(dir, { recursive: true });
    try {
      box.meta = MetaSchema.parse(JSON.parse(await fs.readFile(path.join(dir, 'meta.json'), 'utf8')));
    } catch {
      // Fresh outbox (or an unreadable meta file): sequence restarts above what is queued.
    }
    const files = await box.files();
    const last = files.length ? Number(files[files.length - 1]!.slice(0, -5)) : -1;
    box.meta.nextSeq = Math.max(box.meta.nextSeq, last + 1);
    return box;
  }

  get dropped(): number {
    return this.meta.dropped;
  }

  /** Allocates the next sequence number. */
  nextSeq(): number {
    return this.meta.nextSeq;
  }

  private async files(): Promise<string[]> {
    return (await listDir(this.dir)).filter((n) => /^\d{12}\.json$/.test(n)).sort();
  }

  /** Queued message count. */
  async size(): Promise<number> {
    return (await this.files()).length;
  }

  /** Stores a message; drops the oldest beyond the bound and counts them. */
  async enqueue(msg: Telemetry): Promise<void> {
    await writeJsonAtomic(path.join(this.dir, `${String(msg.seq).padStart(12, '0')}.json`), msg);
    this.meta.nextSeq = Math.max(this.meta.nextSeq, msg.seq + 1);
    const files = await this.files();
    const excess = files.length - this.maxMessages;
    for (const f of files.slice(0, Math.max(0, excess))) {
      await fs.rm(path.join(this.dir, f), { force: true });
      this.meta.dropped++;
    }
    await writeJsonAtomic(path.join(this.dir, 'meta.json'), this.meta);
  }

  /** Sends queued messages oldest first; stops at the first failure. Returns how many were sent. */
  async drain(send: (msg: Telemetry) => Promise<void>): Promise<number> {
    let sent = 0;
    for (const f of await this.files()) {
      const file = path.join(this.dir, f);
      let msg: Telemetry;
      try {
        // Forwarded as stored, unknown fields included: after a rollback of the agent itself, the queue may hold
        // messages a newer agent wrote, and what the older one does not know is not its to drop.
        msg = TelemetryForwardSchema.parse(JSON.parse(await fs.readFile(file, 'utf8')));
      } catch {
        await fs.rm(file, { force: true }); // A torn or foreign file can never be sent.
        continue;
      }
      await send(msg);
      await fs.rm(file, { force: true });
      sent++;
    }
    return sent;
  }
}

export interface TelemetryReporterOptions {
  thingName: string;
  transport: MqttTransport;
  outbox: TelemetryOutbox;
  stats: InferenceStats;
  currentModel: () => ModelRef | null;
  intervalMs: number;
  cpuWatts: number;
  sysfsRoot: string;
  log: Logger;
  /** Reported with every message (runtime.executionProviders). */
  executionProviders?: readonly string[];
}

/** Samples the device, queues telemetry and publishes the queue whenever the broker is reachable. */
export class TelemetryReporter {
  private timer: NodeJS.Timeout | undefined;
  private energyJ = 0;
  private lastSampleAt = performance.now();
  private lastCpu = process.cpuUsage();
  private draining: Promise<void> | null = null;
  private redrain = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly onConnected = () => this.flush();

  constructor(private readonly o: TelemetryReporterOptions) {}

  start(): void {
    this.o.transport.on('connected', this.onConnected);
    this.timer = setInterval(() => void this.emit('periodic'), this.o.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.o.transport.off('connected', this.onConnected);
    await this.draining;
  }

  /** Samples now, queues a message for `event`, and tries to send the queue. */
  async emit(event: TelemetryEvent, recovery?: readonly RecoveryNote[]): Promise<void> {
    // Serialised so sequence numbers and outbox writes never interleave.
    const run = this.queue.then(async () => {
      try {
        await this.o.outbox.enqueue(await this.sample(event, recovery));
      } catch (err) {
        this.o.log.warn('telemetry sample failed', { error: describeError(err) });
      }
    });
    this.queue = run;
    await run;
    this.flush();
  }

  /** Publishes queued messages if connected; concurrent calls coalesce. */
  flush(): void {
    if (this.draining) {
      this.redrain = true;
      return;
    }
    if (!this.o.transport.connected) return;
    const topic = telemetryTopic(this.o.thingName);
    this.draining = (async () => {
      do {
        this.redrain = false;
        try {
          const n = await this.o.outbox.drain((m) => this.o.transport.publish(topic, JSON.stringify(m), 1));
          if (n > 0) this.o.log.debug('telemetry sent', { messages: n });
        } catch (err) {
          this.o.log.info('telemetry kept for later', { error: describeError(err) });
          break;
        }
      } while (this.redrain && this.o.transport.connected);
    })().finally(() => {
      this.draining = null;
    });
  }

  /** Resolves once any drain in progress finished (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private async sample(event: TelemetryEvent, recovery?: readonly RecoveryNote[]): Promise<Telemetry> {
    const now = performance.now();
    const dtSec = (now - this.lastSampleAt) / 1000;
    this.lastSampleAt = now;
    const cpu = process.cpuUsage(this.lastCpu);
    this.lastCpu = process.cpuUsage();
    const powerW = await readInaPowerW(this.o.sysfsRoot);
    const estimated = powerW === null;
    this.energyJ += estimated ? ((cpu.user + cpu.system) / 1e6) * this.o.cpuWatts : powerW * dtSec;
    const s = this.o.stats;
    // The strict schema: a field the contract does not have is a bug here, and fails the agent's tests.
    return TelemetryWriteSchema.parse({
      schema: TELEMETRY_SCHEMA,
      thingName: this.o.thingName,
      timestamp: Date.now(),
      seq: this.o.outbox.nextSeq(),
      event,
      model: this.o.currentModel(),
      inference: { requests: s.requests, firstTokenMs: s.firstTokenMs(), tokensPerSecond: s.tokensPerSecond(), decodeKvLength: s.decodeKvLength() },
      system: {
        rssBytes: process.memoryUsage.rss(),
        cpuLoad1m: os.loadavg()[0] ?? 0,
        temperatureC: await readTemperatureC(this.o.sysfsRoot),
        powerW,
        energyJ: this.energyJ,
        energyEstimated: estimated,
      },
      ...(this.o.executionProviders ? { runtime: { executionProviders: [...this.o.executionProviders] } } : {}),
      dropped: this.o.outbox.dropped,
      ...(recovery ? { recovery: recovery.slice(0, 8) } : {}),
    });
  }
}
