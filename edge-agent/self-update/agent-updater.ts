// The device side of `fleetlm/update-agent@1`, apart from the job plumbing: pick this device's package,
// verify its signed manifest, install it beside the running agent (unpack, pending record, switch), and,
// after the restart, tell the agent what the job's outcome is from the record the launcher left.
import { ValidationError } from '../../common/errors.ts';
import { parseAgentManifestBytes, type AgentManifest } from '../../contracts/agent-package.ts';
import type { AgentPackageRef, UpdateAgentDocument } from '../../contracts/job-document.ts';
import { parseManifestSignature } from '../../contracts/manifest.ts';
import { verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import type { Logger } from '../log.ts';
import { AgentHome } from './agent-home.ts';
import type { LaunchContext } from './launch-context.ts';
import { unpackAgentPackage } from './package-unpacker.ts';
import { newUpdateRecord, readUpdateRecord, removeUpdateRecord, writeUpdateRecord, type UpdateRecord } from './update-record.ts';

/** Stable code in a failed update's statusDetails. */
export const AGENT_UPDATE_FAILED = 'AGENT_UPDATE_FAILED';

/** Points inside `install`, named for fault-injection tests: unpacked, then recorded (`pending`), then switched. */
export const UPDATE_STEPS = ['unpacked', 'recorded', 'switched'] as const;
export type UpdateStep = (typeof UPDATE_STEPS)[number];

/** What the running agent does next with an update job that reached the install step. */
export type UpdateResolution =
  /** Nothing installed for this job yet: install, then restart. */
  | { kind: 'install' }
  /** Installed and switched (or switching): restart so the launcher starts the new version. */
  | { kind: 'restart'; record: UpdateRecord }
  /** This process is the new agent on trial: prove the link to the jobs service, then confirm. */
  | { kind: 'confirm'; record: UpdateRecord }
  /** The new agent confirmed: the job succeeded. */
  | { kind: 'succeeded'; record: UpdateRecord }
  /** The update did not take: this (old) agent reports why. */
  | { kind: 'failed'; record: UpdateRecord | null; reason: string };

export interface AgentUpdaterOptions {
  launch: LaunchContext | null;
  log: Logger;
  /** Defaults to this process's platform and arch. */
  platform?: string;
  arch?: string;
  /** Test hook: called after each install step. */
  onStep?: (step: UpdateStep) => void;
}

export class AgentUpdater {
  readonly home: AgentHome | null;
  private readonly platform: string;
  private readonly arch: string;

  constructor(private readonly opts: AgentUpdaterOptions) {
    this.home = opts.launch ? new AgentHome(opts.launch.agentHome) : null;
    this.platform = opts.platform ?? process.platform;
    this.arch = opts.arch ?? process.arch;
  }

  /** The running agent's version (its versions/<version> directory), or null without the launcher. */
  get runningVersion(): string | null {
    return this.opts.launch?.version ?? null;
  }

  /** This device's package in the document; throws ValidationError (the job is rejected) when none fits. */
  selectPackage(doc: UpdateAgentDocument): AgentPackageRef {
    if (!this.opts.launch) {
      throw new ValidationError(
        'this agent was not started by the self-update launcher (FLEETLM_AGENT_HOME is unset), so it cannot replace itself; install the agent package with its launcher',
        { code: 'VALIDATION_NO_LAUNCHER' },
      );
    }
    const mine = doc.packages.find((p) => p.platform === this.platform && p.arch === this.arch);
    if (!mine) {
      throw new ValidationError(
        `the job has no agent package for this device (${this.platform}-${this.arch}); it has ${doc.packages.map((p) => `${p.platform}-${p.arch}`).join(', ')}`,
        { code: 'VALIDATION_PLATFORM' },
      );
    }
    return mine;
  }

  /** Checks the signature over the manifest bytes, then that the manifest names this job's version, this device and this artifact. */
  verifyManifest(doc: UpdateAgentDocument, ref: AgentPackageRef, manifestBytes: Uint8Array, signatureText: string, publicKeyPem: string): AgentManifest {
    const sig = parseManifestSignature(signatureText);
    if (!verifyManifestBytes(manifestBytes, sig, publicKeyPem)) {
      throw new ValidationError(`agent manifest signature (key ${sig.keyId}) does not verify against the fleet public key`, { code: 'VALIDATION_SIGNATURE' });
    }
    const m = parseAgentManifestBytes(manifestBytes);
    const problems: string[] = [];
    if (m.version !== doc.version) problems.push(`it is for version ${m.version}, the job installs ${doc.version}`);
    if (m.platform !== this.platform || m.arch !== this.arch) problems.push(`it is for ${m.platform}-${m.arch}, this device is ${this.platform}-${this.arch}`);
    if (m.package.name !== ref.artifact.name || m.package.sha256 !== ref.artifact.sha256 || m.package.size !== ref.artifact.size) {
      problems.push(`its package ${m.package.name} (${m.package.size} B) differs from the job's artifact ${ref.artifact.name} (${ref.artifact.size} B)`);
    }
    if (problems.length > 0) throw new ValidationError(`agent manifest refused: ${problems.join('; ')}`, { code: 'VALIDATION_MANIFEST_MISMATCH' });
    return m;
  }

  private requireHome(): AgentHome {
    if (!this.home || !this.opts.launch) throw new ValidationError('self-update needs the launcher', { code: 'VALIDATION_NO_LAUNCHER' });
    return this.home;
  }

  /**
   * Installs a verified package: unpack into versions/<version>, record `pending` (from, to, job), then
   * switch `current`. The record comes before the switch so that, whatever a kill interrupts, the launcher
   * finds a record that explains the link.
   */
  async install(jobId: string, doc: UpdateAgentDocument, packageFile: string, packageSha256: string): Promise<UpdateRecord> {
    const home = this.requireHome();
    const from = this.runningVersion!;
    await unpackAgentPackage(home, doc.version, packageFile, packageSha256);
    this.opts.onStep?.('unpacked');
    const record = await writeUpdateRecord(home.root, newUpdateRecord(jobId, from, doc.version, doc.confirmTimeoutSec * 1000));
    this.opts.onStep?.('recorded');
    await home.switchCurrent(doc.version);
    this.opts.onStep?.('switched');
    this.opts.log.info('agent update installed; restarting into it', { jobId, from, to: doc.version });
    return record;
  }

  /** The rollback reason recorded for `jobId` when this (old) agent is what the launcher restored; else null. */
  async recordedFailure(jobId: string): Promise<UpdateRecord | null> {
    if (!this.home || !this.opts.launch) return null;
    const r = await readUpdateRecord(this.home.root).catch(() => null);
    return r && r.jobId === jobId && r.state === 'rolled-back' && r.from === this.runningVersion ? r : null;
  }

  /** Reads the record for `jobId` and says what the running agent does next. */
  async resolve(jobId: string): Promise<UpdateResolution> {
    const home = this.requireHome();
    const running = this.runningVersion!;
    const r = await readUpdateRecord(home.root);
    if (!r || r.jobId !== jobId) return { kind: 'install' };
    if (r.state === 'pending' && running === r.from) return { kind: 'restart', record: r };
    if (r.state === 'starting' && running === r.to) return { kind: 'confirm', record: r };
    if (r.state === 'confirmed' && running === r.to) return { kind: 'succeeded', record: r };
    if (r.state === 'rolled-back' && running === r.from) return { kind: 'failed', record: r, reason: r.reason ?? `agent ${r.to} was rolled back` };
    // Someone moved `current` by hand, or started a version directly: settle on what runs.
    return { kind: 'failed', record: r, reason: `the update record says ${r.state} (from ${r.from} to ${r.to}) but this agent is ${running}; keeping ${running}` };
  }

  /** The new agent reached the jobs service: from here on the launcher keeps it. */
  async confirm(record: UpdateRecord): Promise<UpdateRecord> {
    return writeUpdateRecord(this.requireHome().root, { ...record, state: 'confirmed', deadline: null });
  }

  /**
   * After the outcome is persisted for reporting: make `current` the running version, remove the record,
   * and remove versions no longer needed (the failed one, or all but the previous and the new one).
   */
  async finish(record: UpdateRecord | null, succeeded: boolean): Promise<string[]> {
    const home = this.requireHome();
    const running = this.runningVersion!;
    if ((await home.currentVersion()) !== running) await home.switchCurrent(running);
    await removeUpdateRecord(home.root);
    if (!record) return [];
    const removed = succeeded ? await home.prune([record.from, record.to]) : (await home.removeVersion(record.to)) ? [record.to] : [];
    if (removed.length > 0) this.opts.log.info('removed old agent versions', { removed });
    return removed;
  }

  /**
   * At start-up: a record whose job this device has finished (reported) is left-over business. A record for
   * a job that is neither active nor finished stays: the job may come back (a lost state file) and must then
   * end as the record says, not install again.
   */
  async tidy(activeJobId: string | null, isFinished: (jobId: string) => boolean): Promise<void> {
    if (!this.home || !this.opts.launch) return;
    const r = await readUpdateRecord(this.home.root).catch(() => null);
    if (!r || r.jobId === activeJobId || !isFinished(r.jobId)) return;
    if (r.state === 'confirmed' || r.state === 'rolled-back') {
      this.opts.log.info('removing a finished self-update record', { jobId: r.jobId, state: r.state });
      await this.finish(r, r.state === 'confirmed');
    }
  }
}

