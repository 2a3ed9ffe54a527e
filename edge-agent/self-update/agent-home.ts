// The agent's install root (<agentHome>, /opt/fleetlm/agent on a device): versions/<version>/ holds each
// unpacked package and `current` is a symlink to versions/<version>, switched atomically by renaming a
// temporary symlink over it (rename(2) replaces the link itself in one step, so a reader sees old or new).
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../common/atomic-file.ts';
import { ValidationError } from '../../common/errors.ts';
import { AgentVersionSchema } from '../../contracts/agent-package.ts';

export const CURRENT_LINK = 'current';
export const VERSIONS_DIR = 'versions';

/** Paths under one agent home. */
export class AgentHome {
  constructor(readonly root: string) {}

  get versionsDir(): string {
    return path.join(this.root, VERSIONS_DIR);
  }

  versionDir(version: string): string {
    if (!AgentVersionSchema.safeParse(version).success) throw new ValidationError(`agent version ${JSON.stringify(version)} is not a valid version name`);
    return path.join(this.versionsDir, version);
  }

  /** The agent entry script of a version. */
  entryOf(version: string): string {
    return path.join(this.versionDir(version), 'bin', 'fleetlm-agent');
  }

  /** The version `current` points at; null when there is no link. Throws when `current` is not a link into versions/. */
  async currentVersion(): Promise<string | null> {
    let target: string;
    try {
      target = await fs.readlink(path.join(this.root, CURRENT_LINK));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      if (code === 'EINVAL') throw new ValidationError(`${path.join(this.root, CURRENT_LINK)} must be a symlink to ${VERSIONS_DIR}/<version>`);
      throw err;
    }
    const abs = path.resolve(this.root, target);
    if (path.dirname(abs) !== this.versionsDir || !AgentVersionSchema.safeParse(path.basename(abs)).success) {
      throw new ValidationError(`${path.join(this.root, CURRENT_LINK)} points at ${target}; it must point at ${VERSIONS_DIR}/<version>`);
    }
    return path.basename(abs);
  }

  /** Points `current` at versions/<version> atomically (temp symlink + rename + directory fsync). */
  async switchCurrent(version: string): Promise<void> {
    const dir = this.versionDir(version);
    await fs.access(path.join(dir, 'bin', 'fleetlm-agent'));
    const tmp = path.join(this.root, `.${CURRENT_LINK}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    await fs.symlink(path.join(VERSIONS_DIR, version), tmp);
    try {
      await fs.rename(tmp, path.join(this.root, CURRENT_LINK));
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await fsyncDir(this.root);
  }

  /** Installed versions (complete ones; unpacking leftovers start with a dot). */
  async versions(): Promise<string[]> {
    const names = await fs.readdir(this.versionsDir).catch(() => [] as string[]);
    return names.filter((n) => !n.startsWith('.') && AgentVersionSchema.safeParse(n).success).sort();
  }

  /** Removes one version, never the one `current` points at. */
  async removeVersion(version: string): Promise<boolean> {
    if ((await this.currentVersion()) === version) return false;
    await fs.rm(this.versionDir(version), { recursive: true, force: true });
    return true;
  }

  /** Removes every version but `keep` (and `current`), plus unpacking leftovers; returns what went. */
  async prune(keep: readonly string[]): Promise<string[]> {
    const current = await this.currentVersion();
    const removed: string[] = [];
    for (const v of await this.versions()) {
      if (v === current || keep.includes(v)) continue;
      await fs.rm(this.versionDir(v), { recursive: true, force: true });
      removed.push(v);
    }
    await this.removeLeftovers();
    return removed;
  }

  /** Removes half-unpacked directories and stray temp links a kill -9 may have left. */
  async removeLeftovers(): Promise<void> {
    for (const n of await fs.readdir(this.versionsDir).catch(() => [] as string[])) {
      if (n.startsWith('.partial-')) await fs.rm(path.join(this.versionsDir, n), { recursive: true, force: true });
    }
    for (const n of await fs.readdir(this.root).catch(() => [] as string[])) {
      if (n.startsWith(`.${CURRENT_LINK}.`) && n.endsWith('.tmp')) await fs.rm(path.join(this.root, n), { force: true });
    }
  }
}
