// Rolling a published model out to a thing group as an AWS IoT Job, cancelling it, and rolling
// back to the last version that succeeded on the group. Works against AWS and the local hub alike.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-configurations-details.html
import {
  CancelJobCommand,
  CreateJobCommand,
  DescribeJobCommand,
  DescribeThingCommand,
  DescribeThingGroupCommand,
  ResourceNotFoundException,
  paginateListJobs,
  paginateListThingsInThingGroup,
  type CreateJobCommandInput,
  type IoTClient,
  type JobSummary,
} from '@aws-sdk/client-iot';
import type { S3Client } from '@aws-sdk/client-s3';
import { TransportError, ValidationError } from '../common/errors.ts';
import { parseWith } from '../common/validate.ts';
import {
  DEPLOY_MODEL_SCHEMA,
  DeployModelDocumentSchema,
  UPDATE_AGENT_SCHEMA,
  UpdateAgentDocumentSchema,
  type DeployModelDocument,
  type HealthCheck,
  type UpdateAgentDocument,
} from '../contracts/job-document.ts';
import { agentPackageFileName } from '../contracts/agent-package.ts';
import type { PublishedAgentPackage } from './agent-publisher.ts';
import { MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, modelPrefix } from '../contracts/manifest.ts';
import type { ManifestSigner } from '../contracts/manifest-signing.ts';
import { readRollbackAuthorization, signRollbackAuthorization, type SignedRollbackAuthorization } from '../contracts/rollback-authorization.ts';
import { presignedPlaceholder, type FleetProfile } from './profile.ts';
import { assertNotDeprecated } from './model-registry.ts';
import { readPublishedVersion } from './publisher.ts';
import { checkJobConfig } from './job-limits.ts';

/** AWS IoT caps a job document at 32 KB. */
const MAX_JOB_DOCUMENT_BYTES = 32 * 1024;

/** Rollout settings; every field has a default a person can reason about. */
export interface RolloutSettings {
  /** Fraction (0..1] of the group that gets the job first; the rest follow only once that many succeed. */
  canary?: number;
  /** Upper bound on notifications per minute (AWS allows 1..1000). */
  maxPerMinute: number;
  /** Cancel the job once this percentage of executed things failed, rejected or timed out. */
  abortThresholdPercent: number;
  /** The abort criterion only applies after this many things finished (default: the canary size, or 1). */
  abortMinExecuted?: number;
  /** Minutes an execution may stay IN_PROGRESS before it is TIMED_OUT. */
  timeoutMinutes: number;
  /** Retries of a FAILED or TIMED_OUT execution (0..10). */
  retries: number;
  /** How long a presigned artifact URL stays valid (60..3600 s). */
  presignExpiresInSec: number;
  /** SNAPSHOT (default): the things in the group now; CONTINUOUS: also things added later. */
  targetSelection: 'SNAPSHOT' | 'CONTINUOUS';
  healthCheck?: Partial<HealthCheck>;
}

export const DEFAULT_ROLLOUT: RolloutSettings = {
  maxPerMinute: 100,
  abortThresholdPercent: 20,
  timeoutMinutes: 30,
  retries: 0,
  presignExpiresInSec: 3600,
  targetSelection: 'SNAPSHOT',
};

/** Parses `5%`, `0.05` or `5` (a number above 1 is a percentage) into a fraction in (0, 1]. */
export function parsePercent(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  const raw = m ? Number(m[1]) : Number.NaN;
  const fraction = m && (m[2] === '%' || raw > 1) ? raw / 100 : raw;
  if (!Number.isFinite(fraction) || fraction <= 0 || fraction > 1) {
    throw new ValidationError(`${flag} must be a percentage in (0%, 100%] such as 5% or 0.05; got ${JSON.stringify(text)}`);
  }
  return fraction;
}

/** Job ids are [a-zA-Z0-9_-]{1,64}; model versions may hold dots, so they become underscores. */
export function makeJobId(modelId: string, version: string, now = Date.now()): string {
  const stamp = now.toString(36);
  const base = `fleetlm-${modelId}-${version}`.replace(/[^a-zA-Z0-9_-]/g, '_');
  return `${base.slice(0, 63 - stamp.length)}-${stamp}`;
}

const DESCRIPTION = /^fleetlm deploy (\S+)@(\S+)(?: to group (\S+))?/;

/** The job description records what was deployed, so rollback can read history without job documents. */
export function describeDeployment(modelId: string, version: string, group?: string): string {
  return `fleetlm deploy ${modelId}@${version}${group ? ` to group ${group}` : ''}`;
}

/** Reads model id, version and group back from a job description written by describeDeployment. */
export function parseDeployment(description: string | undefined): { modelId: string; version: string; group?: string } | undefined {
  const m = description ? DESCRIPTION.exec(description) : null;
  return m ? { modelId: m[1]!, version: m[2]!, group: m[3] } : undefined;
}

/** Builds the deploy-model@1 document with presigned-URL placeholders for every object. */
export async function buildDeployDocument(
  s3: S3Client,
  profile: FleetProfile,
  modelId: string,
  version: string,
  healthCheck: Partial<HealthCheck> = {},
): Promise<DeployModelDocument> {
  const published = await readPublishedVersion(s3, profile.s3.bucket, modelId, version);
  const prefix = modelPrefix(modelId, version);
  return parseWith(
    DeployModelDocumentSchema,
    {
      schema: DEPLOY_MODEL_SCHEMA,
      modelId,
      version,
      manifest: { url: presignedPlaceholder(profile, prefix + MANIFEST_FILE), sha256: published.manifestSha256, size: published.manifestBytes.length },
      signature: { url: presignedPlaceholder(profile, prefix + MANIFEST_SIGNATURE_FILE) },
      artifacts: published.manifest.files.map((f) => ({ name: f.name, url: presignedPlaceholder(profile, prefix + f.name), sha256: f.sha256, size: f.size })),
      healthCheck: { prompt: 'Hello', maxTokens: 16, maxFirstTokenMs: 5000, minTokensPerSecond: 0, ...healthCheck },
    },
    `${DEPLOY_MODEL_SCHEMA} job document`,
  );
}

/** The thing group's ARN and member count. */
export async function describeGroup(iot: IoTClient, group: string): Promise<{ arn: string; things: string[] }> {
  let arn: string | undefined;
  try {
    arn = (await iot.send(new DescribeThingGroupCommand({ thingGroupName: group }))).thingGroupArn;
  } catch (err) {
    if (err instanceof ResourceNotFoundException) {
      throw new ValidationError(`thing group ${group} does not exist: create it and add devices first (or check --group)`);
    }
    throw new TransportError(`DescribeThingGroup ${group} failed`, { cause: err });
  }
  if (!arn) throw new TransportError(`DescribeThingGroup ${group} returned no ARN`);
  const things: string[] = [];
  try {
    for await (const page of paginateListThingsInThingGroup({ client: iot, pageSize: 250 }, { thingGroupName: group })) things.push(...(page.things ?? []));
  } catch (err) {
    throw new TransportError(`ListThingsInThingGroup ${group} failed: ${(err as Error).message}`, { cause: err });
  }
  return { arn, things };
}

export interface RolloutRequest {
  modelId: string;
  version: string;
  group?: string;
  things?: string[];
  settings?: Partial<RolloutSettings>;
  jobId?: string;
  /** Lets devices install this version below their security-version floor (a signed rollback). */
  rollbackAuthorization?: SignedRollbackAuthorization;
}

export interface RolloutResult {
  jobId: string;
  jobArn?: string;
  modelId: string;
  version: string;
  targets: string[];
  targetCount: number;
  document: DeployModelDocument;
  config: Pick<CreateJobCommandInput, 'jobExecutionsRolloutConfig' | 'abortConfig' | 'timeoutConfig' | 'jobExecutionsRetryConfig' | 'presignedUrlConfig' | 'targetSelection'>;
}

/** Maps operator settings to CreateJob's rollout, abort, timeout and retry configuration. */
export function jobConfig(settings: RolloutSettings, targetCount: number, roleArn: string): RolloutResult['config'] {
  if (!Number.isInteger(settings.maxPerMinute) || settings.maxPerMinute < 1 || settings.maxPerMinute > 1000) {
    throw new ValidationError(`--max-per-minute must be an integer in 1..1000 (AWS IoT's range); got ${settings.maxPerMinute}`);
  }
  if (!(settings.abortThresholdPercent > 0 && settings.abortThresholdPercent <= 100)) {
    throw new ValidationError(`--abort-threshold must be in (0%, 100%]; got ${settings.abortThresholdPercent}%`);
  }
  if (!Number.isInteger(settings.timeoutMinutes) || settings.timeoutMinutes < 1 || settings.timeoutMinutes > 10080) {
    throw new ValidationError(`--timeout-minutes must be an integer in 1..10080; got ${settings.timeoutMinutes}`);
  }
  if (!Number.isInteger(settings.retries) || settings.retries < 0 || settings.retries > 10) {
    throw new ValidationError(`--retries must be an integer in 0..10; got ${settings.retries}`);
  }
  if (!roleArn) {
    throw new ValidationError('a presign role ARN is required for presigned artifact URLs: set presignRoleArn in the profile or pass --role-arn');
  }
  const canaryCount = settings.canary ? Math.max(1, Math.ceil(settings.canary * Math.max(1, targetCount))) : undefined;
  const minExecuted = settings.abortMinExecuted ?? canaryCount ?? 1;
  const config: RolloutResult['config'] = {
    targetSelection: settings.targetSelection,
    // A canary is an exponential rollout whose first wave is the canary and whose rate only grows
    // once the canary devices have succeeded; with the abort criterion below applying from the
    // canary's size, a bad canary cancels the job before the rest of the group hears of it.
    jobExecutionsRolloutConfig: canaryCount
      ? {
          maximumPerMinute: settings.maxPerMinute,
          exponentialRate: {
            baseRatePerMinute: Math.min(canaryCount, settings.maxPerMinute),
            incrementFactor: 5,
            rateIncreaseCriteria: { numberOfSucceededThings: canaryCount },
          },
        }
      : { maximumPerMinute: settings.maxPerMinute },
    abortConfig: {
      criteriaList: [
        { failureType: 'ALL', action: 'CANCEL', thresholdPercentage: settings.abortThresholdPercent, minNumberOfExecutedThings: minExecuted },
      ],
    },
    timeoutConfig: { inProgressTimeoutInMinutes: settings.timeoutMinutes },
    presignedUrlConfig: { roleArn, expiresInSec: settings.presignExpiresInSec },
  };
  if (settings.retries > 0) {
    config.jobExecutionsRetryConfig = {
      criteriaList: [
        { failureType: 'FAILED', numberOfRetries: settings.retries },
        { failureType: 'TIMED_OUT', numberOfRetries: settings.retries },
      ],
    };
  }
  return checkJobConfig(config);
}

/** The group's ARN and the named things' ARNs, with how many devices they reach. */
async function resolveTargets(iot: IoTClient, req: { group?: string; things?: string[] }, settings: RolloutSettings): Promise<{ targets: string[]; targetCount: number }> {
  const targets: string[] = [];
  let targetCount = 0;
  if (req.group) {
    const g = await describeGroup(iot, req.group);
    targets.push(g.arn);
    targetCount += g.things.length;
    if (g.things.length === 0 && settings.targetSelection === 'SNAPSHOT') {
      throw new ValidationError(`thing group ${req.group} has no things: a SNAPSHOT job would reach nobody (add devices, or use --continuous)`);
    }
  }
  for (const thing of req.things ?? []) {
    try {
      const arn = (await iot.send(new DescribeThingCommand({ thingName: thing }))).thingArn;
      if (!arn) throw new TransportError(`DescribeThing ${thing} returned no ARN`);
      targets.push(arn);
      targetCount += 1;
    } catch (err) {
      if (err instanceof TransportError) throw err;
      throw new ValidationError(`thing ${thing} cannot be targeted: ${(err as Error).message}`, { cause: err });
    }
  }
  if (targets.length === 0) throw new ValidationError('a rollout needs a target: pass --group G (or --thing T)');
  return { targets, targetCount };
}

/** CreateJob with a checked document size; returns the job ARN. */
async function submitJob(iot: IoTClient, jobId: string, targets: string[], document: unknown, description: string, config: RolloutResult['config']): Promise<string | undefined> {
  const documentText = JSON.stringify(document);
  if (Buffer.byteLength(documentText) > MAX_JOB_DOCUMENT_BYTES) {
    throw new ValidationError(`job document is ${Buffer.byteLength(documentText)} bytes; AWS IoT allows at most ${MAX_JOB_DOCUMENT_BYTES} (too many artifacts?)`);
  }
  try {
    const out = await iot.send(new CreateJobCommand({ jobId, targets, document: documentText, description, ...config }));
    return out.jobArn;
  } catch (err) {
    throw new TransportError(`CreateJob ${jobId} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** Creates the IoT Job that deploys a published version to a group (or to named things). */
export async function createRollout(iot: IoTClient, s3: S3Client, profile: FleetProfile, req: RolloutRequest): Promise<RolloutResult> {
  const settings: RolloutSettings = { ...DEFAULT_ROLLOUT, ...stripUndefined(req.settings ?? {}) };
  await assertNotDeprecated(s3, profile.s3.bucket, req.modelId, req.version);
  const { targets, targetCount } = await resolveTargets(iot, req, settings);
  const document = await buildDeployDocument(s3, profile, req.modelId, req.version, settings.healthCheck);
  if (req.rollbackAuthorization) document.rollbackAuthorization = req.rollbackAuthorization;
  const config = jobConfig(settings, targetCount, profile.presignRoleArn);
  const jobId = req.jobId ?? makeJobId(req.modelId, req.version);
  const jobArn = await submitJob(iot, jobId, targets, document, describeDeployment(req.modelId, req.version, req.group), config);
  return { jobId, jobArn, modelId: req.modelId, version: req.version, targets, targetCount, document, config };
}

/** Builds the update-agent@1 document for published agent builds of one version (one per platform/arch). */
export function buildUpdateAgentDocument(profile: FleetProfile, packages: readonly PublishedAgentPackage[], confirmTimeoutSec?: number): UpdateAgentDocument {
  const versions = [...new Set(packages.map((p) => p.version))];
  if (versions.length !== 1) throw new ValidationError(`agent packages of one rollout must share a version; got ${versions.join(', ') || 'none'}`);
  return parseWith(
    UpdateAgentDocumentSchema,
    {
      schema: UPDATE_AGENT_SCHEMA,
      version: versions[0],
      packages: packages.map((p) => {
        const name = agentPackageFileName(p.version, p.platform, p.arch);
        return {
          platform: p.platform,
          arch: p.arch,
          manifest: { url: presignedPlaceholder(profile, p.prefix + MANIFEST_FILE), sha256: p.manifestSha256, size: p.manifestSize },
          signature: { url: presignedPlaceholder(profile, p.prefix + MANIFEST_SIGNATURE_FILE) },
          artifact: { name, url: presignedPlaceholder(profile, p.prefix + name), sha256: p.manifest.package.sha256, size: p.manifest.package.size },
        };
      }),
      ...(confirmTimeoutSec !== undefined ? { confirmTimeoutSec } : {}),
    },
    `${UPDATE_AGENT_SCHEMA} job document`,
  );
}

export interface AgentRolloutRequest {
  packages: readonly PublishedAgentPackage[];
  group?: string;
  things?: string[];
  settings?: Partial<RolloutSettings>;
  jobId?: string;
  /** Seconds the new agent has to connect and report before the device rolls back (default 120). */
  confirmTimeoutSec?: number;
}

export interface AgentRolloutResult extends Omit<RolloutResult, 'modelId' | 'document'> {
  document: UpdateAgentDocument;
}

/** Creates the IoT Job that replaces the agent on a group (or named things), with the same rollout, canary and abort settings as models. */
export async function createAgentRollout(iot: IoTClient, profile: FleetProfile, req: AgentRolloutRequest): Promise<AgentRolloutResult> {
  const settings: RolloutSettings = { ...DEFAULT_ROLLOUT, ...stripUndefined(req.settings ?? {}) };
  if (settings.healthCheck) throw new ValidationError('health-check options apply to model rollouts only; an agent update is checked by the new agent confirming');
  const { targets, targetCount } = await resolveTargets(iot, req, settings);
  const document = buildUpdateAgentDocument(profile, req.packages, req.confirmTimeoutSec);
  const config = jobConfig(settings, targetCount, profile.presignRoleArn);
  const jobId = req.jobId ?? makeJobId('agent', document.version);
  const arches = document.packages.map((p) => `${p.platform}-${p.arch}`).join(',');
  const jobArn = await submitJob(iot, jobId, targets, document, `fleetlm update-agent ${document.version} (${arches})${req.group ? ` to group ${req.group}` : ''}`, config);
  return { jobId, jobArn, version: document.version, targets, targetCount, document, config };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Cancels a job; executions already IN_PROGRESS finish unless `force`. */
export async function cancelRollout(iot: IoTClient, jobId: string, opts: { force?: boolean; comment?: string } = {}): Promise<void> {
  try {
    await iot.send(new CancelJobCommand({ jobId, force: opts.force ?? false, comment: opts.comment, reasonCode: 'OPERATOR_CANCEL' }));
  } catch (err) {
    if (err instanceof ResourceNotFoundException) {
      throw new ValidationError(`job ${jobId} does not exist`);
    }
    throw new TransportError(`CancelJob ${jobId} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** One past deployment on a group, newest first in history lists. */
export interface DeploymentRecord {
  jobId: string;
  modelId: string;
  version: string;
  status: string;
  createdAt?: Date;
  succeeded: number;
  failed: number;
  inProgress: number;
}

/** The group's fleetlm deployments, newest first (ListJobs filtered by group, then DescribeJob each). */
export async function rolloutHistory(iot: IoTClient, group: string): Promise<DeploymentRecord[]> {
  const summaries: JobSummary[] = [];
  try {
    for await (const page of paginateListJobs({ client: iot, pageSize: 100 }, { thingGroupName: group })) summaries.push(...(page.jobs ?? []));
  } catch (err) {
    throw new TransportError(`ListJobs for group ${group} failed: ${(err as Error).message}`, { cause: err });
  }
  const records: DeploymentRecord[] = [];
  for (const s of summaries) {
    if (!s.jobId) continue;
    const job = (await iot.send(new DescribeJobCommand({ jobId: s.jobId }))).job;
    const dep = parseDeployment(job?.description);
    if (!job || !dep || (dep.group && dep.group !== group)) continue;
    const d = job.jobProcessDetails ?? {};
    records.push({
      jobId: s.jobId,
      modelId: dep.modelId,
      version: dep.version,
      status: job.status ?? 'UNKNOWN',
      createdAt: job.createdAt,
      succeeded: d.numberOfSucceededThings ?? 0,
      failed: (d.numberOfFailedThings ?? 0) + (d.numberOfRejectedThings ?? 0) + (d.numberOfTimedOutThings ?? 0),
      inProgress: (d.numberOfInProgressThings ?? 0) + (d.numberOfQueuedThings ?? 0),
    });
  }
  return records.sort((a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0));
}

/**
 * Picks what a rollback deploys: the newest deployment, other than the latest one, of a different
 * version that succeeded on the group (some things SUCCEEDED and none failed).
 */
export function pickRollbackTarget(history: DeploymentRecord[], modelId?: string): { current: DeploymentRecord; target: DeploymentRecord } | undefined {
  const relevant = modelId ? history.filter((h) => h.modelId === modelId) : history;
  const current = relevant[0];
  if (!current) return undefined;
  const target = relevant.slice(1).find((h) => (h.version !== current.version || h.modelId !== current.modelId) && h.succeeded > 0 && h.failed === 0);
  return target ? { current, target } : undefined;
}

export interface RollbackResult {
  from: DeploymentRecord;
  to: DeploymentRecord;
  /** The current job, when it was still running and had to be cancelled first. */
  canceled?: string;
  rollout: RolloutResult;
}

/**
 * Rolls a group back to the last version that succeeded on it before the current deployment:
 * cancels the current job if it is still running, then deploys that version as a new job.
 */
export async function rollbackGroup(
  iot: IoTClient,
  s3: S3Client,
  profile: FleetProfile,
  group: string,
  opts: { modelId?: string; settings?: Partial<RolloutSettings>; signer?: ManifestSigner; authorization?: SignedRollbackAuthorization } = {},
): Promise<RollbackResult> {
  if (opts.signer && opts.authorization) throw new ValidationError('pass a signing key or a rollback authorization, not both');
  const history = await rolloutHistory(iot, group);
  const pick = pickRollbackTarget(history, opts.modelId);
  if (!pick) {
    throw new ValidationError(
      `no earlier version succeeded on group ${group}: history is ${history.map((h) => `${h.modelId}@${h.version}:${h.status}`).join(', ') || 'empty'}`,
    );
  }
  if (opts.authorization) {
    // Refuse here, before anything is canceled, what every device of the group would refuse.
    const auth = readRollbackAuthorization(opts.authorization);
    if (auth.modelId !== pick.target.modelId || auth.version !== pick.target.version) {
      throw new ValidationError(`the rollback authorization is for ${auth.modelId}@${auth.version}, but the rollback of ${group} goes to ${pick.target.modelId}@${pick.target.version}`);
    }
    if (!auth.scope.thingGroups.includes(group)) {
      throw new ValidationError(`the rollback authorization names thing groups [${auth.scope.thingGroups.join(', ')}], not ${group}: its devices would refuse it; issue one with \`fleetlm authorize-rollback --group ${group}\``);
    }
    if (Date.parse(auth.expiresAt) <= Date.now()) throw new ValidationError(`the rollback authorization expired at ${auth.expiresAt}`);
  }
  let canceled: string | undefined;
  if (pick.current.status === 'IN_PROGRESS' || pick.current.status === 'SCHEDULED') {
    await cancelRollout(iot, pick.current.jobId, { comment: `rolled back to ${pick.target.modelId}@${pick.target.version}` });
    canceled = pick.current.jobId;
  }
  // With the fleet key, the job also carries a signed rollback authorization, so devices install the older
  // version even when its security version is below the one they run (contracts/rollback-authorization.ts);
  // a device accepts it only if its agent config lists the group (thingGroups, written by `device register --group`).
  // Scoped to the group: devices outside it refuse the authorization, so it cannot be replayed to them.
  const rollbackAuthorization = opts.signer ? await signRollbackAuthorization({ ...pick.target, scope: { thingGroups: [group] } }, opts.signer) : opts.authorization;
  const rollout = await createRollout(iot, s3, profile, { modelId: pick.target.modelId, version: pick.target.version, group, settings: opts.settings, rollbackAuthorization });
  return { from: pick.current, to: pick.target, canceled, rollout };
}
