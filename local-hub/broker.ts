// Embedded MQTT 3.1.1 broker (aedes) on loopback, authorizing like an AWS IoT policy would: a device proves
// its identity (username = client id = thing name, password = its own secret), and uses only its own `$aws/things/{thing}/jobs/...` and `fleetlm/{thing}/...` topics.
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Aedes, type AedesPublishPacket, type Client } from 'aedes';
import { TransportError } from '../common/errors.ts';
import { isThingName } from '../contracts/jobs-topics.ts';

export interface BrokerOptions {
  port?: number;
  /** True when `thingName` is registered; unregistered client ids are refused at CONNECT. */
  isKnownThing(thingName: string): boolean;
  /**
   * True when `password` is `thingName`'s own secret (local-hub/device-credentials.ts); absent = client id
   * alone identifies a device (only with allowUnregisteredThings, a test knob).
   */
  verifyDevice?(thingName: string, password: string): Promise<boolean>;
  /** username/password that make a connection privileged (operator tools; any topic). */
  operatorCredentials: { username: string; password: string };
  /** Called for every publish from a device client (not from the hub itself). */
  onDevicePublish(thingName: string, topic: string, payload: Buffer): void;
  /**
   * Runs before the broker acknowledges an authorized device publish (aedes sends PUBACK before
   * delivering, so durability that must precede the PUBACK happens here).
   */
  beforeAck?(thingName: string, topic: string, payload: Buffer): Promise<void> | void;
  /** Device (not operator) connections and disconnections, for connectivity; `connection` identifies the socket. */
  onDeviceConnect?(thingName: string, connection: object): void;
  onDeviceDisconnect?(thingName: string, connection: object, reason: string): void;
}

export interface Broker {
  host: string;
  port: number;
  url: string;
  /** Publishes as the hub itself (no authorization), QoS 1. */
  publish(topic: string, payload: string | Buffer): Promise<void>;
  connectedClients(): number;
  close(): Promise<void>;
}

const privileged = new WeakSet<Client>();

/** Topics a response is published on; devices may subscribe to them but never publish to them. */
function isReservedResponseTopic(rest: string): boolean {
  return rest === 'notify' || rest === 'notify-next' || rest.endsWith('/accepted') || rest.endsWith('/rejected');
}

/** True when `topic` (no wildcards) is one `thing` may publish to. */
export function mayPublish(thing: string, topic: string): boolean {
  const jobsPrefix = `$aws/things/${thing}/jobs/`;
  if (topic.startsWith(jobsPrefix)) {
    const rest = topic.slice(jobsPrefix.length);
    return rest.length > 0 && !isReservedResponseTopic(rest);
  }
  const own = `fleetlm/${thing}/`;
  return topic.startsWith(own) && topic.length > own.length;
}

/** True when the topic filter `filter` only matches `thing`'s own topics. */
export function maySubscribe(thing: string, filter: string): boolean {
  const levels = filter.split('/');
  const fixed = (prefix: string[]): boolean =>
    levels.length > prefix.length && prefix.every((level, i) => levels[i] === level);
  return fixed(['$aws', 'things', thing, 'jobs']) || fixed(['fleetlm', thing]);
}

function authError(message: string, returnCode: number): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode });
}

/** Starts aedes on 127.0.0.1 (a free port unless `port` is given). */
export async function startBroker(options: BrokerOptions): Promise<Broker> {
  const aedes = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const op = options.operatorCredentials;
      if (password !== undefined && username === op.username && password.toString() === op.password) {
        privileged.add(client);
        done(null, true);
        return;
      }
      if (!isThingName(client.id) || !options.isKnownThing(client.id)) {
        // CONNACK 5 (not authorized): AWS IoT refuses a client id that is not an attached thing.
        done(authError(`client id "${client.id}" is not a registered thing name`, 5) as never, false);
        return;
      }
      const verify = options.verifyDevice;
      if (!verify) {
        done(null, true);
        return;
      }
      // The client id alone proves nothing (anyone on the machine can claim "pi-1", and a second CONNECT
      // with the same id takes the session over): a device logs in as itself with its own secret.
      // The AWS device SDKs append "?SDK=...&Platform=..." metrics to the username; the name is what precedes it.
      if (username?.split('?')[0] !== client.id || password === undefined) {
        done(authError(`device "${client.id}" must log in with username = its thing name and its device secret`, 4) as never, false);
        return;
      }
      verify(client.id, password.toString()).then(
        (ok) => (ok ? done(null, true) : done(authError(`bad device secret for "${client.id}"`, 4) as never, false)),
        () => done(authError(`cannot check the device secret of "${client.id}"`, 5) as never, false),
      );
    },
    authorizePublish(client, packet, done) {
      if (client === null || privileged.has(client)) return done(null);
      if (mayPublish(client.id, packet.topic)) {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        Promise.resolve(options.beforeAck?.(client.id, packet.topic, payload)).then(
          () => done(null),
          (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
        );
        return;
      }
      // MQTT 3.1.1 has no negative PUBACK; like AWS IoT, the broker drops the connection.
      done(new Error(`client "${client.id}" may not publish to "${packet.topic}"`));
    },
    authorizeSubscribe(client, sub, done) {
      if (privileged.has(client) || maySubscribe(client.id, sub.topic)) return done(null, sub);
      done(null, null); // SUBACK 0x80 for this filter
    },
  });
  // AWS IoT lifecycle events name these reasons (CLIENT_INITIATED_DISCONNECT, CONNECTION_LOST, ...).
  const lostReason = new WeakMap<Client, string>();
  aedes.on('client', (client: Client) => {
    if (!privileged.has(client)) options.onDeviceConnect?.(client.id, client);
  });
  aedes.on('clientError', (client: Client) => lostReason.set(client, 'CONNECTION_LOST'));
  aedes.on('keepaliveTimeout', (client: Client) => lostReason.set(client, 'MQTT_KEEP_ALIVE_TIMEOUT'));
  aedes.on('clientDisconnect', (client: Client) => {
    if (privileged.has(client)) return;
    // aedes emits clientDisconnect for a DISCONNECT packet and for a closed socket alike; only its private
    // `_disconnected` flag (set on a DISCONNECT packet, aedes lib/client.js) tells them apart.
    const clean = (client as unknown as { _disconnected?: boolean })._disconnected === true;
    options.onDeviceDisconnect?.(client.id, client, lostReason.get(client) ?? (clean ? 'CLIENT_INITIATED_DISCONNECT' : 'CONNECTION_LOST'));
  });
  aedes.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
    if (client === null || privileged.has(client)) return;
    options.onDevicePublish(client.id, packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
  });
  const server: Server = createServer(aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new TransportError(`MQTT broker could not listen on 127.0.0.1:${options.port ?? 0}`, { cause: err })),
    );
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    url: `mqtt://127.0.0.1:${port}`,
    publish: (topic, payload) =>
      new Promise<void>((resolve, reject) =>
        aedes.publish(
          { cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 1, retain: false, dup: false },
          (err?: Error) => (err ? reject(err) : resolve()),
        ),
      ),
    connectedClients: () => aedes.connectedClients,
    close: async () => {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ExternalBrokerOptions {
  /** mqtt://host:port or mqtts://host:port of a broker the hub joins as a client (e.g. mosquitto). */
  url: string;
  username?: string;
  password?: string;
  /** PEM CA bundle for mqtts. */
  ca?: string;
  /** Called for every device publish on a jobs request topic or a telemetry topic. */
  onDevicePublish(thingName: string, topic: string, payload: Buffer): void;
}

// Topics the hub itself publishes; its own messages come back through its subscription.
function isHubReply(topic: string): boolean {
  const m = /^\$aws\/things\/[^/]+\/jobs\/(.+)$/.exec(topic);
  return m !== null && isReservedResponseTopic(m[1]!);
}

/**
 * Joins an external broker instead of embedding aedes (MQTT 5 clients, TLS). That broker's ACL must
 * enforce client id = thing name, e.g. mosquitto `pattern readwrite $aws/things/%c/jobs/#`.
 */
export async function connectExternalBroker(options: ExternalBrokerOptions): Promise<Broker> {
  const mqtt = (await import('mqtt')).default;
  const url = new URL(options.url);
  const client = await mqtt
    .connectAsync(options.url, {
      clientId: `fleetlm-hub-${process.pid}-${Date.now().toString(36)}`,
      username: options.username,
      password: options.password,
      ca: options.ca,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 1000,
    })
    .catch((err: unknown) => {
      throw new TransportError(`could not connect to external broker ${options.url}`, { cause: err });
    });
  client.on('message', (topic, payload) => {
    const thing = /^(?:\$aws\/things|fleetlm)\/([^/]+)\//.exec(topic)?.[1];
    if (thing === undefined || isHubReply(topic)) return;
    options.onDevicePublish(thing, topic, payload);
  });
  await client.subscribeAsync(['$aws/things/+/jobs/#', 'fleetlm/+/telemetry'], { qos: 1 });
  const port = Number(url.port || (url.protocol === 'mqtts:' ? 8883 : 1883));
  return {
    host: url.hostname,
    port,
    url: options.url,
    publish: async (topic, payload) => {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    connectedClients: () => Number.NaN,
    close: () => client.endAsync(),
  };
}
