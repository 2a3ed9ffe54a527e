// Which things hold an MQTT connection to the hub now, and when each last connected or disconnected:
// the local stand-in for AWS IoT fleet indexing's `connectivity` field (read through SearchIndex).
// https://docs.aws.amazon.com/iot/latest/developerguide/managing-fleet-index.html

/** One thing's connectivity, in the shape of AWS IoT's ThingConnectivity. */
export interface ThingConnectivity {
  connected: boolean;
  /** Epoch milliseconds of the last connect or disconnect. */
  timestamp: number;
  disconnectReason?: string;
}

/**
 * Tracks connections per thing. A client that reconnects with the same id takes the session over
 * before the old socket closes, so a disconnect only counts when it comes from the current connection.
 */
export class ConnectivityTracker {
  private readonly states = new Map<string, ThingConnectivity>();
  private readonly current = new Map<string, object>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Records that `connection` (any identity object) now holds `thing`'s client id. */
  connected(thing: string, connection: object): void {
    this.current.set(thing, connection);
    this.states.set(thing, { connected: true, timestamp: this.now() });
  }

  /** Records a disconnect; ignored when a newer connection has taken `thing`'s client id over. */
  disconnected(thing: string, connection: object, reason: string): void {
    if (this.current.get(thing) !== connection) return;
    this.current.delete(thing);
    this.states.set(thing, { connected: false, timestamp: this.now(), disconnectReason: reason });
  }

  /** The thing's connectivity, or undefined when it has not connected since the hub started. */
  get(thing: string): ThingConnectivity | undefined {
    const s = this.states.get(thing);
    return s && { ...s };
  }
}
