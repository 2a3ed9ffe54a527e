// The AWS IoT control plane as REST-JSON, with the paths, methods and fields @aws-sdk/client-iot's
// operation schemas use, so the CLI runs unchanged with an endpoint override.
// https://docs.aws.amazon.com/iot/latest/apireference/API_Operations_AWS_IoT.html
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { TransportError } from '../common/errors.ts';
import { formatIssues } from '../common/validate.ts';
import { isJobId, isThingName } from '../contracts/jobs-topics.ts';
import type { ConnectivityTracker } from './connectivity.ts';
import { InvalidQueryError, searchThings } from './fleet-index.ts';
import { HubApiError } from './hub-api-error.ts';
import type { JobEngine } from './job-engine.ts';
import { TERMINAL_STATUSES, type ExecutionRecord, type JobRecord } from './job-store.ts';
import { jobDocumentProblem } from './job-document-limits.ts';
import { sha256Hex, verifySigV4 } from './sigv4.ts';

export interface ControlPlaneOptions {
  engine: JobEngine;
  /** MQTT connections per thing, indexed as fleet indexing's `connectivity`; omit when the hub cannot see them. */
  connectivity?: ConnectivityTracker;
  commit(): Promise<void>;
  /** Sends notify / notify-next after a change is durable. */
  afterChange(): Promise<void>;
  port?: number;
  /** The only credentials whose SigV4 signatures are accepted. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  onInternalError?(err: unknown): void;
}

export interface ControlPlane {
  url: string;
  port: number;
  close(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  constructor(status: number, type: string, message: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const ERROR_MAP: Record<HubApiError['kind'], [number, string]> = {
  ResourceNotFound: [404, 'ResourceNotFoundException'],
  ResourceAlreadyExists: [409, 'ResourceAlreadyExistsException'],
  InvalidRequest: [400, 'InvalidRequestException'],
  InvalidStateTransition: [409, 'InvalidStateTransitionException'],
  VersionMismatch: [409, 'VersionConflictException'],
  LimitExceeded: [410, 'LimitExceededException'],
  Conflict: [409, 'ConflictException'],
};

function invalid(message: string): HttpError {
  return new HttpError(400, 'InvalidRequestException', message);
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw invalid(`Invalid ${what}: ${formatIssues(result.error.issues)}`);
  return result.data;
}

/** Epoch seconds, as REST-JSON timestamps are sent. */
function ts(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : ms / 1000;
}

const Attributes = z.record(z.string().regex(/^[a-zA-Z0-9_.,@/:#-]{1,128}$/), z.string().max(800)).optional();
const AttributePayload = z.object({ attributes: Attributes, merge: z.boolean().optional() }).strict().optional();
const Tags = z.array(z.object({ Key: z.string(), Value: z.string().optional() }).strict()).optional();

const CreateThingBody = z
  .object({ thingTypeName: z.string().optional(), attributePayload: AttributePayload, billingGroupName: z.string().optional() })
  .strict();
const CreateThingGroupBody = z
  .object({
    parentGroupName: z.string().optional(),
    thingGroupProperties: z
      .object({ thingGroupDescription: z.string().max(2028).optional(), attributePayload: AttributePayload })
      .strict()
      .optional(),
    tags: Tags,
  })
  .strict();
const GroupMembershipBody = z
  .object({
    thingGroupName: z.string().optional(),
    thingGroupArn: z.string().optional(),
    thingName: z.string().optional(),
    thingArn: z.string().optional(),
    overrideDynamicGroups: z.boolean().optional(),
  })
  .strict();

const Int = z.number().int();
const CreateJobBody = z
  .object({
    targets: z.array(z.string()).min(1),
    documentSource: z.string().optional(),
    document: z.string().max(32768).optional(),
    description: z.string().max(2028).optional(),
    presignedUrlConfig: z
      .object({ roleArn: z.string().min(20).max(2048).optional(), expiresInSec: Int.min(60).max(3600).optional() })
      .strict()
      .optional(),
    targetSelection: z.enum(['SNAPSHOT', 'CONTINUOUS']).optional(),
    jobExecutionsRolloutConfig: z
      .object({
        maximumPerMinute: Int.min(1).max(1000).optional(),
        exponentialRate: z
          .object({
            baseRatePerMinute: Int.min(1).max(1000),
            incrementFactor: z.number().min(1.1).max(5),
            rateIncreaseCriteria: z
              .object({ numberOfNotifiedThings: Int.min(1).optional(), numberOfSucceededThings: Int.min(1).optional() })
              .strict()
              .refine((c) => (c.numberOfNotifiedThings === undefined) !== (c.numberOfSucceededThings === undefined), {
                message: 'exactly one of numberOfNotifiedThings and numberOfSucceededThings is required',
              }),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    abortConfig: z
      .object({
        criteriaList: z
          .array(
            z
              .object({
                failureType: z.enum(['FAILED', 'REJECTED', 'TIMED_OUT', 'ALL']),
                action: z.literal('CANCEL'),
                thresholdPercentage: z.number().min(0).max(100),
                minNumberOfExecutedThings: Int.min(1),
              })
              .strict(),
          )
          .min(1),
      })
      .strict()
      .optional(),
    timeoutConfig: z.object({ inProgressTimeoutInMinutes: Int.min(1).max(10080).optional() }).strict().optional(),
    tags: Tags,
    namespaceId: z.string().optional(),
    jobTemplateArn: z.string().optional(),
    jobExecutionsRetryConfig: z
      .object({
        criteriaList: z
          .array(z.object({ failureType: z.enum(['FAILED', 'TIMED_OUT', 'ALL']), numberOfRetries: Int.min(0).max(10) }).strict())
          .min(1)
          .max(2),
      })
      .strict()
      .optional(),
    documentParameters: z.record(z.string(), z.string()).optional(),
    schedulingConfig: z.unknown().optional(),
    destinationPackageVersions: z.array(z.string()).optional(),
  })
  .strict();
const SearchIndexBody = z
  .object({
    indexName: z.string().optional(),
    queryString: z.string().min(1).max(1000),
    nextToken: z.string().optional(),
    maxResults: Int.min(1).max(500).optional(),
    queryVersion: z.string().optional(),
  })
  .strict();
const CancelJobBody = z.object({ reasonCode: z.string().max(128).optional(), comment: z.string().max(2028).optional() }).strict();

type Query = URLSearchParams;
interface Route {
  method: string;
  pattern: RegExp;
  handler: (params: string[], query: Query, body: unknown) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** True when the operation changes state (commit + notifications before replying). */
  mutates: boolean;
}

function page<T>(items: T[], query: Query, defaultMax = 100): { items: T[]; nextToken?: string } {
  const maxRaw = query.get('maxResults');
  const max = maxRaw === null ? defaultMax : Number(maxRaw);
  if (!Number.isInteger(max) || max < 1 || max > 250) throw invalid(`maxResults must be an integer 1-250, got ${maxRaw}`);
  const token = query.get('nextToken');
  let start = 0;
  if (token !== null) {
    start = Number(Buffer.from(token, 'base64url').toString('utf8'));
    if (!Number.isInteger(start) || start < 0) throw invalid(`nextToken ${token} is not one this server issued`);
  }
  const slice = items.slice(start, start + max);
  const next = start + max < items.length ? Buffer.from(String(start + max)).toString('base64url') : undefined;
  return next === undefined ? { items: slice } : { items: slice, nextToken: next };
}

function boolQuery(query: Query, name: string): boolean {
  const v = query.get(name);
  if (v === null || v === 'false') return false;
  if (v === 'true') return true;
  throw invalid(`${name} must be true or false, got ${v}`);
}

/** Starts the control-plane HTTP server on 127.0.0.1. */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const { engine } = options;

  const thingName = (raw: string): string => {
    if (!isThingName(raw)) throw invalid(`thingName "${raw}" must be 1-128 characters of [a-zA-Z0-9:_-]`);
    return raw;
  };
  const jobId = (raw: string): string => {
    if (!isJobId(raw)) throw invalid(`jobId "${raw}" must be 1-64 characters of [a-zA-Z0-9_-]`);
    return raw;
  };
  const groupName = (raw: string): string => {
    if (!/^[a-zA-Z0-9:_-]{1,128}$/.test(raw)) throw invalid(`thingGroupName "${raw}" must be 1-128 characters of [a-zA-Z0-9:_-]`);
    return raw;
  };

  const jobSummary = (job: JobRecord) => ({
    jobArn: job.jobArn,
    jobId: job.jobId,
    targetSelection: job.targetSelection,
    status: job.status,
    createdAt: ts(job.createdAt),
    lastUpdatedAt: ts(job.lastUpdatedAt),
    completedAt: ts(job.completedAt),
    isConcurrent: false,
  });
  const execSummary = (e: ExecutionRecord) => ({
    status: e.status,
    queuedAt: ts(e.queuedAt),
    startedAt: ts(e.startedAt),
    lastUpdatedAt: ts(e.lastUpdatedAt),
    executionNumber: e.executionNumber,
    retryAttempt: e.retryAttempt,
  });
  const groupMembership = (body: unknown): { group: string; thing: string } => {
    const b = parse(GroupMembershipBody, body, 'request body');
    let group = b.thingGroupName;
    if (group === undefined && b.thingGroupArn !== undefined) {
      const parsed = engine.parseTargetArn(b.thingGroupArn);
      if (!parsed || parsed.kind !== 'thinggroup') throw invalid(`thingGroupArn ${b.thingGroupArn} is not a thing group ARN`);
      group = parsed.name;
    }
    let thing = b.thingName;
    if (thing === undefined && b.thingArn !== undefined) {
      const parsed = engine.parseTargetArn(b.thingArn);
      if (!parsed || parsed.kind !== 'thing') throw invalid(`thingArn ${b.thingArn} is not a thing ARN`);
      thing = parsed.name;
    }
    if (group === undefined || thing === undefined) throw invalid('thingGroupName (or thingGroupArn) and thingName (or thingArn) are required');
    return { group, thing };
  };

  const routes: Route[] = [
    {
      method: 'POST',
      pattern: /^\/things\/([^/]+)$/,
      mutates: true,
      handler: ([name], _q, body) => {
        const b = parse(CreateThingBody, body ?? {}, 'CreateThing body');
        if (b.thingTypeName !== undefined) throw invalid('thingTypeName is not supported by the local hub');
        const thing = engine.createThing(thingName(name!), b.attributePayload?.attributes ?? {});
        return { thingName: thing.thingName, thingArn: thing.thingArn, thingId: thing.thingId };
      },
    },
    {
      method: 'GET',
      pattern: /^\/things\/([^/]+)$/,
      mutates: false,
      handler: ([name]) => {
        const t = engine.getThing(thingName(name!));
        return { defaultClientId: t.thingName, thingName: t.thingName, thingId: t.thingId, thingArn: t.thingArn, attributes: t.attributes, version: t.version };
      },
    },
    {
      method: 'GET',
      pattern: /^\/things$/,
      mutates: false,
      handler: (_p, query) => {
        let things = engine.listThings();
        const attr = query.get('attributeName');
        const value = query.get('attributeValue');
        if (attr !== null) things = things.filter((t) => t.attributes[attr] !== undefined && (value === null || t.attributes[attr] === value));
        const { items, nextToken } = page(things, query);
        return {
          things: items.map((t) => ({ thingName: t.thingName, thingArn: t.thingArn, attributes: t.attributes, version: t.version })),
          nextToken,
        };
      },
    },
    {
      method: 'POST',
      pattern: /^\/thing-groups\/([^/]+)$/,
      mutates: true,
      handler: ([name], _q, body) => {
        const b = parse(CreateThingGroupBody, body ?? {}, 'CreateThingGroup body');
        if (b.parentGroupName !== undefined) throw invalid('parentGroupName (nested thing groups) is not supported by the local hub');
        const props = b.thingGroupProperties;
        const g = engine.createThingGroup(groupName(name!), props?.thingGroupDescription, props?.attributePayload?.attributes ?? {});
        return { thingGroupName: g.thingGroupName, thingGroupArn: g.thingGroupArn, thingGroupId: g.thingGroupId };
      },
    },
    {
      method: 'GET',
      pattern: /^\/thing-groups\/([^/]+)$/,
      mutates: false,
      handler: ([name]) => {
        const g = engine.getGroup(groupName(name!));
        return {
          thingGroupName: g.thingGroupName,
          thingGroupId: g.thingGroupId,
          thingGroupArn: g.thingGroupArn,
          version: g.version,
          thingGroupProperties: { thingGroupDescription: g.description, attributePayload: { attributes: g.attributes } },
          thingGroupMetadata: { rootToParentThingGroups: [], creationDate: ts(g.createdAt) },
        };
      },
    },
    {
      method: 'PUT',
      pattern: /^\/thing-groups\/addThingToThingGroup$/,
      mutates: true,
      handler: (_p, _q, body) => {
        const { group, thing } = groupMembership(body);
        engine.addThingToGroup(group, thing);
        return {};
      },
    },
    {
      method: 'PUT',
      pattern: /^\/thing-groups\/removeThingFromThingGroup$/,
      mutates: true,
      handler: (_p, _q, body) => {
        const { group, thing } = groupMembership(body);
        engine.removeThingFromGroup(group, thing);
        return {};
      },
    },
    {
      method: 'GET',
      pattern: /^\/thing-groups\/([^/]+)\/things$/,
      mutates: false,
      handler: ([name], query) => {
        const { items, nextToken } = page(engine.getGroup(groupName(name!)).things, query);
        return { things: items, nextToken };
      },
    },
    {
      method: 'GET',
      pattern: /^\/thing-groups$/,
      mutates: false,
      handler: (_p, query) => {
        const prefix = query.get('namePrefixFilter') ?? '';
        const groups = engine.listGroups().filter((g) => g.thingGroupName.startsWith(prefix));
        const { items, nextToken } = page(groups, query);
        return { thingGroups: items.map((g) => ({ groupName: g.thingGroupName, groupArn: g.thingGroupArn })), nextToken };
      },
    },
    {
      method: 'PUT',
      pattern: /^\/jobs\/([^/]+)$/,
      mutates: true,
      handler: ([id], _q, body) => {
        const b = parse(CreateJobBody, body ?? {}, 'CreateJob body');
        if (b.documentSource !== undefined) throw invalid('documentSource is not supported by the local hub; pass document');
        if (b.jobTemplateArn !== undefined || b.schedulingConfig !== undefined || b.destinationPackageVersions !== undefined) {
          throw invalid('jobTemplateArn, schedulingConfig and destinationPackageVersions are not supported by the local hub');
        }
        if (b.document === undefined) throw invalid('document is required');
        const tooBig = jobDocumentProblem(b.document);
        if (tooBig) throw invalid(tooBig);
        try {
          JSON.parse(b.document);
        } catch (err) {
          throw invalid(`document must be a JSON document: ${(err as Error).message}`);
        }
        const rollout = b.jobExecutionsRolloutConfig;
        const job = engine.createJob({
          jobId: jobId(id!),
          targets: b.targets,
          document: b.document,
          description: b.description,
          targetSelection: b.targetSelection,
          presignedUrlConfig: b.presignedUrlConfig,
          rollout: rollout && (rollout.maximumPerMinute !== undefined || rollout.exponentialRate) ? rollout : undefined,
          abortCriteria: b.abortConfig?.criteriaList,
          inProgressTimeoutInMinutes: b.timeoutConfig?.inProgressTimeoutInMinutes,
          retryCriteria: b.jobExecutionsRetryConfig?.criteriaList,
        });
        return { jobArn: job.jobArn, jobId: job.jobId, description: job.description };
      },
    },
    {
      method: 'GET',
      pattern: /^\/jobs\/([^/]+)$/,
      mutates: false,
      handler: ([id]) => {
        const job = engine.getJob(jobId(id!));
        const c = engine.processDetails(job);
        return {
          job: {
            ...jobSummary(job),
            forceCanceled: job.forceCanceled,
            reasonCode: job.reasonCode,
            comment: job.comment,
            targets: job.targets,
            description: job.description,
            presignedUrlConfig: job.presignedUrlConfig,
            jobExecutionsRolloutConfig: job.rollout,
            abortConfig: job.abortCriteria ? { criteriaList: job.abortCriteria } : undefined,
            timeoutConfig: job.inProgressTimeoutInMinutes === undefined ? undefined : { inProgressTimeoutInMinutes: job.inProgressTimeoutInMinutes },
            jobExecutionsRetryConfig: job.retryCriteria ? { criteriaList: job.retryCriteria } : undefined,
            jobProcessDetails: {
              processingTargets: job.status === 'IN_PROGRESS' ? job.targets : [],
              numberOfCanceledThings: c.CANCELED,
              numberOfSucceededThings: c.SUCCEEDED,
              numberOfFailedThings: c.FAILED,
              numberOfRejectedThings: c.REJECTED,
              numberOfQueuedThings: c.QUEUED,
              numberOfInProgressThings: c.IN_PROGRESS,
              numberOfRemovedThings: c.REMOVED,
              numberOfTimedOutThings: c.TIMED_OUT,
            },
          },
        };
      },
    },
    {
      method: 'GET',
      pattern: /^\/jobs\/([^/]+)\/job-document$/,
      mutates: false,
      handler: ([id]) => ({ document: engine.getJob(jobId(id!)).document }),
    },
    {
      method: 'GET',
      pattern: /^\/jobs$/,
      mutates: false,
      handler: (_p, query) => {
        let jobs = engine.listJobs();
        const status = query.get('status');
        const sel = query.get('targetSelection');
        const group = query.get('thingGroupName');
        if (status !== null) jobs = jobs.filter((j) => j.status === status);
        if (sel !== null) jobs = jobs.filter((j) => j.targetSelection === sel);
        if (group !== null) jobs = jobs.filter((j) => j.targets.includes(engine.groupArn(group)));
        const { items, nextToken } = page(jobs, query);
        return { jobs: items.map(jobSummary), nextToken };
      },
    },
    {
      method: 'GET',
      pattern: /^\/jobs\/([^/]+)\/things$/,
      mutates: false,
      handler: ([id], query) => {
        let execs = engine.executionsForJob(jobId(id!));
        const status = query.get('status');
        if (status !== null) execs = execs.filter((e) => e.status === status);
        const { items, nextToken } = page(execs, query);
        return {
          executionSummaries: items.map((e) => ({ thingArn: engine.thingArn(e.thingName), jobExecutionSummary: execSummary(e) })),
          nextToken,
        };
      },
    },
    {
      method: 'GET',
      pattern: /^\/things\/([^/]+)\/jobs$/,
      mutates: false,
      handler: ([name], query) => {
        let execs = engine.executionsForThing(thingName(name!));
        const status = query.get('status');
        const job = query.get('jobId');
        if (status !== null) execs = execs.filter((e) => e.status === status);
        if (job !== null) execs = execs.filter((e) => e.jobId === job);
        const { items, nextToken } = page(execs, query);
        return { executionSummaries: items.map((e) => ({ jobId: e.jobId, jobExecutionSummary: execSummary(e) })), nextToken };
      },
    },
    {
      method: 'GET',
      pattern: /^\/things\/([^/]+)\/jobs\/([^/]+)$/,
      mutates: false,
      handler: ([name, id], query) => {
        const rawNumber = query.get('executionNumber');
        const executionNumber = rawNumber === null ? undefined : Number(rawNumber);
        if (executionNumber !== undefined && (!Number.isInteger(executionNumber) || executionNumber < 0)) {
          throw invalid(`executionNumber must be a non-negative integer, got ${rawNumber}`);
        }
        const e = engine.getExecution(jobId(id!), thingName(name!), executionNumber);
        return {
          execution: {
            jobId: e.jobId,
            status: e.status,
            forceCanceled: e.forceCanceled ?? false,
            statusDetails: { detailsMap: e.statusDetails },
            thingArn: engine.thingArn(e.thingName),
            queuedAt: ts(e.queuedAt),
            startedAt: ts(e.startedAt),
            lastUpdatedAt: ts(e.lastUpdatedAt),
            executionNumber: e.executionNumber,
            versionNumber: e.versionNumber,
            approximateSecondsBeforeTimedOut: TERMINAL_STATUSES.has(e.status) ? undefined : engine.secondsBeforeTimedOut(e),
          },
        };
      },
    },
    {
      // Fleet indexing (SearchIndex) with thing connectivity, as AWS answers once it is enabled.
      method: 'POST',
      pattern: /^\/indices\/search$/,
      mutates: false,
      handler: (_p, _q, body) => {
        const b = parse(SearchIndexBody, body ?? {}, 'SearchIndex body');
        if (b.indexName !== undefined && b.indexName !== 'AWS_Things') {
          throw new HttpError(404, 'ResourceNotFoundException', `index ${b.indexName} does not exist; the local hub indexes AWS_Things`);
        }
        let docs;
        try {
          docs = searchThings(engine.listThings(), engine.listGroups(), options.connectivity && ((t) => options.connectivity!.get(t)), b.queryString);
        } catch (err) {
          if (err instanceof InvalidQueryError) throw new HttpError(400, 'InvalidQueryException', err.message);
          throw err;
        }
        const query = new URLSearchParams();
        if (b.maxResults !== undefined) query.set('maxResults', String(Math.min(250, b.maxResults)));
        if (b.nextToken !== undefined) query.set('nextToken', b.nextToken);
        const { items, nextToken } = page(docs, query);
        return { things: items, thingGroups: [], nextToken };
      },
    },
    {
      method: 'PUT',
      pattern: /^\/jobs\/([^/]+)\/cancel$/,
      mutates: true,
      handler: ([id], query, body) => {
        const b = parse(CancelJobBody, body ?? {}, 'CancelJob body');
        const job = engine.cancelJob(jobId(id!), { force: boolQuery(query, 'force'), reasonCode: b.reasonCode, comment: b.comment });
        return { jobArn: job.jobArn, jobId: job.jobId, description: job.description };
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/jobs\/([^/]+)$/,
      mutates: true,
      handler: ([id], query) => {
        engine.deleteJob(jobId(id!), boolQuery(query, 'force'));
        return {};
      },
    },
  ];

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 1024 * 1024) throw new HttpError(413, 'InvalidRequestException', 'Request body exceeds 1 MiB');
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  function parseBody(raw: Buffer): unknown {
    const text = raw.toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw invalid(`Request body is not valid JSON: ${(err as Error).message}`);
    }
  }

  function send(res: ServerResponse, status: number, body: Record<string, unknown>, errorType?: string): void {
    const text = JSON.stringify(body);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'x-amzn-requestid': crypto.randomUUID(),
    };
    if (errorType) headers['x-amzn-ErrorType'] = errorType;
    res.writeHead(status, headers);
    res.end(text);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const raw = await readBody(req);
      const verdict = verifySigV4(
        { method: req.method ?? 'GET', rawUrl: req.url ?? '/', headers: req.headers },
        {
          service: 'iot',
          singleEncodePath: false,
          payloadHash: sha256Hex(raw),
          secretFor: (id) => (id === options.credentials.accessKeyId ? options.credentials.secretAccessKey : undefined),
        },
      );
      if (!verdict.ok) {
        if (verdict.reason === 'mismatch') throw new HttpError(403, 'InvalidSignatureException', verdict.message);
        throw new HttpError(403, 'UnrecognizedClientException', `The security token included in the request is invalid: ${verdict.message}`);
      }
      const url = new URL(req.url ?? '/', 'http://localhost');
      const path = url.pathname;
      const body = parseBody(raw);
      for (const route of routes) {
        if (route.method !== req.method) continue;
        const m = route.pattern.exec(path);
        if (!m) continue;
        const params = m.slice(1).map((p) => decodeURIComponent(p));
        const out = await route.handler(params, url.searchParams, body);
        if (route.mutates) {
          await options.commit();
          await options.afterChange();
        }
        send(res, 200, out);
        return;
      }
      throw new HttpError(404, 'UnknownOperationException', `No operation ${req.method} ${path} on the local IoT control plane.`);
    } catch (err) {
      if (err instanceof HttpError) send(res, err.status, { message: err.message }, err.type);
      else if (err instanceof HubApiError) {
        const [status, type] = ERROR_MAP[err.kind];
        send(res, status, { message: err.message }, type);
      } else {
        options.onInternalError?.(err);
        send(res, 500, { message: 'Internal failure' }, 'InternalFailureException');
      }
    }
  }

  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new TransportError(`control plane could not listen on 127.0.0.1:${options.port ?? 0}`, { cause: err })));
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
