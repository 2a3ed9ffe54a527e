// The AWS IoT Jobs device MQTT API: requests on `$aws/things/{thing}/jobs/...`, replies on /accepted or /rejected.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-api.html#jobs-mqtt-and-http-api
import { z } from 'zod';
import { formatIssues } from '../common/validate.ts';
import { isJobId } from '../contracts/jobs-topics.ts';
import { executionSummary } from './execution-wire.ts';
import { HubApiError } from './hub-api-error.ts';
import type { JobEngine } from './job-engine.ts';
import { TERMINAL_STATUSES, type ExecutionRecord } from './job-store.ts';

/** ErrorResponse codes of the Jobs device API. */
export type JobsErrorCode =
  | 'InvalidTopic'
  | 'InvalidJson'
  | 'InvalidRequest'
  | 'InvalidStateTransition'
  | 'ResourceNotFound'
  | 'VersionMismatch'
  | 'InternalError'
  | 'RequestThrottled'
  | 'TerminalStateReached';

export interface JobsServiceOptions {
  engine: JobEngine;
  /** Makes the engine's changes durable before a reply is sent. */
  commit(): Promise<void>;
  publish(topic: string, payload: string): Promise<void>;
  /** Per-thing request budget (token bucket); exceeding it gives RequestThrottled. */
  throttle?: { ratePerSecond: number; burst: number };
  onInternalError?(err: unknown): void;
}

export interface JobsService {
  /** Handles one publish from device `thingName` (authorized by the broker). */
  handle(thingName: string, topic: string, payload: Buffer): void;
  /** Resolves when every request received so far has been answered. */
  idle(): Promise<void>;
}

// Limits from the Jobs data plane API: DetailsMap has at most 10 entries, keys match
// [a-zA-Z0-9:_-]+ (1-128), values match [^\p{C}]+ (1-1024); clientToken is 1-64 of [\x21-\x7E].
const DetailsKey = z.string().regex(/^[a-zA-Z0-9:_-]{1,128}$/, 'keys must be 1-128 characters of [a-zA-Z0-9:_-]');
const DetailsValue = z
  .string()
  .min(1, 'values must be at least 1 character')
  .max(1024, 'values must be at most 1024 characters')
  .regex(/^[^\p{C}]+$/u, 'values must not contain control characters');
export const StatusDetailsSchema = z
  .record(DetailsKey, DetailsValue)
  .refine((m) => Object.keys(m).length <= 10, { message: 'at most 10 name-value pairs are allowed' });
const ClientToken = z.string().regex(/^[\x21-\x7E]{1,64}$/, 'clientToken must be 1-64 printable ASCII characters');
const StepTimeout = z
  .number()
  .int()
  .refine((n) => n === -1 || (n >= 1 && n <= 10080), { message: 'stepTimeoutInMinutes must be -1 or 1-10080' });
// The AWS IoT device SDKs serialize the whole request object, so thingName / jobId also appear in payloads.
const Echo = { clientToken: ClientToken.optional(), thingName: z.string().optional() };

const GetPendingRequest = z.object({ ...Echo }).strict();
const StartNextRequest = z
  .object({ ...Echo, statusDetails: StatusDetailsSchema.optional(), stepTimeoutInMinutes: StepTimeout.optional() })
  .strict();
const DescribeRequest = z
  .object({
    ...Echo,
    jobId: z.string().optional(),
    executionNumber: z.number().int().nonnegative().optional(),
    includeJobDocument: z.boolean().optional(),
  })
  .strict();
const UpdateRequest = z
  .object({
    ...Echo,
    jobId: z.string().optional(),
    status: z.enum(['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'], {
      message: 'status must be one of IN_PROGRESS, SUCCEEDED, FAILED, REJECTED',
    }),
    statusDetails: StatusDetailsSchema.optional(),
    expectedVersion: z.union([z.number().int().nonnegative(), z.string().regex(/^\d+$/).transform(Number)]).optional(),
    executionNumber: z.number().int().nonnegative().optional(),
    includeJobExecutionState: z.boolean().optional(),
    includeJobDocument: z.boolean().optional(),
    stepTimeoutInMinutes: StepTimeout.optional(),
  })
  .strict();

class Rejection extends Error {
  readonly code: JobsErrorCode;
  readonly execution?: ExecutionRecord;
  constructor(code: JobsErrorCode, message: string, execution?: ExecutionRecord) {
    super(message);
    this.code = code;
    this.execution = execution;
  }
}

function executionState(exec: ExecutionRecord): Record<string, unknown> {
  return { status: exec.status, statusDetails: exec.statusDetails, versionNumber: exec.versionNumber };
}

function parseRequest<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new Rejection('InvalidRequest', formatIssues(result.error.issues));
  return result.data;
}

/** Creates the Jobs device API handler bound to an engine. */
export function createJobsService(options: JobsServiceOptions): JobsService {
  const { engine } = options;
  const throttle = options.throttle ?? { ratePerSecond: 100, burst: 200 };
  const buckets = new Map<string, { tokens: number; at: number }>();
  const inFlight = new Set<Promise<void>>();

  function takeToken(thingName: string): boolean {
    const now = Date.now();
    const b = buckets.get(thingName) ?? { tokens: throttle.burst, at: now };
    b.tokens = Math.min(throttle.burst, b.tokens + ((now - b.at) / 1000) * throttle.ratePerSecond);
    b.at = now;
    buckets.set(thingName, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  async function process(thingName: string, topic: string, payload: Buffer): Promise<void> {
    const base = `$aws/things/${thingName}/jobs/`;
    let clientToken: string | undefined;
    const reply = async (suffix: 'accepted' | 'rejected', body: Record<string, unknown>): Promise<void> => {
      const out: Record<string, unknown> = { ...body, timestamp: Math.floor(Date.now() / 1000) };
      if (clientToken !== undefined) out.clientToken = clientToken;
      await options.publish(`${topic}/${suffix}`, JSON.stringify(out));
    };
    try {
      if (!topic.startsWith(base)) throw new Rejection('InvalidTopic', `Topic ${topic} is not a jobs topic of thing ${thingName}.`);
      if (!takeToken(thingName)) throw new Rejection('RequestThrottled', `Too many requests from thing ${thingName}; retry later.`);
      const text = payload.toString('utf8');
      let body: unknown = {};
      if (text.trim().length > 0) {
        try {
          body = JSON.parse(text);
        } catch (err) {
          throw new Rejection('InvalidJson', `Request payload is not valid JSON: ${(err as Error).message}`);
        }
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new Rejection('InvalidJson', 'Request payload must be a JSON object.');
      }
      const token = (body as Record<string, unknown>).clientToken;
      if (typeof token === 'string' && token.length <= 64) clientToken = token;
      const rest = topic.slice(base.length);
      const parts = rest.split('/');
      const bodyThing = (body as Record<string, unknown>).thingName;
      if (bodyThing !== undefined && bodyThing !== thingName) {
        throw new Rejection('InvalidRequest', `thingName "${String(bodyThing)}" in the payload does not match the topic's thing ${thingName}.`);
      }

      if (rest === 'get') {
        parseRequest(GetPendingRequest, body);
        const { inProgress, queued } = engine.pendingFor(thingName);
        await reply('accepted', { inProgressJobs: inProgress.map(executionSummary), queuedJobs: queued.map(executionSummary) });
        return;
      }
      if (rest === 'start-next') {
        const req = parseRequest(StartNextRequest, body);
        const changes = engine.nextPending(thingName)?.status === 'QUEUED';
        const exec = engine.startNext(thingName, req.statusDetails, req.stepTimeoutInMinutes);
        if (changes) await options.commit();
        await reply('accepted', exec ? { execution: await engine.executionData(exec, true) } : {});
        return;
      }
      if (parts.length === 2 && (parts[1] === 'get' || parts[1] === 'update')) {
        const jobId = parts[0]!;
        const bodyJob = (body as Record<string, unknown>).jobId;
        if (bodyJob !== undefined && bodyJob !== jobId) {
          throw new Rejection('InvalidRequest', `jobId "${String(bodyJob)}" in the payload does not match the topic's job ${jobId}.`);
        }
        if (parts[1] === 'get') {
          const req = parseRequest(DescribeRequest, body);
          if (jobId === '$next') {
            const next = engine.nextPending(thingName);
            await reply('accepted', next ? { execution: await engine.executionData(next, req.includeJobDocument ?? true) } : {});
            return;
          }
          if (!isJobId(jobId)) throw new Rejection('InvalidRequest', `jobId "${jobId}" must be 1-64 characters of [a-zA-Z0-9_-] or $next.`);
          const exec = engine.getExecution(jobId, thingName, req.executionNumber);
          if (TERMINAL_STATUSES.has(exec.status) && engine.isJobFinished(jobId)) {
            // "Occurs when a command to describe a job is performed on a job that is in a terminal state."
            throw new Rejection('TerminalStateReached', `Job ${jobId} is ${engine.getJob(jobId).status}; its execution ended ${exec.status}.`, exec);
          }
          await reply('accepted', { execution: await engine.executionData(exec, req.includeJobDocument ?? true) });
          return;
        }
        if (!isJobId(jobId)) throw new Rejection('InvalidRequest', `jobId "${jobId}" must be 1-64 characters of [a-zA-Z0-9_-].`);
        const req = parseRequest(UpdateRequest, body);
        const exec = engine.updateExecution(thingName, jobId, {
          status: req.status,
          statusDetails: req.statusDetails,
          expectedVersion: req.expectedVersion,
          executionNumber: req.executionNumber,
          stepTimeoutInMinutes: req.stepTimeoutInMinutes,
        });
        await options.commit();
        const accepted: Record<string, unknown> = {};
        if (req.includeJobExecutionState) accepted.executionState = executionState(exec);
        if (req.includeJobDocument) {
          accepted.jobDocument = (await engine.executionData(exec, true)).jobDocument;
        }
        await reply('accepted', accepted);
        return;
      }
      throw new Rejection('InvalidTopic', `Topic ${topic} is not a Jobs API request topic.`);
    } catch (err) {
      let rejection: Rejection;
      if (err instanceof Rejection) rejection = err;
      else if (err instanceof HubApiError) {
        const code: JobsErrorCode =
          err.kind === 'ResourceNotFound' || err.kind === 'VersionMismatch' || err.kind === 'InvalidStateTransition'
            ? err.kind
            : 'InvalidRequest';
        rejection = new Rejection(code, err.message, err.execution);
      } else {
        options.onInternalError?.(err);
        rejection = new Rejection('InternalError', 'The hub failed to process the request.');
      }
      const body: Record<string, unknown> = { code: rejection.code, message: rejection.message };
      if (rejection.execution) body.executionState = executionState(rejection.execution);
      try {
        // A device may not subscribe to `.../{anything}/rejected` outside its own jobs prefix,
        // so an InvalidTopic reply stays on the thing's topics like every other reply.
        await reply('rejected', body);
      } catch (publishErr) {
        options.onInternalError?.(publishErr);
      }
    } finally {
      if (engine.hasPendingNotifications()) {
        await options.commit();
        await engine.sendNotifications();
      }
    }
  }

  return {
    handle(thingName, topic, payload) {
      const p = process(thingName, topic, payload).catch((err) => options.onInternalError?.(err));
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    },
    async idle() {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}
