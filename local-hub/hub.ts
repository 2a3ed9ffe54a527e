// The local fleet hub: MQTT broker, IoT Jobs device API, IoT control plane, S3 store and telemetry sink
// on loopback, started by one call; devices and the CLI run the same code as against AWS.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { ValidationError, describeError } from '../common/errors.ts';
import { TELEMETRY_TOPIC_FILTER } from '../contracts/jobs-topics.ts';
import { connectExternalBroker, startBroker, type Broker } from './broker.ts';
import { issueDeviceSecret, verifyDeviceSecret } from './device-credentials.ts';
import { ConnectivityTracker } from './connectivity.ts';
import { startControlPlane, type ControlPlane } from './control-plane.ts';
import { JobEngine } from './job-engine.ts';
import { JobStore, type JobRecord } from './job-store.ts';
import { createJobsService } from './jobs-service.ts';
import { loadOrCreateOperatorCredentials } from './operator-credentials.ts';
import { startS3Store, type S3Store } from './s3-store.ts';
import { REJECTED_FILE, openTelemetrySink, type TelemetrySink } from './telemetry-sink.ts';

export interface HubEndpoints {
  region: string;
  mqtt: { host: string; port: number; url: string };
  /** http URL of the IoT control plane, for the @aws-sdk/client-iot `endpoint` override. */
  iotEndpoint: string;
  s3: { endpoint: string; bucket: string; forcePathStyle: true };
  /**
   * This installation's operator credential (DIR/operator-credentials.json, 0600): accepted by the control
   * plane and S3; as MQTT username/password it makes an operator connection.
   */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Directory of telemetry JSON-lines files (read with queryTelemetry). */
  telemetryDir: string;
}

export interface HubOptions {
  /** State, S3 objects, telemetry and endpoints.json live here. */
  dir: string;
  mqttPort?: number;
  httpPort?: number;
  s3Port?: number;
  region?: string;
  bucket?: string;
  /**
   * Test/demo knob: how many real milliseconds a "minute" lasts for job timeouts and rollout rates
   * (default 60000). Protocol behaviour is unchanged; only the time scale shrinks.
   */
  clock?: { minuteMs?: number };
  /**
   * Use this broker (e.g. mosquitto for MQTT 5 / TLS) instead of the embedded one; its ACL must then
   * enforce client id = thing name. `mqttPort` and `allowUnregisteredThings` do not apply.
   */
  externalBroker?: { url: string; username?: string; password?: string; ca?: string };
  /** Accept MQTT client ids that are not registered things (default false, as AWS IoT policies would). */
  allowUnregisteredThings?: boolean;
  /** Diagnostics (internal errors, startup lines). */
  log?: (line: string) => void;
}

export interface LocalHub {
  endpoints: HubEndpoints;
  /** Path of the endpoints.json this hub wrote. */
  endpointsFile: string;
  /** Issues (or rotates) `thingName`'s MQTT device secret and returns it (local-hub/device-credentials.ts). */
  issueDeviceSecret(thingName: string): Promise<string>;
  stop(): Promise<void>;
}

export const DEFAULT_REGION = 'us-east-1';
export const DEFAULT_BUCKET = 'fleetlm-artifacts';
export const LOCAL_ACCOUNT_ID = '123456789012';

// The documented `-v2` form, and the older form jobs created before it still carry.
const PLACEHOLDER = /\$\{aws:iot:s3-presigned-url(?:-v2)?:([^}]+)\}/g;

/** Writes `endpoints` as `{dir}/endpoints.json` (atomically, 0600: it holds the operator secret); returns the path. */
export async function writeEndpointsFile(dir: string, endpoints: HubEndpoints): Promise<string> {
  const file = path.join(dir, 'endpoints.json');
  await writeJsonAtomic(file, endpoints, { mode: 0o600 });
  return file;
}

/** Replaces `${aws:iot:s3-presigned-url-v2:URL}` (and v1) placeholders with presigned GETs, as IoT Jobs does. */
async function substitutePresigned(job: JobRecord, s3: S3Store): Promise<string> {
  const config = job.presignedUrlConfig;
  if (!config) return job.document;
  const urls = new Map<string, string>();
  for (const m of job.document.matchAll(PLACEHOLDER)) {
    const target = s3.parseS3Url(m[1]!);
    if (target && !urls.has(m[0])) urls.set(m[0], await s3.presignGet(target.bucket, target.key, config.expiresInSec));
  }
  // URLs hold no quotes or backslashes, so they drop into JSON strings as they are.
  return job.document.replace(PLACEHOLDER, (whole) => urls.get(whole) ?? whole);
}

/** Starts every hub service on 127.0.0.1 and writes `{dir}/endpoints.json`. */
export async function startHub(options: HubOptions): Promise<LocalHub> {
  const dir = path.resolve(options.dir);
  const minuteMs = options.clock?.minuteMs ?? 60_000;
  if (!Number.isFinite(minuteMs) || minuteMs < 10) {
    throw new ValidationError(`clock.minuteMs must be a number >= 10, got ${minuteMs}`);
  }
  const region = options.region ?? DEFAULT_REGION;
  const bucket = options.bucket ?? DEFAULT_BUCKET;
  const log = options.log ?? (() => {});
  const onInternalError = (err: unknown) => log(`hub internal error: ${describeError(err)}`);
  await mkdir(dir, { recursive: true });

  const stoppers: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stoppers.reverse()) {
      try {
        await stop();
      } catch (err) {
        onInternalError(err);
      }
    }
  };

  try {
    const credentials = await loadOrCreateOperatorCredentials(dir, log);
    const store = await JobStore.open(dir);
    const s3 = await startS3Store({ directory: path.join(dir, 's3'), bucket, port: options.s3Port, region, credentials, onInternalError });
    stoppers.push(() => s3.close());
    const telemetryDir = path.join(dir, 'telemetry');
    const sink: TelemetrySink = await openTelemetrySink(telemetryDir, path.join(dir, REJECTED_FILE), onInternalError);
    stoppers.push(() => sink.close());
    stoppers.push(() => store.drain());

    let broker: Broker | null = null;
    const publish = async (topic: string, payload: string) => {
      if (broker) await broker.publish(topic, payload);
    };
    const engine = new JobEngine(store, {
      region,
      accountId: LOCAL_ACCOUNT_ID,
      minuteMs,
      publish,
      renderDocument: async (job) => JSON.parse(await substitutePresigned(job, s3)) as unknown,
    });
    const connectivity = new ConnectivityTracker();
    const jobs = createJobsService({ engine, commit: () => store.commit(), publish, onInternalError });
    const telemetryPattern = new RegExp(`^${TELEMETRY_TOPIC_FILTER.replace('+', '([^/]+)')}$`);
    const onDevicePublish = (thingName: string, topic: string, payload: Buffer) => {
      if (topic.startsWith('$aws/things/')) jobs.handle(thingName, topic, payload);
      else if (telemetryPattern.test(topic)) sink.accept(thingName, payload);
    };
    broker = options.externalBroker
      ? await connectExternalBroker({ ...options.externalBroker, onDevicePublish })
      : await startBroker({
          port: options.mqttPort,
          isKnownThing: (name) => options.allowUnregisteredThings === true || engine.hasThing(name),
          // Per-device secrets from `fleetlm device register --local`; the unregistered-things knob is for benches only.
          verifyDevice: options.allowUnregisteredThings === true ? undefined : (name, password) => verifyDeviceSecret(dir, name, password),
          operatorCredentials: { username: credentials.accessKeyId, password: credentials.secretAccessKey },
          // Telemetry is on disk (fsync) before the device gets its PUBACK.
          async beforeAck(thingName, topic, payload) {
            if (!telemetryPattern.test(topic)) return;
            sink.accept(thingName, payload);
            await sink.flush();
          },
          onDevicePublish(thingName, topic, payload) {
            if (topic.startsWith('$aws/things/')) jobs.handle(thingName, topic, payload);
          },
          onDeviceConnect: (thingName, connection) => connectivity.connected(thingName, connection),
          onDeviceDisconnect: (thingName, connection, reason) => connectivity.disconnected(thingName, connection, reason),
        });
    const brokerRef = broker;
    stoppers.push(async () => {
      await jobs.idle();
      await brokerRef.close();
    });

    const afterChange = async () => {
      if (engine.hasPendingNotifications()) {
        await store.commit();
        await engine.sendNotifications();
      }
    };
    const control: ControlPlane = await startControlPlane({
      engine,
      // An external broker's connections are invisible to the hub: connectivity is then not indexed.
      connectivity: options.externalBroker ? undefined : connectivity,
      port: options.httpPort,
      credentials,
      commit: () => store.commit(),
      afterChange,
      onInternalError,
    });
    stoppers.push(() => control.close());

    // Timers and rollout windows: resolution of 1/50 of a "minute" (1.2 s at real time).
    const tickMs = Math.max(5, Math.min(1000, Math.floor(minuteMs / 50)));
    let ticking = false;
    const timer = setInterval(() => {
      if (ticking) return;
      ticking = true;
      try {
        engine.tick();
      } catch (err) {
        onInternalError(err);
      }
      afterChange()
        .catch(onInternalError)
        .finally(() => {
          ticking = false;
        });
    }, tickMs);
    stoppers.push(async () => {
      clearInterval(timer);
      while (ticking) await new Promise((r) => setTimeout(r, 5));
    });
    // Stop runs in reverse: timers, control plane, broker (after in-flight requests), store, sink, S3.

    const endpoints: HubEndpoints = {
      region,
      mqtt: { host: brokerRef.host, port: brokerRef.port, url: brokerRef.url },
      iotEndpoint: control.url,
      s3: { endpoint: s3.endpoint, bucket, forcePathStyle: true },
      credentials: { ...credentials },
      telemetryDir,
    };
    const endpointsFile = await writeEndpointsFile(dir, endpoints);
    log(`local hub up: mqtt ${brokerRef.url}, iot ${control.url}, s3 ${s3.endpoint}/${bucket}`);
    let stopped: Promise<void> | null = null;
    return {
      endpoints,
      endpointsFile,
      issueDeviceSecret: (thingName) => issueDeviceSecret(dir, thingName),
      stop: () => (stopped ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
