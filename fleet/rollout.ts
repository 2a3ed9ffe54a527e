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
import { resolveRolloutPolicy, toCreateJobConfig, type RolloutPolicy, type RolloutPolicyInput } from './rollout-policy.ts';

/** AWS IoT caps a job document at 32 KB. */
const MAX_JOB_DOCUMENT_BYTES = 32 * 1024;

/**
 * What a rollout takes from its caller: the rollout policy (fleet/rollout-policy.ts, one schema for the CLI, the
 * Lambdas and the CDK app) plus the job document's health check.
 */
export type RolloutSettings = RolloutPolicyInput & { healthCheck?: Partial<HealthCheck> };

/** Splits settings into the validated policy and the document's health check. */
export function splitSettings(settings: RolloutSettings = {}): { policy: RolloutPolicy; healthCheck?: Partial<HealthCheck> } {
  const { healthCheck, ...policy } = settings;
  return { policy: resolveRolloutPolicy(policy, 'rollout settings'), ...(healthCheck ? { healthCheck } : {}) };
}

/** The suffix of a rollout's canary job: `<jobId>-canary`, so `status`, `jobs` and `cancel` show them as one rollout. */
export const CANARY_SUFFIX = '-canary';

/** Longest rollout job id: its canary job's id must still fit IoT's 64 characters. */
export const MAX_ROLLOUT_JOB_ID = 64 - CANARY_SUFFIX.length;

/** The id of a rollout's canary job. */
export function canaryJobId(jobId: string): string {
  return `${jobId}${CANARY_SUFFIX}`;
}

/** Job ids are [a-zA-Z0-9_-]{1,64} (57 here, leaving room for `-canary`); model versions may hold dots, so they become underscores. */
export function makeJobId(modelId: string, version: string, now = Date.now()): string {
  const stamp = now.toString(36);
  const base = `fleetlm-${modelId}-${version}`.replace(/[^a-zA-Z0-9_-]/g, '_');
  return `${base.slice(0, MAX_ROLLOUT_JOB_ID - 1 - stamp.length)}-${stamp}`;
}

const DESCRIPTION = /^fleetlm deploy (\S+)@(\S+)(?: to group (\S+))?(?: \(canary of (\S+)\))?/;

/** The job description records what was deployed, so rollback can read history without job documents. */
export function describeDeployment(modelId: string, version: string, group?: string, canaryOf?: string): string {
  return `fleetlm deploy ${modelId}@${version}${group ? ` to group ${group}` : ''}${canaryOf ? ` (canary of ${canaryOf})` : ''}`;
}

/** Reads model id, version, group and (for a canary job) its rollout's job id back from a description written by describeDeployment. */
export function parseDeployment(description: string | undefined): { modelId: string; version: string; group?: string; canaryOf?: string } | undefined {
  const m = description ? DESCRIPTION.exec(description) : null;
  if (!m) return undefined;
  return { modelId: m[1]!, version: m[2]!, group: m[3], ...(m[4] ? { canaryOf: m[4] } : {}) };
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
  settings?: RolloutSettings;
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

/** Maps operator settings to CreateJob's configuration: the one policy mapping (fleet/rollout-policy.ts). */
export function jobConfig(policy: RolloutPolicy, roleArn: string): RolloutResult['config'] {
  return toCreateJobConfig(policy, roleArn);
}

/** The group's ARN and the named things' ARNs, with how many devices they reach. */
async function resolveTargets(iot: IoTClient, req: { group?: string; things?: string[] }, policy: RolloutPolicy): Promise<{ targets: string[]; targetCount: number; thingNames: string[] }> {
  const targets: string[] = [];
  const thingNames = new Set<string>();
  let targetCount = 0;
  if (req.group) {
    const g = await describeGroup(iot, req.group);
    targets.push(g.arn);
    targetCount += g.things.length;
    for (const t of g.things) thingNames.add(t);
    if (g.things.length === 0 && policy.targetSelection === 'SNAPSHOT') {
      throw new ValidationError(`thing group ${req.group} has no things: a SNAPSHOT job would reach nobody (add devices, or use --continuous)`);
    }
  }
  for (const thing of req.things ?? []) {
    try {
      const arn = (await iot.send(new DescribeThingCommand({ thingName: thing }))).thingArn;
      if (!arn) throw new TransportError(`DescribeThing ${thing} returned no ARN`);
      targets.push(arn);
      targetCount += 1;
      thingNames.add(thing);
    } catch (err) {
      if (err instanceof TransportError) throw err;
      throw new ValidationError(`thing ${thing} cannot be targeted: ${(err as Error).message}`, { cause: err });
    }
  }
  if (targets.length === 0) throw new ValidationError('a rollout needs a target: pass --group G (or --thing T)');
  return { targets, targetCount, thingNames: [...thingNames] };
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

/** Creates the IoT Job that deploys a published version to a group (or to named things): one job, no canary (fleet/canary-rollout.ts runs canaries). */
export async function createRollout(
  iot: IoTClient,
  s3: S3Client,
  profile: FleetProfile,
  req: RolloutRequest,
  /** For a canary job: the rollout it belongs to, and the devices it targets instead of the request's. */
  opts: { canaryOf?: string; canaryThings?: string[] } = {},
): Promise<RolloutResult> {
  const { policy, healthCheck } = splitSettings(req.settings);
  if (policy.canaryPercent !== undefined && !opts.canaryOf) {
    throw new ValidationError('createRollout makes one job; a rollout with a canary goes through runCanaryRollout (fleet/canary-rollout.ts)');
  }
  const jobId = req.jobId ?? makeJobId(req.modelId, req.version);
  if (!opts.canaryOf && jobId.length > MAX_ROLLOUT_JOB_ID) {
    throw new ValidationError(`--job-id is ${jobId.length} characters; a rollout's id may have at most ${MAX_ROLLOUT_JOB_ID} so that its canary job ${canaryJobId('<id>')} fits IoT's 64`);
  }
  await assertNotDeprecated(s3, profile.s3.bucket, req.modelId, req.version);
  const { targets, targetCount } = await resolveTargets(iot, opts.canaryThings ? { things: opts.canaryThings } : req, policy);
  const document = await buildDeployDocument(s3, profile, req.modelId, req.version, healthCheck);
  if (req.rollbackAuthorization) document.rollbackAuthorization = req.rollbackAuthorization;
  const config = jobConfig(policy, profile.presignRoleArn);
  const jobArn = await submitJob(iot, jobId, targets, document, describeDeployment(req.modelId, req.version, req.group, opts.canaryOf), config);
  return { jobId, jobArn, modelId: req.modelId, version: req.version, targets, targetCount, document, config };
}

/** The thing names a rollout request reaches now (group members and named things), without creating anything. */
export async function rolloutThings(iot: IoTClient, req: { group?: string; things?: string[] }, policy: RolloutPolicy): Promise<string[]> {
  return (await resolveTargets(iot, req, policy)).thingNames;
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
  settings?: RolloutSettings;
  jobId?: string;
  /** Seconds the new agent has to connect and report before the device rolls back (default 120). */
  confirmTimeoutSec?: number;
}

export interface AgentRolloutResult extends Omit<RolloutResult, 'modelId' | 'document'> {
  document: UpdateAgentDocument;
}

/** Creates the IoT Job that replaces the agent on a group (or named things), with the same rollout, canary and abort settings as models. */
export async function createAgentRollout(
  iot: IoTClient,
  profile: FleetProfile,
  req: AgentRolloutRequest,
  /** For a canary job: the rollout it belongs to, and the devices it targets instead of the request's. */
  opts: { canaryOf?: string; canaryThings?: string[] } = {},
): Promise<AgentRolloutResult> {
  const { policy, healthCheck } = splitSettings(req.settings);
  if (healthCheck) throw new ValidationError('health-check options apply to model rollouts only; an agent update is checked by the new agent confirming');
  if (policy.canaryPercent !== undefined && !opts.canaryOf) {
    throw new ValidationError('createAgentRollout makes one job; an agent update with a canary goes through runCanaryWith (fleet/canary-rollout.ts)');
  }
  const { targets, targetCount } = await resolveTargets(iot, opts.canaryThings ? { things: opts.canaryThings } : req, policy);
  const document = buildUpdateAgentDocument(profile, req.packages, req.confirmTimeoutSec);
  const config = jobConfig(policy, profile.presignRoleArn);
  const jobId = req.jobId ?? makeJobId('agent', document.version);
  const arches = document.packages.map((p) => `${p.platform}-${p.arch}`).join(',');
  const description = `fleetlm update-agent ${document.version} (${arches})${req.group ? ` to group ${req.group}` : ''}${opts.canaryOf ? ` (canary of ${opts.canaryOf})` : ''}`;
  const jobArn = await submitJob(iot, jobId, targets, document, description, config);
  return { jobId, jobArn, version: document.version, targets, targetCount, document, config };
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

/**
 * The jobs of one group's rollouts: ListJobs filtered by the group, plus the canary jobs (`<id>-canary`), which
 * target the canary things rather than the group and so are not in that filter; callers keep those whose
 * description names the group.
 */
export async function groupJobSummaries(iot: IoTClient, group: string | undefined): Promise<JobSummary[]> {
  const summaries: JobSummary[] = [];
  try {
    for await (const page of paginateListJobs({ client: iot, pageSize: 100 }, { thingGroupName: group })) summaries.push(...(page.jobs ?? []));
    if (group) {
      for await (const page of paginateListJobs({ client: iot, pageSize: 100 }, {})) {
        summaries.push(...(page.jobs ?? []).filter((j) => j.jobId?.endsWith(CANARY_SUFFIX)));
      }
    }
  } catch (err) {
    throw new TransportError(`ListJobs${group ? ` for group ${group}` : ''} failed: ${(err as Error).message}`, { cause: err });
  }
  const seen = new Set<string>();
  return summaries.filter((j) => j.jobId !== undefined && !seen.has(j.jobId) && seen.add(j.jobId));
}

/** The group's fleetlm deployments (canary jobs included), newest first (ListJobs filtered by group, then DescribeJob each). */
export async function rolloutHistory(iot: IoTClient, group: string): Promise<DeploymentRecord[]> {
  const summaries = await groupJobSummaries(iot, group);
  const records: DeploymentRecord[] = [];
  for (const s of summaries) {
    if (!s.jobId) continue;
    const job = (await iot.send(new DescribeJobCommand({ jobId: s.jobId }))).job;
    const dep = parseDeployment(job?.description);
    // Group-targeted jobs are the group's whatever their description; a canary job only when it names the group.
    if (!job || !dep || (dep.group ? dep.group !== group : s.jobId.endsWith(CANARY_SUFFIX))) continue;
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
  opts: { modelId?: string; settings?: RolloutSettings; signer?: ManifestSigner; authorization?: SignedRollbackAuthorization } = {},
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
  // A rollback goes straight to the whole group: the target version already ran there without failures.
  const rollout = await createRollout(iot, s3, profile, { modelId: pick.target.modelId, version: pick.target.version, group, settings: { ...opts.settings, canaryPercent: undefined }, rollbackAuthorization });
  return { from: pick.current, to: pick.target, canceled, rollout };
}
