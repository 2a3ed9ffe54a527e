// notify and notify-next for the local hub's Jobs device API: remembers what each thing was last told and
// publishes only when its pending list or its next execution changed.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-comm-notifications.html
import { executionSummary } from './execution-wire.ts';
import type { ExecutionRecord } from './job-store.ts';

/** What the notifier reads from the job engine. */
export interface PendingExecutions {
  /** Pending executions of a thing: IN_PROGRESS first, then QUEUED, each in queue order. */
  pendingFor(thingName: string): { inProgress: ExecutionRecord[]; queued: ExecutionRecord[] };
  nextPending(thingName: string): ExecutionRecord | undefined;
  /** JobExecution with its rendered job document. */
  executionData(exec: ExecutionRecord, includeJobDocument: boolean): Promise<Record<string, unknown>>;
}

export interface NotifierOptions {
  /** Publishes as the hub. */
  publish(topic: string, payload: string): Promise<void>;
  now(): number;
}

/** Tracks touched things and sends their notify / notify-next when what they would be told changed. */
export class JobNotifier {
  private readonly pending: PendingExecutions;
  private readonly opts: NotifierOptions;
  private readonly dirtyThings = new Set<string>();
  private readonly lastPendingKey = new Map<string, string>();
  private readonly lastNextKey = new Map<string, string>();

  constructor(pending: PendingExecutions, opts: NotifierOptions) {
    this.pending = pending;
    this.opts = opts;
  }

  /** Records what `things` already know (after a restart), so nothing is re-announced. */
  prime(things: Iterable<string>): void {
    for (const thing of things) {
      this.lastPendingKey.set(thing, this.pendingKey(thing));
      this.lastNextKey.set(thing, this.nextKey(thing));
    }
  }

  /** Marks a thing whose executions changed. */
  touch(thingName: string): void {
    this.dirtyThings.add(thingName);
  }

  /** True when something changed since the last `send`. */
  hasPending(): boolean {
    return this.dirtyThings.size > 0;
  }

  private pendingKey(thingName: string): string {
    const { inProgress, queued } = this.pending.pendingFor(thingName);
    return [...inProgress, ...queued].map((e) => `${e.jobId}#${e.executionNumber}`).join(',');
  }

  private nextKey(thingName: string): string {
    const next = this.pending.nextPending(thingName);
    return next ? `${next.jobId}#${next.executionNumber}` : '';
  }

  /** Sends notify (pending list changed) and notify-next (next execution changed) for every touched thing. */
  async send(): Promise<void> {
    const things = [...this.dirtyThings];
    this.dirtyThings.clear();
    const sends: Promise<void>[] = [];
    for (const thingName of things) {
      const pendingKey = this.pendingKey(thingName);
      const nextKey = this.nextKey(thingName);
      const timestamp = Math.floor(this.opts.now() / 1000);
      const base = `$aws/things/${thingName}/jobs`;
      if (pendingKey !== (this.lastPendingKey.get(thingName) ?? '')) {
        this.lastPendingKey.set(thingName, pendingKey);
        const { inProgress, queued } = this.pending.pendingFor(thingName);
        const jobs: Record<string, unknown[]> = {};
        if (inProgress.length > 0) jobs.IN_PROGRESS = inProgress.map(executionSummary);
        if (queued.length > 0) jobs.QUEUED = queued.map(executionSummary);
        sends.push(this.opts.publish(`${base}/notify`, JSON.stringify({ timestamp, jobs })));
      }
      if (nextKey !== (this.lastNextKey.get(thingName) ?? '')) {
        this.lastNextKey.set(thingName, nextKey);
        const next = this.pending.nextPending(thingName);
        sends.push(
          (async () => {
            const payload: Record<string, unknown> = { timestamp };
            if (next) payload.execution = await this.pending.executionData(next, true);
            await this.opts.publish(`${base}/notify-next`, JSON.stringify(payload));
          })(),
        );
      }
    }
    await Promise.all(sends);
  }
}
